"""The stochastic similarity filter: its formula, its skip statistics, and that it never blocks or loses a frame."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
import torch

from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.similarity import SimilarityFilter, SimilarityFilteredGenerator, skip_probability


def static_clip(n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 64, 64, generator=gen)
    return [(base + 0.002 * torch.randn(base.shape, generator=gen)).clamp(0, 1) for _ in range(n)]


def moving_clip(n: int) -> list[torch.Tensor]:
    """A camera panning over a textured scene, 3 pixels per frame."""
    gen = torch.Generator().manual_seed(3)
    width = 64 + 3 * n
    coarse = torch.rand(3, 16, width // 4, generator=gen)
    scene = torch.nn.functional.interpolate(coarse[None], size=(64, width), mode="bilinear")[0]
    return [scene[:, :, 3 * i : 3 * i + 64] for i in range(n)]


def test_skip_probability_formula() -> None:
    assert skip_probability(1.0, 0.98) == pytest.approx(1.0)
    assert skip_probability(0.99, 0.98) == pytest.approx(0.5)
    assert skip_probability(0.98, 0.98) == pytest.approx(0.0)
    assert skip_probability(0.5, 0.98) == 0.0
    assert skip_probability(1.0, 1.0) == 0.0


def test_static_clip_is_mostly_skipped_but_capped() -> None:
    ssf = SimilarityFilter(threshold=0.98, max_skip_frame=10, seed=0)
    decisions = [ssf.should_skip(f) for f in static_clip(220)]
    assert ssf.skip_fraction >= 0.8
    # never more than max_skip_frame skips in a row
    run = longest = 0
    for d in decisions:
        run = run + 1 if d else 0
        longest = max(longest, run)
    assert longest <= 10
    assert not decisions[0], "the first frame is always processed"


def test_moving_clip_is_processed() -> None:
    ssf = SimilarityFilter(threshold=0.98, max_skip_frame=10, seed=0)
    for f in moving_clip(100):
        ssf.should_skip(f)
    assert ssf.skip_fraction <= 0.1


class _Delayed(Generator):
    """Emits frame i when frame i+2 arrives (like Stream Batch with 3 steps); output = input + a call counter."""

    spec = GeneratorSpec(
        name="delayed",
        description="test",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet((Param("ssf", bool, True), Param("ssf_threshold", float, 0.98))),
    )

    def on_prepare(self) -> None:
        self.queue: list[VideoFrame] = []
        self.calls = 0

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, VideoFrame)
        self.calls += 1
        self.queue.append(frame)
        return [self.queue.pop(0)] if len(self.queue) > 2 else []

    def flush(self) -> list[DataFrame]:
        out, self.queue = self.queue, []
        return list(out)


def _frames(images: list[torch.Tensor]) -> list[VideoFrame]:
    return [
        VideoFrame.from_float(img, pts=i * 3000, time_base=Fraction(1, 90000)) for i, img in enumerate(images)
    ]


def test_filtered_generator_is_lossless_and_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(_: float) -> None:
        raise AssertionError("the similarity filter must never sleep")

    monkeypatch.setattr(time, "sleep", no_sleep)
    inner = _Delayed()
    gen = SimilarityFilteredGenerator(inner, SimilarityFilter())
    gen.prepare({})
    frames = _frames(static_clip(30) + moving_clip(10))
    out: list[DataFrame] = []
    for f in frames:
        out += gen.push(f)
    out += gen.flush()
    assert [o.pts for o in out] == [f.pts for f in frames]
    assert inner.calls < len(frames) - 15, "static frames were skipped"
    # a skipped frame repeats the output of the last processed frame before it
    last_processed = None
    for o in out:
        if o.metadata.get("ssf_skipped"):
            assert last_processed is not None
            assert torch.equal(o.data, last_processed.data)
        else:
            last_processed = o


def test_filter_can_be_disabled_live() -> None:
    inner = _Delayed()
    gen = SimilarityFilteredGenerator(inner, SimilarityFilter())
    gen.prepare({"ssf": False})
    frames = _frames(static_clip(20))
    for f in frames:
        gen.push(f)
    assert inner.calls == 20
    gen.update({"ssf": True})
    for f in _frames(static_clip(20, seed=1)):
        gen.push(f.with_pts(f.pts + 10**6))
    assert inner.calls < 40
