"""What a benchmark suite is, the options every suite shares, and the bench's output format."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Suite:
    """A named benchmark: its own options, and a run that yields result rows (one JSON object each)."""

    name: str
    help: str
    # The fields every row carries (the table); a suite may add more after them.
    fields: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Iterator[Row]]


def add_common_arguments(parser: argparse.ArgumentParser, *, repeats: int, warmup: int) -> None:
    """Options every suite takes."""
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads (default 2: the issue's 2-core CPU)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"timed calls per candidate; the median is reported (default {repeats})",
    )
    parser.add_argument(
        "--warmup", type=int, default=warmup, help=f"untimed calls per candidate first (default {warmup})"
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suites that run a StreamDiffusion model."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="diffusers model folder (or hub id when online); default: the embedded streamdiffusion-tiny",
    )


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits: more is noise on a shared machine, and the lines stay readable."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def format_rows(rows: Iterable[Row], *, as_json: bool) -> Iterator[str]:
    """The bench's output lines: one JSON object per row as soon as it is measured, or an aligned table at the end.

    The caller prints them (``streamrt.cli`` prints every line a handler yields, flushing each).
    """
    if as_json:
        for row in rows:
            yield json.dumps({k: rounded(v) for k, v in row.items()})
        return
    table = [{k: rounded(v) for k, v in row.items()} for row in rows]
    if not table:
        return
    columns: list[str] = []
    for row in table:
        columns += [k for k in row if k not in columns]
    cells = [[_cell(row.get(c, "")) for c in columns] for row in table]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    yield "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    for r in cells:
        yield "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
