"""The rolling-forcing training recipe in --quick mode: it runs end to end, writes a folder the generator loads (safetensors +
config json), and records its metrics. (The committed recipe is the argument defaults; CI never trains.)"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

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


def test_training_windows_mirror_inference_windows():
    """Every training sample looks like a window pass of inference: the same context sizes and the same levels."""
    from pipelines.rolling_forcing.model import RollingConfig
    from pipelines.rolling_forcing.train import training_input
    from streamrt.video.flow import shifted_sigmas

    rc = RollingConfig()
    sig = shifted_sigmas(rc.timesteps, rc.shift)
    gen = torch.Generator().manual_seed(0)
    lat = torch.randn(32, 4, 2, 2)
    shapes = set()
    for _ in range(300):
        x, t, blocks, ws, target = training_input(lat, rc, sig, gen)
        shapes.add((x.shape[0], ws))
        assert x.shape[0] <= rc.max_attended_frames and target.shape[0] == x.shape[0] - ws
        assert (t[:ws] == 0).all(), "context frames are clean, as the cache written at t = 0"
        newest = t[-1] / 1000
        n_blocks = (x.shape[0] - ws) // rc.frames_per_block
        # warm-up windows end with a block at level 0 (pure noise, up to jitter); the oldest is at level n_blocks-1
        assert abs(float(newest) - sig[0]) <= 0.1 + 1e-6
        assert abs(float(t[ws] / 1000) - sig[n_blocks - 1]) <= 0.1 + 1e-6
        assert blocks[ws:].unique().numel() == 1, "the window is bidirectional"
    assert shapes == {(3, 0), (6, 0), (9, 0), (12, 0), (15, 0), (18, 3), (21, 6)}


def test_training_attention_equals_inference_attention(tmp_path):
    """Window 6 of inference (sink = block 0, cache = block 1, window = blocks 2..6) computed with the training
    path (one sequence, block-causal mask, contiguous positions) gives the same x0: what training teaches is what
    inference runs."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from contract_t2v import tiny_rolling_forcing

    from pipelines.rolling_forcing.train import MaskedAttention
    from streamrt.video.attention import block_causal_mask
    from streamrt.video.flow import FlowLevels

    torch.set_num_threads(1)
    gen = RollingForcingGenerator.load(model=str(tiny_rolling_forcing(tmp_path)))
    gen.prepare({})
    e = gen.engine
    seen = {}
    real = e.window.denoiser

    def spy(batch):
        out = real(batch)
        if e.windows == 7:  # the pass just made was window 6
            seen["x"], seen["x0"] = batch.latents.clone(), out.clone()
            seen["sigmas"] = e.schedule.sigma(batch.levels).clone()
        return out

    e.window.denoiser = spy
    with torch.inference_mode():
        blocks = [e.step().clone() for _ in range(3)]  # blocks 0, 1, 2 (window 6 emits block 2)
        fpb = e.cfg.frames_per_block

        def time_order(rows):  # the window's rows are blocks noisiest first, frames in order inside a block
            return torch.cat(list(reversed(rows.split(fpb))))

        window = time_order(seen["x"])
        sig = time_order(seen["sigmas"])
        x = torch.cat([blocks[0], blocks[1], window])
        t = torch.cat([torch.zeros(2 * fpb), sig * 1000])
        frame_blocks = torch.tensor([0] * fpb + [1] * fpb + [2] * window.shape[0])
        tpf = e.latent_hw[0] // 2 * (e.latent_hw[1] // 2)
        plan = MaskedAttention(block_causal_mask(frame_blocks, tpf))
        ctx = e.dit.embed_text(gen.encode_prompt(gen.params["prompt"]))
        v = e.dit(x.transpose(0, 1)[None], t[None], ctx, plan=plan, context_embedded=True)[0].transpose(0, 1)
        x0 = FlowLevels.x0_from_velocity(x[2 * fpb :], v[2 * fpb :], sig)
    expected = time_order(seen["x0"])
    assert torch.allclose(x0, expected, atol=1e-4), (x0 - expected).abs().max()


def test_codec_from_reuses_another_models_frame_codec(tmp_path):
    """``--codec-from``: the frame codec's weights come from the given folder (not trained), rescaled to this data."""
    from streamrt.video.folder import read_folder

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    source = default_folder("streamingt2v")
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "model"), "--codec-from", str(source)])
    assert train.run(args) == 0
    _, mine = read_folder(tmp_path / "model", "rolling-forcing")
    _, theirs = read_folder(source, "streamingt2v")
    assert mine["codec"].keys() == theirs["codec"].keys()
    assert all(torch.equal(mine["codec"][k], theirs["codec"][k]) for k in theirs["codec"])
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["codec_mse"] != metrics["codec_mse"]  # NaN: no codec training happened
