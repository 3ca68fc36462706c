"""EvAnimate's row of ``streamrt bench animation``: end-to-end fps on a driving video, and the condition's cost.

- ``fps``: output frames per wall second of ``push`` over a driving puppet video (128 px by default), after the
  window has filled (the first 16 frames are not timed): event simulation, slicing, guider, UNet pass, LCM step,
  decoding, all included;
- ``latency_frames``: the generator's declared latency (a group of 4 frames enters when its 4th frame arrives and
  leaves after 4 passes);
- ``condition_ms``: median milliseconds per frame of the condition alone (event simulation on the frame resized to
  the model's size + the frame's slice), measured on the same frames.

``rows(args)`` is what the animation suite calls; ``SUITE`` runs this row alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch

from streamrt.bench.suite import Row, Suite, add_common_arguments

FIELDS = ("suite", "pipeline", "width", "height", "fps", "latency_frames", "condition_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument("--frames", type=int, default=96, help="driving frames per run (default 96)")
    parser.add_argument("--size", type=int, default=128, help="driving video size (default 128)")
    parser.add_argument("--evanimate-model", default=None, metavar="DIR", help="EvAnimate model folder")


def driving_frames(n: int, size: int) -> torch.Tensor:
    """A held-out puppet doing arm swings: motion everywhere in the frame's upper half."""
    from streamrt.puppets import make_puppet_dataset

    return make_puppet_dataset(1, n, size, seed=99, held_out=True, motions=("arm_swing",)).clips[0]


def condition_ms(frames: torch.Tensor, model_size: int, settings) -> float:
    from pipelines.evanimate.conditioning import EventCondition

    cond = EventCondition(model_size, settings)
    times = []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        cond.from_frame(f, i / 24)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[1:])


def rows(args: argparse.Namespace) -> Iterator[Row]:
    from pipelines.evanimate import EvAnimateGenerator
    from streamrt.errors import StreamrtError
    from streamrt.frames import VideoFrame

    base: Row = {"suite": "animation", "pipeline": "evanimate", "width": args.size, "height": args.size}
    try:
        gen = EvAnimateGenerator.load(model=args.evanimate_model)
    except StreamrtError as exc:
        yield {**base, "error": str(exc)}
        return
    frames = driving_frames(args.frames, args.size)
    gen.prepare({})
    warm = 16
    outputs = 0
    start = None
    for i, f in enumerate(frames):
        if i == warm:
            start, outputs = time.perf_counter(), 0
        outputs += len(gen.push(VideoFrame(data=f, pts=i * 3750)))  # 24 fps on the 90 kHz clock
    assert start is not None
    elapsed = time.perf_counter() - start
    settings = gen._condition.settings
    yield {
        **base,
        "fps": outputs / elapsed,
        "latency_frames": gen.spec.latency,
        "condition_ms": condition_ms(frames, gen.size, settings),
        "model_size": gen.size,
        "threads": torch.get_num_threads(),
    }


SUITE = Suite(
    name="evanimate",
    help="EvAnimate: fps on a 128-px driving video, latency, event simulation + slicing cost per frame",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=rows,
)
