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
