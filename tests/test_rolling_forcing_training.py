"""The rolling-forcing training recipe in --quick mode: it runs end to end, writes a folder the generator loads (safetensors +
config json), and records its metrics. (The committed recipe is the argument defaults; CI never trains.)"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

import torch

from pipelines.rolling_forcing import RollingForcingGenerator, train
from streamrt.video.folder import default_folder


def test_quick_recipe_round_trip(tmp_path):
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    assert parser.parse_args([]).out == default_folder("rolling-forcing"), (
        "the recipe writes the committed default's folder"
    )
    assert parser.parse_args([]).size == 128
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "model")])
    assert train.run(args) == 0
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert {
        "codec_mse",
        "train_seconds",
        "colour_accuracy",
        "motion_accuracy",
        "held_out_prompts",
    } <= metrics.keys()
    assert metrics["quick"] is True
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > 0
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"streamrt train rolling-forcing --out {tmp_path / 'model'}" in card and "--quick" in card
    assert "colour_accuracy" in card and "Training time" in card
    gen = RollingForcingGenerator.load(model=str(tmp_path / "model"))
    gen.prepare({"prompt": "a green circle bouncing over dots"})
    frame = gen.pull(0, Fraction(1, 30))[0]
    assert frame.data.shape == (32, 32, 3)
