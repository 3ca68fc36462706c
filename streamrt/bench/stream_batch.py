"""``stream-batch``: Stream Batch against sequential per-frame denoising, same model, same steps, same guidance.

Sequential: each frame goes alone through its N steps, N UNet calls of batch 1 (``window.step`` then
``window.drain``). Stream Batch: the window holds N frames at staggered levels and ONE UNet call of batch N per
frame advances all of them (steady state, window full). Both produce the same outputs (``max_abs_diff`` checks that
on the first frames); only the schedule of the UNet calls differs. The VAE is excluded: latents are pre-encoded.

Why the speedup on a CPU is smaller than the paper's 1.5x: on a GPU a batch-1 call of a small UNet leaves most of
the device idle (kernel launches and synchronisation dominate), so N rows cost about as much as one and batching
wins almost N-fold on the model's side. A CPU is already saturated by one row's convolutions: N rows cost about N
times one row's arithmetic, and batching saves only what is paid per call rather than per row -- Python and module
dispatch of a few hundred layers, the timestep and text embeddings, attention over the prompt, oneDNN setup and the
window bookkeeping. The smaller the model and the latents, the larger that per-call share, so the speedup is largest
at few pixels and tiny UNets and tends to 1 as the per-row arithmetic grows.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch

from streamrt.bench import denoising
from streamrt.bench.suite import Row, Suite, add_common_arguments, add_model_arguments
from streamrt.bench.timing import measure_interleaved


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=30, warmup=3)
    add_model_arguments(parser)
    denoising.add_denoise_arguments(parser, steps=[2, 4])
    parser.add_argument(
        "--cfg-type",
        default="self",
        choices=("none", "full", "self", "initialize"),
        help="guidance of both candidates (default self, the generator's default)",
    )


def run(args: argparse.Namespace) -> Iterator[Row]:
    denoising.check_args(args)
    components = denoising.load(args.model)
    size = (args.height, args.width)
    for steps in args.steps:

        def engine(steps: int = steps) -> denoising.StreamDiffusion:
            return denoising.make_engine(
                components, steps=steps, size=size, cfg_type=args.cfg_type, guidance_scale=args.guidance_scale
            )

        latents = denoising.encoded_inputs(engine())
        diff = _max_abs_diff(engine(), engine(), latents)
        seq = denoising.Feeder(engine(), latents)
        sb = denoising.Feeder(engine(), latents)
        sb.fill()
        # Counted on one frame each, before timing (the hook would add its own cost to the timed calls).
        seq_calls, seq_rows = denoising.count_unet(components.unet, seq.sequential)
        sb_calls, sb_rows = denoising.count_unet(components.unet, sb.stream_batch)
        t_seq, t_sb = measure_interleaved([seq.sequential, sb.stream_batch], args.repeats, args.warmup)
        yield {
            "suite": "stream-batch",
            "steps": steps,
            "sequential_fps": 1.0 / t_seq,
            "stream_batch_fps": 1.0 / t_sb,
            "speedup": t_seq / t_sb,
            "model": denoising.model_label(args.model),
            "width": args.width,
            "height": args.height,
            "cfg_type": args.cfg_type,
            "sequential_unet_calls": seq_calls,
            "sequential_unet_rows": seq_rows,
            "unet_calls": sb_calls,
            "unet_rows": sb_rows,
            "sequential_ms": 1000.0 * t_seq,
            "stream_batch_ms": 1000.0 * t_sb,
            "max_abs_diff": diff,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
        }


def _max_abs_diff(
    seq_engine: denoising.StreamDiffusion, sb_engine: denoising.StreamDiffusion, latents: list[torch.Tensor]
) -> float:
    """Largest difference between the two candidates' x0 for the same frames (0 up to float rounding)."""
    seq, sb = denoising.Feeder(seq_engine, latents), denoising.Feeder(sb_engine, latents)
    a = [s.latent for _ in latents for s in seq.sequential()]
    b = [s.latent for _ in latents for s in sb.stream_batch()]
    with torch.inference_mode():
        assert sb_engine.window is not None
        b += [s.latent for s in sb_engine.window.drain()]
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


SUITE = Suite(
    name="stream-batch",
    help="Stream Batch vs sequential denoising (UNet + scheduler + guidance; VAE excluded)",
    fields=("suite", "steps", "sequential_fps", "stream_batch_fps", "speedup"),
    add_arguments=add_arguments,
    run=run,
)
