"""``streamrt bench SUITE``: named benchmark suites that print JSON lines.

Every comparison is measured side by side in one run, interleaved call by call (``timing.measure_interleaved``),
and reported as medians and a ratio: the machines this runs on are shared and noisy, and only a ratio measured under
the same load means something. Speed is asserted nowhere in the tests; it lives here.

Suites (``SUITES``), one module each:

- ``stream-batch``: Stream Batch (one UNet call of N rows per frame) against sequential denoising (N calls of one row);
- ``rcfg``: the denoising stage with full CFG, self-negative and onetime-negative RCFG (and none);
- ``ssf``: skip fractions of the similarity filter on a static and a moving clip;
- ``overhead``: the runtime's own cost per frame (passthrough generator, session, conversions) at 512x512;
- ``streamdiffusion``: end-to-end img2img fps with the split between denoising and the VAE.

The CLI dispatcher calls ``register(subparsers)``; ``python -m streamrt.bench`` runs the same parser standalone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence

from streamrt.bench.suite import Row, Suite, write_rows
from streamrt.bench.timing import measure_interleaved, set_threads
from streamrt.errors import StreamrtError

# name -> module defining ``SUITE``; modules import their heavy dependencies (diffusers, av) only when they run.
SUITES: dict[str, str] = {
    "stream-batch": "streamrt.bench.stream_batch",
    "rcfg": "streamrt.bench.rcfg",
    "ssf": "streamrt.bench.ssf",
    "overhead": "streamrt.bench.overhead",
    "streamdiffusion": "streamrt.bench.streamdiffusion",
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise StreamrtError(f"unknown benchmark suite {name!r}; available: {', '.join(SUITES)}")
    suite: Suite = importlib.import_module(SUITES[name]).SUITE
    return suite


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand (one sub-subcommand per suite) to a CLI's subparsers.

    The parsed namespace carries ``func`` (returns the exit code), as the other subcommands do.
    """
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark suite (JSON lines with --json)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    _add_suites(parser)
    return parser


def _add_suites(parser: argparse.ArgumentParser) -> None:
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name in SUITES:
        suite = get_suite(name)
        sub = suites.add_parser(name, help=suite.help, description=suite.help)
        suite.add_arguments(sub)
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the suite named in ``args`` and write its rows to stdout. Errors propagate as ``StreamrtError``."""
    suite = get_suite(args.suite)
    set_threads(args.threads)
    if args.repeats < 1:
        raise StreamrtError(f"--repeats must be at least 1; got {args.repeats}")
    write_rows(_with_load(suite.run(args)), sys.stdout, as_json=args.json)
    return 0


def _with_load(rows: Iterator[Row]) -> Iterator[Row]:
    """Append the 1-minute load average when each row is done: a number measured on a machine with more runnable
    threads than cores is not comparable with one measured on a quiet machine (ratios still are)."""
    for row in rows:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        yield {**row, "load_avg": load, "cpus": os.cpu_count()}


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m streamrt.bench SUITE ...``)."""
    parser = argparse.ArgumentParser(prog="streamrt bench", description=__doc__.split("\n\n")[1])
    _add_suites(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StreamrtError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the CLI's job: one line, no traceback
        return 1


__all__ = ["SUITES", "Row", "Suite", "get_suite", "main", "measure_interleaved", "register", "run"]
