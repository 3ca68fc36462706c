"""``streamrt bench t2v``: the streaming text-to-video generators, one JSON line each.

For each pipeline (StreamDiT, Rolling Forcing, StreamingT2V): load the default (``assets/<name>-tiny``, or
``--model NAME=DIR``), prepare with the model's default prompt, then pull ``--frames`` frames as a stream would.

- ``first_frame_s``: wall time of the first pull after ``prepare`` (start-up included: StreamDiT's full generation,
  Rolling Forcing's window fill, StreamingT2V's first chunk);
- ``fps``: frames per wall second from frame 2 to the last (the stream's steady rate);
- ``rss_mb_100`` / ``rss_mb_1000``: the process's resident memory after frame 100 and frame 1000, and
  ``rss_growth_pct`` between them (the issue's bound: at most 5%).

A pipeline that cannot load (no trained default yet) becomes a row with an ``error`` field, so the other rows still
come out. Frames are not encoded: this measures the generators.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Iterator
from fractions import Fraction

from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.errors import ParamError, StreamrtError

PIPELINES = {
    "streamdit": "pipelines.streamdit:StreamDiTGenerator",
    "rolling-forcing": "pipelines.rolling_forcing:RollingForcingGenerator",
    "streamingt2v": "pipelines.streamingt2v:StreamingT2VGenerator",
}
FIELDS = ("suite", "pipeline", "width", "height", "fps", "first_frame_s", "rss_mb_100", "rss_mb_1000")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument("--frames", type=int, default=1000, help="frames per stream (default 1000)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated subset")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="model folder of a pipeline (repeatable)",
    )


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; ru_maxrss elsewhere, a peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _class(name: str):
    import importlib

    module, _, attr = PIPELINES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def measure(name: str, model: str | None, frames: int) -> Row:
    row: Row = {"suite": "t2v", "pipeline": name}
    try:
        gen = _class(name).load(model=model)
    except StreamrtError as exc:
        return {**row, "error": str(exc)}
    try:
        gen.prepare({})
        gc.collect()
        tb = Fraction(1, 30)
        t0 = time.perf_counter()
        first = gen.pull(0, tb)[0]
        t1 = time.perf_counter()
        rss: dict[int, float] = {}
        for i in range(1, frames):
            gen.pull(i, tb)
            if i + 1 in (100, 1000):
                rss[i + 1] = rss_mb()
        t2 = time.perf_counter()
    finally:
        gen.close()
    out = {
        **row,
        "width": first.width,
        "height": first.height,
        "fps": (frames - 1) / (t2 - t1) if frames > 1 else float("nan"),
        "first_frame_s": t1 - t0,
        "rss_mb_100": rss.get(100, float("nan")),
        "rss_mb_1000": rss.get(1000, float("nan")),
        "frames": frames,
    }
    if 100 in rss and 1000 in rss:
        out["rss_growth_pct"] = 100 * (rss[1000] - rss[100]) / rss[100]
    return out


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.frames < 2:
        raise ParamError(f"--frames must be at least 2; got {args.frames}")
    models: dict[str, str] = {}
    for item in args.model:
        name, sep, folder = item.partition("=")
        if not sep or name not in PIPELINES:
            raise ParamError(
                f"--model expects NAME=DIR with NAME one of {', '.join(PIPELINES)}; got {item!r}"
            )
        models[name] = folder
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    for name in names:
        if name not in PIPELINES:
            raise ParamError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    for name in names:
        yield measure(name, models.get(name), args.frames)


SUITE = Suite(
    name="t2v",
    help="streaming text-to-video: fps, first-frame latency and memory over a long stream, one row per pipeline",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=run,
)
