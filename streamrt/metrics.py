"""Per-session metrics: throughput, capture-to-emit latency, drops and similarity-filter skips.

Updated from the worker thread, read from anywhere (the CLI, ``GET /metrics``): a lock guards the counters, and
every window is bounded so a session that runs for days keeps constant memory.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class RateMeter:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = 2.0, maxlen: int = 4096) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque(maxlen=maxlen)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.perf_counter() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        recent = [t for t in self._times if now - t <= self.window]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-9)
        return (len(recent) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class MetricsSnapshot:
    frames_in: int
    frames_out: int
    input_fps: float
    output_fps: float
    latency_p50_ms: float
    latency_p90_ms: float
    ssf_skips: int
    errors: int
    busy_seconds: float


class SessionMetrics:
    def __init__(self, latency_window: int = 512) -> None:
        self._lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.ssf_skips = 0
        self.errors = 0
        self.busy_seconds = 0.0
        self._in_rate = RateMeter()
        self._out_rate = RateMeter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=latency_window)

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1
            self._in_rate.tick()

    def frame_out(self, latency_s: float | None) -> None:
        with self._lock:
            self.frames_out += 1
            self._out_rate.tick()
            if latency_s is not None:
                self._latencies.append(latency_s)

    def busy(self, seconds: float) -> None:
        with self._lock:
            self.busy_seconds += seconds

    def skip(self, count: int = 1) -> None:
        with self._lock:
            self.ssf_skips += count

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def latencies(self) -> list[float]:
        with self._lock:
            return list(self._latencies)

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            lat = [x * 1000.0 for x in self._latencies]
            return MetricsSnapshot(
                frames_in=self.frames_in,
                frames_out=self.frames_out,
                input_fps=self._in_rate.rate(),
                output_fps=self._out_rate.rate(),
                latency_p50_ms=percentile(lat, 50),
                latency_p90_ms=percentile(lat, 90),
                ssf_skips=self.ssf_skips,
                errors=self.errors,
                busy_seconds=self.busy_seconds,
            )
