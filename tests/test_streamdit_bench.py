"""The ``t2v`` bench suite (pipelines/t2v_bench.py) on tiny models: one row per pipeline with the issue's fields, an
error row for a pipeline without weights. Speed is measured there, never asserted here."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from contract_t2v import tiny_rolling_forcing, tiny_streamdit, tiny_streamingt2v

from pipelines import t2v_bench
from streamrt.bench.suite import format_rows
from streamrt.errors import ParamError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    t2v_bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_rows_have_the_issue_fields(tmp_path, monkeypatch):
    import streamrt.video.folder as folder_mod

    monkeypatch.setattr(folder_mod, "ASSETS", tmp_path / "no-assets")
    torch.set_num_threads(1)
    args = parse([
        "--frames", "110", "--model", f"streamdit={tiny_streamdit(tmp_path)}",
        "--model", f"rolling-forcing={tiny_rolling_forcing(tmp_path)}",
    ])  # fmt: skip
    rows = [json.loads(line) for line in format_rows(t2v_bench.run(args), as_json=True)]
    assert [r["pipeline"] for r in rows] == ["streamdit", "rolling-forcing", "streamingt2v"]
    for r in rows[:2]:
        assert set(t2v_bench.FIELDS) <= r.keys(), r
        assert r["suite"] == "t2v" and r["width"] == r["height"] == 32
        assert r["fps"] > 0 and r["first_frame_s"] > 0 and r["rss_mb_100"] > 0
    assert "streamrt train streamingt2v" in rows[2]["error"], "no default yet: an error row naming the fix"


def test_tiny_streamingt2v_row(tmp_path):
    args = parse(
        [
            "--frames",
            "3",
            "--pipelines",
            "streamingt2v",
            "--model",
            f"streamingt2v={tiny_streamingt2v(tmp_path)}",
        ]
    )
    (row,) = list(t2v_bench.run(args))
    assert row["fps"] > 0 and row["frames"] == 3


def test_bad_arguments():
    with pytest.raises(ParamError, match="NAME=DIR"):
        list(t2v_bench.run(parse(["--model", "nope"])))
    with pytest.raises(ParamError, match="unknown pipeline"):
        list(t2v_bench.run(parse(["--pipelines", "sora"])))


def test_random_weights_rows_use_the_recipe_architectures(monkeypatch):
    # speed only: the rows say so; the folders are the recipes' default architectures
    torch.set_num_threads(1)
    args = parse(["--frames", "2", "--random-weights", "--pipelines", "streamdit,rolling-forcing"])
    rows = list(t2v_bench.run(args))
    assert [r["weights"] for r in rows] == ["random", "random"]
    assert all(r["width"] == 128 and r["fps"] > 0 for r in rows)
