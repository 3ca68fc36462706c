"""``ssf``: how often the stochastic similarity filter skips a static and a moving clip.

Both clips go through the runtime's real filter path: ``SimilarityFilteredGenerator`` around the passthrough
generator (so what is counted is what a session would emit: outputs marked ``ssf_skipped``), at the reference's
defaults, threshold 0.98 and at most 10 skips in a row. The static clip is one picture with fresh sensor noise per
frame (a tripod camera), the moving clip a camera pan of ``--pan-speed`` pixels per frame over a textured scene.
With max_skip 10 a static clip can skip at most 10 frames of 11 (0.909).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch

from streamrt.bench.clips import panning_clip, static_clip
from streamrt.bench.suite import Row, Suite
from streamrt.errors import ParamError
from streamrt.frames import VideoFrame
from streamrt.passthrough import PassthroughGenerator
from streamrt.similarity import SimilarityFilter, SimilarityFilteredGenerator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (default 300)")
    parser.add_argument("--width", type=int, default=256, help="frame width (default 256)")
    parser.add_argument("--height", type=int, default=256, help="frame height (default 256)")
    parser.add_argument("--threshold", type=float, default=0.98, help="similarity threshold (default 0.98)")
    parser.add_argument("--max-skip", type=int, default=10, help="most skips in a row (default 10)")
    parser.add_argument(
        "--noise", type=float, default=2.0, help="sensor noise, std in 8-bit levels (default 2)"
    )
    parser.add_argument("--pan-speed", type=int, default=4, help="moving clip: pixels per frame (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clips and of the filter (default 0)")
    # The suite times nothing, but shares the common options so every suite takes the same command line.
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)


def skip_stats(frames: list[torch.Tensor], threshold: float, max_skip: int, seed: int) -> tuple[float, float]:
    """(skip fraction, mean cosine similarity of consecutive frames in [-1, 1]) through the filtered generator."""
    gen = SimilarityFilteredGenerator(
        PassthroughGenerator(), SimilarityFilter(threshold=threshold, max_skip_frame=max_skip, seed=seed)
    )
    gen.prepare({})
    outputs = []
    for i, data in enumerate(frames):
        outputs += gen.push(VideoFrame(data=data, pts=i * 3000))
    outputs += gen.flush()
    if len(outputs) != len(frames):
        raise RuntimeError(f"the filtered generator emitted {len(outputs)} frames for {len(frames)} inputs")
    skipped = sum(bool(o.metadata.get("ssf_skipped")) for o in outputs)
    cos = [
        float(torch.nn.functional.cosine_similarity(_signed(a), _signed(b), dim=0))
        for a, b in zip(frames, frames[1:], strict=False)
    ]
    return skipped / len(frames), sum(cos) / max(len(cos), 1)


def _signed(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1).float() / 127.5 - 1.0  # the filter's own scale


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.frames < 2:
        raise ParamError(f"--frames must be at least 2; got {args.frames}")
    static_frames = static_clip(args.frames, args.height, args.width, noise_std=args.noise, seed=args.seed)
    moving_frames = panning_clip(
        args.frames, args.height, args.width, speed=args.pan_speed, noise_std=args.noise, seed=args.seed
    )
    static, static_cos = skip_stats(static_frames, args.threshold, args.max_skip, args.seed)
    moving, moving_cos = skip_stats(moving_frames, args.threshold, args.max_skip, args.seed)
    yield {
        "suite": "ssf",
        "static_skip_fraction": static,
        "moving_skip_fraction": moving,
        "threshold": args.threshold,
        "max_skip": args.max_skip,
        "frames": args.frames,
        "static_cos_mean": static_cos,
        "moving_cos_mean": moving_cos,
        "pan_speed": args.pan_speed,
    }


SUITE = Suite(
    name="ssf",
    help="similarity-filter skip fractions on a static and a panning clip (threshold 0.98, max skip 10)",
    fields=("suite", "static_skip_fraction", "moving_skip_fraction"),
    add_arguments=add_arguments,
    run=run,
)
