"""Side-by-side timing: every comparison in ``streamrt bench`` is measured in one run, interleaved.

This machine shares its cores with training jobs and other users, so a number measured alone drifts by tens of
percent from one minute to the next. Alternating the candidates call by call (A, B, A, B, ...) exposes them to the
same background load, and the median of each candidate's calls discards the calls a burst of load hit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def measure_interleaved(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 1) -> list[float]:
    """Median wall time in seconds of one call of each of ``fns``, calling them in turn.

    ``warmup`` rounds run first, untimed (allocator, oneDNN kernel selection, caches, a window filling up), then
    ``repeats`` timed rounds. Each round calls every candidate once; the starting candidate rotates from round to
    round so that none always runs right after the same neighbour (which may leave caches cold or warm for it).
    """
    if not fns:
        return []
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    n = len(fns)
    for _ in range(max(0, warmup)):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for k in range(n):
            i = (r + k) % n
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def set_threads(threads: int) -> None:
    """Intra-op threads for the whole benchmark (the issue's figures are for a 2-core CPU)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1; got {threads}")
    torch.set_num_threads(threads)
