"""RAIN's recipe: training windows mirror the stream's window states, batches keep conditions aligned with latents,
and ``--quick`` runs the whole recipe into a folder the generator loads."""

from __future__ import annotations

import argparse
from fractions import Fraction

import pytest
import torch

from pipelines.rain import RainGenerator
from pipelines.rain import train as recipe
from streamrt.animation.training import (
    DRAINING,
    FILLING,
    STEADY,
    AnimationData,
    training_batch,
    window_levels,
)
from streamrt.errors import ParamError
from streamrt.frames import VideoFrame

torch.set_num_threads(1)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser)
    args = parser.parse_args(list(argv))
    args.recipe = "rain"
    return args


def test_training_windows_are_the_streams_window_states() -> None:
    gen = torch.Generator().manual_seed(0)
    seen = {window_levels(gen, 0.6) for _ in range(400)}
    assert seen == {STEADY, *FILLING, *DRAINING}
    # oldest group first, one level cleaner than the next: exactly how the stream orders a pass in time
    for levels in seen:
        assert list(levels) == sorted(levels, reverse=True)
        assert all(a - b == 1 for a, b in zip(levels, levels[1:], strict=False))


def test_batches_keep_conditions_aligned_with_latents() -> None:
    n, t, s = 3, 20, 16
    # frame (clip i, time j) carries the value 10*i + j in its latent and its condition, so alignment is checkable
    tag = (10 * torch.arange(n)[:, None] + torch.arange(t)[None]).float()
    data = AnimationData(
        clips=torch.zeros(n, t, s, s, 3, dtype=torch.uint8),
        conditions=tag[..., None, None, None].expand(n, t, s, s, 3).to(torch.uint8),
        latents=tag[..., None, None, None].expand(n, t, 4, 2, 2).clone(),
        stills=torch.zeros(n, s, s, 3, dtype=torch.uint8),
    )
    gen = torch.Generator().manual_seed(1)
    b = training_batch(data, torch.tensor([2, 0]), STEADY, gen)
    assert b["x0"].shape[0] == 32 and b["levels"].tolist() == ([3] * 4 + [2] * 4 + [1] * 4 + [0] * 4) * 2
    lat = b["x0"][:, 0, 0, 0]
    cond = b["conditions"][:, 0, 0, 0] * 255
    assert torch.allclose(lat, cond.round())
    for clip in range(2):
        run = lat[16 * clip : 16 * clip + 16]
        assert (run[1:] - run[:-1] == 1).all(), "a window is 16 consecutive frames of one clip"


def test_quick_recipe_writes_a_loadable_model_with_a_card(tmp_path) -> None:
    out = tmp_path / "rain-quick"
    assert recipe.run(_args("--quick", "--out", str(out))) == 0
    for name in (
        "config.json",
        "model.safetensors",
        "reference.png",
        "README.md",
        "metrics.json",
        "samples.png",
    ):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("streamrt train rain"))
    assert "--quick" in command and f"--out {out}" in command
    assert "keypoint_error_px" in card and "identity_distance" in card and "baseline_reference_px" in card
    gen = RainGenerator.load(model=str(out))
    gen.prepare({})
    frames = [
        VideoFrame(data=torch.zeros(32, 32, 3, dtype=torch.uint8), pts=i, time_base=Fraction(1, 30))
        for i in range(5)
    ]
    outs = [o for f in frames for o in gen.push(f)] + gen.flush()
    assert len(outs) == 5


def test_cuda_device_without_cuda_is_a_clear_error(tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ParamError, match="CUDA"):
        recipe.run(_args("--quick", "--device", "cuda", "--out", str(tmp_path / "x")))
