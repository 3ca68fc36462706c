"""``rcfg``: the denoising stage under each guidance mode, Stream Batch at the same steps, guidance scale 1.2.

Full CFG doubles the UNet rows ([uncond; cond], 2N per frame); self-negative RCFG uses the stock noise as its
unconditional prediction and adds no row (N); onetime-negative adds one uncond row for the entering frame (N+1);
``none`` (guidance off) is measured alongside as the floor. All four run interleaved over the same weights and the
same pre-encoded latents, each in its own steady-state window. On a CPU the UNet's cost grows about linearly with its
rows, so self vs full approaches 2x minus what is paid per call (which full CFG shares between its two halves).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch

from streamrt.bench import denoising
from streamrt.bench.suite import Row, Suite, add_common_arguments, add_model_arguments
from streamrt.bench.timing import measure_interleaved
from streamrt.errors import ParamError

MODES = ("full", "self", "initialize", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=30, warmup=3)
    add_model_arguments(parser)
    denoising.add_denoise_arguments(parser, steps=[2])


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.guidance_scale <= 1.0:
        # Every mode falls back to no guidance at scale <= 1: the comparison would measure nothing.
        raise ParamError(f"--guidance-scale must be above 1 for guidance to act; got {args.guidance_scale}")
    denoising.check_args(args)
    components = denoising.load(args.model)
    size = (args.height, args.width)
    for steps in args.steps:
        feeders = []
        latents: list[torch.Tensor] | None = None
        for mode in MODES:
            engine = denoising.make_engine(
                components, steps=steps, size=size, cfg_type=mode, guidance_scale=args.guidance_scale
            )
            if latents is None:
                latents = denoising.encoded_inputs(engine)
            feeder = denoising.Feeder(engine, latents)
            feeder.fill()
            feeders.append(feeder)
        rows = {
            m: denoising.count_unet(components.unet, f.stream_batch)[1]
            for m, f in zip(MODES, feeders, strict=True)
        }
        times = measure_interleaved([f.stream_batch for f in feeders], args.repeats, args.warmup)
        t = dict(zip(MODES, times, strict=True))
        yield {
            "suite": "rcfg",
            "full_fps": 1.0 / t["full"],
            "self_fps": 1.0 / t["self"],
            "initialize_fps": 1.0 / t["initialize"],
            "self_speedup": t["full"] / t["self"],
            "initialize_speedup": t["full"] / t["initialize"],
            "none_fps": 1.0 / t["none"],
            "steps": steps,
            "guidance_scale": args.guidance_scale,
            "model": denoising.model_label(args.model),
            "width": args.width,
            "height": args.height,
            "full_unet_rows": rows["full"],
            "self_unet_rows": rows["self"],
            "initialize_unet_rows": rows["initialize"],
            "none_unet_rows": rows["none"],
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
        }


SUITE = Suite(
    name="rcfg",
    help="denoising stage under full CFG vs self / onetime-negative RCFG (Stream Batch, guidance 1.2)",
    fields=("suite", "full_fps", "self_fps", "initialize_fps", "self_speedup"),
    add_arguments=add_arguments,
    run=run,
)
