"""``streamrt bench SUITE``: named benchmark suites that print JSON lines.

Every comparison is measured side by side in one run, interleaved call by call (``timing.measure_interleaved``),
and reported as medians and a ratio: the machines this runs on are shared and noisy, and only a ratio measured under
the same load means something. Speed is asserted nowhere in the tests; it lives here.

Suites (``SUITES``), one module each:

- ``stream-batch``: Stream Batch (one UNet call of N rows per frame) against sequential denoising (N calls of one row);
- ``rcfg``: the denoising stage with full CFG, self-negative and onetime-negative RCFG (and none);
- ``ssf``: skip fractions of the similarity filter on a static and a moving clip;
- ``overhead``: the runtime's own cost per frame (passthrough generator, session, conversions) at 512x512;
- ``streamdiffusion``: end-to-end img2img fps with the split between denoising and the VAE;
- ``webrtc``: the transport (``transport.bench_webrtc``);
- ``ap-bwe``, ``binauralflow``: offline and streaming speed of the audio generators (in their pipeline packages);
- ``t2v``: fps, first-frame latency and memory growth of the text-to-video generators (``pipelines.t2v_bench``);
- ``animation``: fps, latency and condition extraction time of RAIN and EvAnimate (``pipelines.animation_bench``);
- ``xstreamer``: real-time factor, reply latency and lip sync of the talking character (``pipelines.xstreamer.bench``).

``streamrt.cli`` calls ``register(subparsers)``; ``python -m streamrt.bench SUITE ...`` is ``streamrt bench SUITE ...``.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterator

from streamrt.bench.suite import Row, Suite, format_rows
from streamrt.bench.timing import measure_interleaved, set_threads
from streamrt.errors import StreamrtError

# name -> module defining ``SUITE``; modules import their heavy dependencies (diffusers, av) only when they run.
SUITES: dict[str, str] = {
    "stream-batch": "streamrt.bench.stream_batch",
    "rcfg": "streamrt.bench.rcfg",
    "ssf": "streamrt.bench.ssf",
    "overhead": "streamrt.bench.overhead",
    "streamdiffusion": "streamrt.bench.streamdiffusion",
    "webrtc": "transport.bench_webrtc",
    "ap-bwe": "pipelines.ap_bwe.bench",
    "binauralflow": "pipelines.binauralflow.bench",
    "t2v": "pipelines.t2v_bench",
    "animation": "pipelines.animation_bench",
    "xstreamer": "pipelines.xstreamer.bench",
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise StreamrtError(f"unknown benchmark suite {name!r}; available: {', '.join(SUITES)}")
    suite: Suite = importlib.import_module(SUITES[name]).SUITE
    return suite


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand (one sub-subcommand per suite) to the ``streamrt`` command line.

    As every subcommand of ``streamrt.cli``, it sets ``handler``: a function of the parsed arguments returning the
    lines to print, here lazily, so that each JSON line appears as soon as its row is measured.
    """
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark suite (JSON lines with --json)",
        description="Run a benchmark suite on the CPU. Each comparison is measured side by side in one run, "
        "interleaved, and reported as medians and a ratio (the machine is shared and noisy).",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name in SUITES:
        try:
            suite = get_suite(name)
        except ImportError as exc:
            # A suite that cannot import (a missing optional dependency) must not take the whole CLI down.
            sub = suites.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(handler=_unavailable(name, exc))
            continue
        sub = suites.add_parser(name, help=suite.help, description=suite.help)
        suite.add_arguments(sub)
        sub.set_defaults(handler=handle)
    return parser


def _unavailable(name: str, exc: ImportError):
    def handler(args: argparse.Namespace) -> Iterator[str]:
        raise StreamrtError(f"benchmark suite {name!r} cannot load: {exc}")

    return handler


def handle(args: argparse.Namespace) -> Iterator[str]:
    """Run the suite named in ``args``; yields its output lines. Errors propagate as ``StreamrtError``."""
    suite = get_suite(args.suite)
    if args.repeats < 1:
        raise StreamrtError(f"--repeats must be at least 1; got {args.repeats}")
    if args.threads < 1:
        raise StreamrtError(f"--threads must be at least 1; got {args.threads}")
    set_threads(args.threads)
    return format_rows(_with_context(suite.run(args)), as_json=args.json)


def _with_context(rows: Iterator[Row]) -> Iterator[Row]:
    """Append what an absolute figure depends on besides streamrt: the 1-minute load average when the row was done
    (a figure taken with more runnable threads than cores is not comparable with one from a quiet machine; ratios
    still are) and OpenMP's wait policy (under such load, torch's spinning OpenMP threads made a 2-thread frame
    3-6x slower here than ``OMP_WAIT_POLICY=PASSIVE``; it is read when torch loads, so it is an environment choice)."""
    for row in rows:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
        yield {**row, "load_avg": load, "cpus": os.cpu_count(), "omp_wait_policy": policy}


__all__ = ["SUITES", "Row", "Suite", "format_rows", "get_suite", "handle", "measure_interleaved", "register"]
