"""`streamrt train xstreamer --quick`: every stage of the recipe runs on tiny data and writes a loadable folder."""

from __future__ import annotations

import json

import pytest
import torch

from streamrt.cli import main
from streamrt.speech import available

torch.set_num_threads(1)


@pytest.mark.skipif(not available("espeak"), reason="needs espeak-ng (tests/run.sh installs it)")
def test_quick_recipe_writes_a_loadable_model(tmp_path) -> None:
    out = tmp_path / "xs"
    code = main(["train", "xstreamer", "--quick", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("lip_sync_corr", "av_offset_ms", "identity_distance", "av_speed", "first_audio_ms"):
        assert key in metrics
    assert (out / "README.md").is_file() and list((out / "portraits").glob("*.png"))
    from pipelines.xstreamer import XStreamerGenerator

    gen = XStreamerGenerator.load(model=str(out))
    gen.prepare({"say": "hello"})
    chunk = gen.next_chunk()
    assert chunk.frames.shape[1:] == (3, 128, 128) and chunk.audio.shape == (5120,)

    # --resume keeps the codecs and the Thinker and continues the Actor from the folder's weights
    again = tmp_path / "xs2"
    code = main(
        [
            "train",
            "xstreamer",
            "--quick",
            "--resume",
            str(out),
            "--out",
            str(again),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    from pipelines.xstreamer.model import load_model

    first, second = load_model(str(out)), load_model(str(again))
    for name in ("audio_codec", "frames"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    actor_a, actor_b = first.actor.state_dict(), second.actor.state_dict()
    assert any(not torch.equal(actor_a[k], actor_b[k]) for k in actor_a)  # trained further
    assert (again / "thinker").is_dir()
    stats = json.loads((again / "metrics.json").read_text())["actor"]
    assert stats["resumed_from"] == str(out) and stats["steps_total"] == 2 * stats["steps"]
    assert "--resume" in json.loads((again / "metrics.json").read_text())["command"]
