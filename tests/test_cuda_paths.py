"""GPU paths: the generators that run on CUDA give what they give on the CPU.

CI has no GPU, so these are skipped there; they run on a machine with CUDA (the project's device checks). Each test
builds the same model on both devices and compares what comes out for the same seed: noise is drawn on CPU
generators and moved, so the two runs differ only by floating-point arithmetic (and fp16 where that is the default).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch
from contract_t2v import tiny_rolling_forcing, tiny_streamdit, tiny_streamingt2v

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has none)")

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GPU = "cuda"


def _frames(gen, prompt: str, n: int) -> torch.Tensor:
    gen.prepare({"prompt": prompt, "seed": 3, "prompt_transition": 0})
    return torch.stack([gen.pull(i, Fraction(1, 30))[0].data.float() for i in range(n)])


@pytest.mark.parametrize(
    "name, build",
    [
        ("streamdit", tiny_streamdit),
        ("rolling-forcing", tiny_rolling_forcing),
        ("streamingt2v", tiny_streamingt2v),
    ],
)
def test_text_to_video_cuda_matches_cpu(tmp_path: Path, name: str, build) -> None:
    from streamrt import registry

    folder = build(tmp_path)
    cls = registry.get(name)
    cpu = _frames(cls.load(model=str(folder), device="cpu"), "a red circle moving left", 12)
    gpu = _frames(cls.load(model=str(folder), device=GPU), "a red circle moving left", 12)
    diff = (cpu - gpu).abs().mean().item()
    print(f"{name}: mean |cpu - cuda| = {diff:.3f} (0..255)")
    assert diff < 2.0


def test_streamdiffusion_fp16_cuda_matches_cpu_fp32() -> None:
    from streamrt import registry
    from streamrt.frames import VideoFrame

    cls = registry.get("streamdiffusion")
    image = torch.zeros(128, 128, 3, dtype=torch.uint8)
    image[32:96, 32:96] = torch.tensor([200, 40, 40], dtype=torch.uint8)
    outs = {}
    for device in ("cpu", GPU):  # cuda defaults to fp16
        gen = cls.load(model=str(ASSETS / "streamdiffusion-tiny"), device=device)
        gen.prepare({"prompt": "a red circle", "seed": 1, "width": 128, "height": 128})
        frames = []
        for i in range(8):
            frames += gen.push(VideoFrame(data=image, pts=i, time_base=Fraction(1, 30)))
        frames += gen.flush()
        outs[device] = torch.stack([f.data.float() for f in frames])
    assert outs["cpu"].shape == outs[GPU].shape
    assert torch.isfinite(outs[GPU]).all()
    diff = (outs["cpu"] - outs[GPU]).abs().mean().item()
    print(f"streamdiffusion: mean |cpu fp32 - cuda fp16| = {diff:.3f} (0..255)")
    assert diff < 6.0
