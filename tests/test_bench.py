"""``streamrt bench``: every suite runs on the tiny random model with minimal repeats and prints the issue's fields.

Speed is never asserted here (that is the benchmarks' job); what is checked is the output contract and the facts a
benchmark's meaning rests on: which candidate runs how many UNet rows, and that the candidates compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from streamrt.bench import SUITES, get_suite, register
from streamrt.bench.timing import measure_interleaved
from streamrt.cli import main as cli_main
from tests.tiny_sd import make_tiny_sd

# The issue's table: the fields each suite must print (suites add extras after them).
FIELDS = {
    "stream-batch": ["suite", "steps", "sequential_fps", "stream_batch_fps", "speedup"],
    "rcfg": ["suite", "full_fps", "self_fps", "initialize_fps", "self_speedup"],
    "ssf": ["suite", "static_skip_fraction", "moving_skip_fraction"],
    "overhead": ["suite", "overhead_us_per_frame"],
    "streamdiffusion": ["suite", "model", "width", "height", "steps", "fps", "denoise_ms", "vae_ms"],
}
# One thread: the tests share the machine with other jobs, and two spinning OpenMP threads on a busy CPU crawl.
FAST = ["--repeats", "2", "--warmup", "1", "--threads", "1"]
SMALL = ["--width", "64", "--height", "64"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_tiny_sd(tmp_path_factory.mktemp("tiny_sd")))


@pytest.fixture(autouse=True)
def _keep_threads():
    # The bench sets torch's global thread count; the rest of the test run keeps its own.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def main(argv: list[str]) -> int:
    return cli_main(["bench", *argv])


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    assert main([*argv, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows, "no output"
    suite = argv[0]
    for row in rows:
        assert list(row)[: len(FIELDS[suite])] == FIELDS[suite]
        assert row["suite"] == suite
    return rows


def test_registry_declares_the_issue_fields():
    assert set(FIELDS) <= set(SUITES)  # other suites (e.g. webrtc) register beside these
    for name, fields in FIELDS.items():
        assert list(get_suite(name).fields) == fields


def test_stream_batch(capsys, tiny_model):
    rows = run_json(capsys, "stream-batch", "--model", tiny_model, "--steps", "1", "3", *FAST, *SMALL)
    assert [r["steps"] for r in rows] == [1, 3]
    for r in rows:
        n = r["steps"]
        assert r["sequential_fps"] > 0 and r["stream_batch_fps"] > 0
        assert math.isclose(r["speedup"], r["stream_batch_fps"] / r["sequential_fps"], rel_tol=1e-2)
        # Sequential: N calls of one row; Stream Batch: one call of N rows; both give the same x0.
        assert (r["sequential_unet_calls"], r["sequential_unet_rows"]) == (n, n)
        assert (r["unet_calls"], r["unet_rows"]) == (1, n)
        assert r["max_abs_diff"] < 1e-4


def test_rcfg(capsys, tiny_model):
    (r,) = run_json(capsys, "rcfg", "--model", tiny_model, "--steps", "2", *FAST, *SMALL)
    assert min(r["full_fps"], r["self_fps"], r["initialize_fps"], r["none_fps"]) > 0
    assert math.isclose(r["self_speedup"], r["self_fps"] / r["full_fps"], rel_tol=1e-2)
    # Full CFG doubles the rows, self-negative adds none, onetime-negative one for the entering frame.
    rows = (r["full_unet_rows"], r["self_unet_rows"], r["initialize_unet_rows"], r["none_unet_rows"])
    assert rows == (4, 2, 3, 2)


def test_rcfg_needs_active_guidance(capsys, tiny_model):
    assert main(["rcfg", "--model", tiny_model, "--guidance-scale", "1.0", *FAST, *SMALL]) == 2
    assert "guidance-scale" in capsys.readouterr().err


def test_ssf(capsys):
    (r,) = run_json(capsys, "ssf", "--frames", "60", *SMALL)
    assert 0.0 <= r["moving_skip_fraction"] <= 1.0
    # Behaviour, not speed: a noisy still scene is mostly skipped, within the max-skip bound; a pan is not.
    assert 0.5 < r["static_skip_fraction"] <= 10 / 11
    assert r["moving_skip_fraction"] < r["static_skip_fraction"]


def test_overhead(capsys):
    (r,) = run_json(capsys, "overhead", "--frames", "20", *FAST)
    assert (r["width"], r["height"]) == (512, 512)
    assert r["overhead_us_per_frame"] > 0


def test_streamdiffusion(capsys, tiny_model):
    (r,) = run_json(capsys, "streamdiffusion", "--model", tiny_model, *FAST, *SMALL)
    assert (r["model"], r["width"], r["height"], r["steps"]) == (tiny_model, 64, 64, 2)
    assert r["fps"] > 0 and r["denoise_ms"] > 0 and r["vae_ms"] > 0
    assert r["unet_rows"] == 2 and r["cfg_type"] == "self"


def test_streamdiffusion_separate_vae_and_cfg(capsys, tiny_model, tmp_path):
    vae_model = make_tiny_sd(tmp_path / "kl", vae="kl")
    argv = ["streamdiffusion", "--model", tiny_model, "--vae", str(vae_model / "vae"), "--cfg-type", "full"]
    (r,) = run_json(capsys, *argv, *FAST, *SMALL)
    assert r["vae"] == str(vae_model / "vae") and r["cfg_type"] == "full" and r["unet_rows"] == 4


def test_table_output(capsys):
    assert main(["ssf", "--frames", "12", *SMALL]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == FIELDS["ssf"] and row.split()[0] == "ssf"


def test_missing_model_is_one_line_error(capsys, tmp_path):
    assert main(["streamdiffusion", "--model", str(tmp_path / "nope"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrt: error:") and len(err.splitlines()) == 1 and "nope" in err


def test_register_adds_bench_to_a_cli():
    parser = argparse.ArgumentParser(prog="streamrt")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "stream-batch", "--steps", "1", "2", "4", "--json", "--threads", "1"])
    assert (args.command, args.suite, args.steps, args.json, args.threads) == (
        "bench",
        "stream-batch",
        [1, 2, 4],
        True,
        1,
    )
    assert callable(args.handler)


def test_measure_interleaved_alternates_and_takes_the_median():
    calls: list[str] = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    times = measure_interleaved(fns, repeats=3, warmup=1)
    assert len(times) == 2 and all(t >= 0 for t in times)
    # warm-up a b, then rounds that alternate and rotate which candidate goes first
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    with pytest.raises(ValueError):
        measure_interleaved(fns, repeats=0)
