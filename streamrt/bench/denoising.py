"""The denoising stage on its own (UNet, LCM scheduler, guidance; no VAE), for the stream-batch and rcfg suites.

Frames are encoded once up front, so the VAE never enters a timed call. Every candidate is a ``StreamDiffusion``
engine of its own over the same loaded components (one set of weights, so any difference is the schedule of the
calls, not the model), and each timed call advances its engine by exactly one input frame.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from pipelines.streamdiffusion.components import SDComponents, load_components
from pipelines.streamdiffusion.pipeline import StreamDiffusion
from streamrt.bench.clips import panning_clip
from streamrt.errors import ParamError
from streamrt.schedules import LCM_STEPS, strength_to_t_index
from streamrt.window import Slot

# The generator's default denoising strength: with 2 steps it gives t_index_list [32, 41] (reference: [32, 45]).
STRENGTH = 0.35
# Distinct input latents that the timed calls cycle through (a moving input, as in a stream).
NUM_LATENTS = 8


def add_denoise_arguments(parser: argparse.ArgumentParser, *, steps: list[int]) -> None:
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=steps,
        help=f"denoising steps N; one line per value (default {' '.join(map(str, steps))})",
    )
    parser.add_argument("--width", type=int, default=256, help="image width (default 256)")
    parser.add_argument("--height", type=int, default=256, help="image height (default 256)")
    parser.add_argument("--guidance-scale", type=float, default=1.2, help="guidance scale (default 1.2)")


def check_args(args: argparse.Namespace) -> None:
    """Bad options as one-line errors, before any weights load."""
    for steps in args.steps:
        if not 1 <= steps <= LCM_STEPS:
            raise ParamError(f"--steps must be in [1, {LCM_STEPS}]; got {steps}")
    if args.width < 8 or args.height < 8 or args.width % 8 or args.height % 8:
        raise ParamError(f"--width and --height must be multiples of 8; got {args.width}x{args.height}")


def model_label(model: str | None) -> str:
    return model if model else "default"


def load(model: str | None) -> SDComponents:
    return load_components(model)


def make_engine(
    components: SDComponents,
    *,
    steps: int,
    size: tuple[int, int],
    cfg_type: str,
    guidance_scale: float,
) -> StreamDiffusion:
    engine = StreamDiffusion(components)
    engine.configure(
        t_index_list=strength_to_t_index(STRENGTH, steps),
        size=size,
        cfg_type=cfg_type,
        guidance_scale=guidance_scale,
    )
    return engine


@torch.inference_mode()
def encoded_inputs(engine: StreamDiffusion, count: int = NUM_LATENTS) -> list[torch.Tensor]:
    """``count`` latents (1, C, h, w) of a panning clip at the engine's size, encoded once."""
    h, w = engine.size
    frames = panning_clip(count, h, w)
    images = torch.stack([f.permute(2, 0, 1).float().div(255) for f in frames])
    latents = engine.encode_images(images)
    return [latents[i : i + 1].clone() for i in range(count)]


class Feeder:
    """Feeds an engine's window one pre-encoded frame per call."""

    def __init__(self, engine: StreamDiffusion, latents: list[torch.Tensor]) -> None:
        self.engine = engine
        self.latents = latents
        self.count = 0

    def _enter(self) -> Slot:
        window = self.engine.window
        assert window is not None
        latent = self.latents[self.count % len(self.latents)]
        self.count += 1
        return window.enter_clean(latent, [self.count])

    @torch.inference_mode()
    def stream_batch(self) -> list[Slot]:
        """Stream Batch: the frame enters the window; ONE UNet pass over every slot in flight."""
        assert self.engine.window is not None
        return self.engine.window.step(self._enter())

    @torch.inference_mode()
    def sequential(self) -> list[Slot]:
        """Sequential: the frame goes alone through all N levels (N passes of one slot) before the next enters."""
        window = self.engine.window
        assert window is not None
        return window.step(self._enter()) + window.drain()

    @torch.inference_mode()
    def fill(self) -> None:
        """Bring a Stream Batch window to its steady state: N-1 slots in flight."""
        assert self.engine.schedule is not None
        for _ in range(self.engine.schedule.num_levels - 1):
            self.stream_batch()


def count_unet(unet: torch.nn.Module, fn: Callable[[], Any]) -> tuple[int, int]:
    """(calls, rows) the UNet sees while ``fn`` runs: evidence of what a candidate actually batches."""
    seen = {"calls": 0, "rows": 0}

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["calls"] += 1
        seen["rows"] += int((args[0] if args else kwargs["sample"]).shape[0])

    handle = unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return seen["calls"], seen["rows"]


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
