"""The stochastic similarity filter (SSF): skip the model when the input barely changed.

cos = cosine similarity of the current input and the last *processed* input (flattened);
skip_prob = max(0, 1 - (1 - cos) / (1 - threshold)); skip with that probability, but never more than
``max_skip_frame`` times in a row.

The reference sleeps for an average inference time on a skip and returns the previous output, which blocks its
caller. Here a skip costs nothing: ``SimilarityFilteredGenerator`` answers a skipped frame with the output of the
last processed frame, re-stamped with the skipped frame's pts, in stream order — the wrapped generator may emit
with a delay (Stream Batch does), so skipped frames wait, without blocking, for the output they repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator


def skip_probability(cos: float, threshold: float) -> float:
    if threshold >= 1.0:
        return 0.0
    return max(0.0, 1.0 - (1.0 - cos) / (1.0 - threshold))


@dataclass
class SimilarityFilter:
    threshold: float = 0.98
    max_skip_frame: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new stream: fresh RNG from ``seed``, no reference frame, zeroed statistics."""
        self._gen = torch.Generator().manual_seed(self.seed)
        self._prev: torch.Tensor | None = None
        self.skip_count = 0
        self.processed = 0
        self.skipped = 0

    def reset(self) -> None:
        self._prev = None
        self.skip_count = 0

    def should_skip(self, x: torch.Tensor) -> bool:
        """Decide for image ``x`` (uint8 0..255 or float 0..1, any shape); a processed ``x`` becomes the reference.

        Like the reference, the cosine is taken on images scaled to [-1, 1]: on [0, 1] every pair of pictures looks
        similar (all vectors point into the positive orthant) and moving scenes would be skipped.
        """
        flat = x.reshape(-1).float()
        flat = flat / 127.5 - 1.0 if x.dtype == torch.uint8 else flat * 2.0 - 1.0
        if self._prev is None or self._prev.shape != flat.shape:
            return self._process(flat)
        cos = float(torch.nn.functional.cosine_similarity(flat, self._prev, dim=0))
        p = skip_probability(cos, self.threshold)
        if float(torch.rand((), generator=self._gen)) > p:
            return self._process(flat)
        self.skip_count += 1
        if self.skip_count > self.max_skip_frame:
            return self._process(flat)
        self.skipped += 1
        return True

    def _process(self, flat: torch.Tensor) -> bool:
        self._prev = flat
        self.skip_count = 0
        self.processed += 1
        return False

    @property
    def skip_fraction(self) -> float:
        total = self.processed + self.skipped
        return self.skipped / total if total else 0.0


class SimilarityFilteredGenerator(Generator):
    """Puts an SSF in front of any video-input generator, without changing its outputs' order or count."""

    def __init__(self, inner: Generator, ssf: SimilarityFilter) -> None:
        self.inner = inner
        self.spec = inner.spec  # type: ignore[misc]  (instance attribute shadows the ClassVar on purpose)
        self.ssf = ssf
        # For each processed frame's pts: the skipped frames that must repeat its output, in arrival order.
        self._pending: dict[int, list[VideoFrame]] = {}
        self._last_processed_pts: int | None = None
        self._last_output: DataFrame | None = None
        self._emitted: set[int] = set()
        self.enabled = True
        self._prepared = True

    @property
    def params(self) -> dict[str, Any]:  # type: ignore[override]
        return self.inner.params

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        pass  # owned by the inner generator

    def audio_input_format(self) -> tuple[int | None, int | None]:
        return self.inner.audio_input_format()

    def prepare(self, params: Mapping[str, Any] | None = None) -> None:
        self.inner.prepare(params)
        self._sync()
        self._clear()

    def update(self, params: Mapping[str, Any]) -> None:
        self.inner.update(params)
        self._sync()

    def _sync(self) -> None:
        # The filter's settings live in the inner generator's params (``ssf``, ``ssf_threshold``, ``ssf_max_skip``).
        p = self.inner.params
        self.enabled = bool(p.get("ssf", True))
        self.ssf.threshold = float(p.get("ssf_threshold", self.ssf.threshold))
        self.ssf.max_skip_frame = int(p.get("ssf_max_skip", self.ssf.max_skip_frame))
        self.ssf.seed = int(p.get("seed", self.ssf.seed))

    def reset(self) -> None:
        self.inner.reset()
        self._clear()

    def _clear(self) -> None:
        self.ssf.restart()
        self._pending.clear()
        self._emitted.clear()
        self._last_processed_pts = None
        self._last_output = None

    def push(self, frame: DataFrame) -> list[DataFrame]:
        self.inner.check_input(frame)
        return self.process(frame)

    def process(self, frame: DataFrame) -> list[DataFrame]:
        if not self.enabled:
            self._last_processed_pts = frame.pts
            return self._release(self.inner.push(frame))
        if (
            isinstance(frame, VideoFrame)
            and self._last_processed_pts is not None
            and self.ssf.should_skip(frame.data)
        ):
            ref = self._last_processed_pts
            if ref in self._emitted and self._last_output is not None:
                return [self._repeat(self._last_output, frame)]
            # The output to repeat is still inside the generator (Stream Batch lags N-1 frames). Waiting for the
            # next processed frame would hold this one for up to max_skip frames, so finish the frames in flight
            # now: the same passes they need anyway, and latency stays within the generator's own.
            self._pending.setdefault(ref, []).append(frame)
            return self._release(self.inner.flush())
        if isinstance(frame, VideoFrame) and self._last_processed_pts is None:
            self.ssf.should_skip(frame.data)  # the first frame is always processed and becomes the reference
        self._last_processed_pts = frame.pts
        return self._release(self.inner.push(frame))

    @property
    def latency_frames(self) -> int:
        """The wrapped generator's latency: skipped frames never wait longer than processed ones."""
        return int(getattr(self.inner, "latency_frames", self.inner.spec.latency))

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        return self._release(self.inner.pull(pts, time_base))

    def flush(self) -> list[DataFrame]:
        return self._release(self.inner.flush())

    def close(self) -> None:
        self.inner.close()

    def _release(self, outputs: list[DataFrame]) -> list[DataFrame]:
        out: list[DataFrame] = []
        for o in outputs:
            out.append(o)
            self._last_output = o
            # Only the latest processed pts can still collect skips later; older ones are settled.
            self._emitted = {o.pts}
            for skipped in self._pending.pop(o.pts, []):
                out.append(self._repeat(o, skipped))
        return out

    @staticmethod
    def _repeat(output: DataFrame, like: VideoFrame) -> DataFrame:
        if isinstance(output, VideoFrame):
            repeated = output.with_pts(like.pts, like.time_base)
            repeated.metadata.update(like.metadata)
            repeated.metadata["ssf_skipped"] = True
            return repeated
        return output
