"""Sessions: a generator on its own worker thread between two bounded queues."""

from __future__ import annotations

import dataclasses
import threading
import time
from fractions import Fraction

import pytest
import torch

from buffers.queues import QueueClosed, QueuePolicy
from streamrt.errors import InputError
from streamrt.frames import AudioFrame, DataFrame, EndOfStream, ErrorEvent, Frame, TextFrame, Tick, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.passthrough import PassthroughGenerator
from streamrt.session import CAPTURE_TIME, Session, ticks

TB = Fraction(1, 90_000)


def video(i: int, size: int = 8) -> VideoFrame:
    data = torch.full((size, size, 3), i % 256, dtype=torch.uint8)
    return VideoFrame(data=data, pts=i * 3000, time_base=TB)


def collect(session: Session, timeout: float = 5.0) -> list[Frame]:
    """Read the output until EndOfStream or an ErrorEvent (inclusive)."""
    out: list[Frame] = []
    deadline = time.perf_counter() + timeout
    while True:
        remaining = deadline - time.perf_counter()
        assert remaining > 0, f"no end of stream within {timeout} s; got {len(out)} frames"
        item = session.output.get(timeout=remaining)
        out.append(item)
        if isinstance(item, EndOfStream | ErrorEvent):
            return out


def started(gen: Generator, **kwargs) -> Session:
    if not gen._prepared:
        gen.prepare()
    s = Session(gen, **kwargs)
    s.start()
    return s


class Recorder(Generator):
    """Records the ``gain`` parameter seen by each frame, and optionally works slowly or fails."""

    spec = GeneratorSpec(
        name="recorder",
        description="test generator",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(
            (
                Param("gain", int, 1),
                Param("delay", float, 0.0),
                Param("fail_at", int, -1),
                Param("size", int, 8, live=False),
            )
        ),  # fmt: skip
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self.closed = False

    def process(self, frame: DataFrame) -> list[DataFrame]:
        if self.params["delay"]:
            time.sleep(self.params["delay"])
        if frame.pts == self.params["fail_at"]:
            raise RuntimeError(f"model exploded at pts {frame.pts}")
        self.seen.append((frame.pts, self.params["gain"]))
        out = frame.with_pts(frame.pts)
        out.metadata["gain"] = self.params["gain"]
        return [out]

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------- passthrough
def test_passthrough_preserves_order_count_and_pts():
    s = started(PassthroughGenerator(), input_size=4, output_size=4)
    n = 50
    frames = [video(i) for i in range(n)]

    def produce():
        for f in frames:
            s.submit(f)
        s.end()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    out = collect(s)
    t.join(2)
    assert isinstance(out[-1], EndOfStream)
    data = out[:-1]
    assert len(data) == n
    assert [f.pts for f in data] == [f.pts for f in frames]
    assert all(torch.equal(a.data, b.data) for a, b in zip(data, frames, strict=True))
    assert s.join(2), "the worker ends after end of stream"
    assert s.metrics.frames_in == n and s.metrics.frames_out == n
    assert s.input.stats().drops == 0 and s.output.stats().drops == 0


def test_passthrough_audio_and_unhandled_kinds_go_through_in_order():
    s = started(PassthroughGenerator())
    audio = AudioFrame(data=torch.zeros(2, 480), sample_rate=48_000, pts=0)
    text = TextFrame(text="hello", pts=1)
    s.submit(video(0))
    s.submit(audio)
    s.submit(text)  # passthrough does not take text: bypassed to the output, in order
    s.end()
    out = collect(s)
    assert [type(f) for f in out] == [VideoFrame, AudioFrame, TextFrame, EndOfStream]
    assert out[2].text == "hello"


def test_param_updates_apply_in_stream_order():
    gen = Recorder()
    s = started(gen, input_size=16, output_size=16)
    s.submit(video(0))
    s.submit(video(1))
    s.update({"gain": 2})
    s.submit(video(2))
    s.update({"gain": "3"})  # raw strings are validated by the generator
    s.submit(video(3))
    s.submit(video(4))
    s.end()
    out = collect(s)
    assert [f.metadata.get("gain") for f in out[:-1]] == [1, 1, 2, 3, 3]
    assert gen.seen == [(0, 1), (3000, 1), (6000, 2), (9000, 3), (12000, 3)]


def test_param_updates_kept_under_newest_only_input():
    gen = Recorder()
    gen.prepare({"delay": 0.05})
    s = Session(gen, input_policy=QueuePolicy.NEWEST_ONLY, input_size=2)
    # queue everything before the worker starts: data frames are dropped, control frames are not
    for i in range(5):
        s.submit(video(i))
    s.update({"gain": 7})
    s.submit(video(5))
    s.end()
    s.start()
    out = collect(s)
    assert isinstance(out[-1], EndOfStream)
    assert gen.params["gain"] == 7
    assert [f.pts for f in out[:-1]] == [5 * 3000]
    assert out[0].metadata["gain"] == 7
    assert s.input.stats().drops == 5


def test_ticks_drive_pull():
    s = started(PassthroughGenerator())
    tk = ticks(5, 30)
    assert [t.pts for t in tk] == [0, 3000, 6000, 9000, 12000]
    for t in tk:
        s.submit(t)
    s.end()
    out = collect(s)
    assert isinstance(out[-1], EndOfStream)
    assert [type(f) for f in out[:-1]] == [VideoFrame] * 5
    assert [f.pts for f in out[:-1]] == [t.pts for t in tk]
    assert s.metrics.frames_in == 5


def test_ticks_with_ntsc_rate():
    tk = ticks(3, 30000 / 1001)
    assert [t.pts for t in tk] == [0, 3003, 6006]
    assert all(isinstance(t, Tick) and t.time_base == TB for t in tk)


# ---------------------------------------------------------------------- errors
def test_generator_exception_ends_only_that_session():
    bad_gen = Recorder()
    bad_gen.prepare({"fail_at": 3000})
    bad = Session(bad_gen)
    for i in range(3):  # queued before the worker starts: the failure closes the input
        bad.submit(video(i))
    good = started(Recorder())
    bad.start()
    out = collect(bad)
    assert [type(f) for f in out] == [VideoFrame, ErrorEvent]
    err = out[-1]
    assert "model exploded at pts 3000" in err.message
    assert err.exception_type == "RuntimeError"
    assert bad.join(2), "the failed session's worker ends"
    assert not bad.running
    assert bad.error and "model exploded" in bad.error
    assert bad.metrics.snapshot().errors == 1
    with pytest.raises(QueueClosed):
        bad.submit(video(9))
    # the other session keeps going
    for i in range(4):
        good.submit(video(i))
    good.end()
    out = collect(good)
    assert [f.pts for f in out[:-1]] == [0, 3000, 6000, 9000]
    assert isinstance(out[-1], EndOfStream)


def test_bad_live_parameter_ends_session_with_clear_error():
    s = started(Recorder())
    s.submit(video(0))
    s.update({"size": 16})  # not live
    out = collect(s)
    assert isinstance(out[-1], ErrorEvent)
    assert "'size'" in out[-1].message and "cannot change" in out[-1].message
    assert out[-1].exception_type == "ParamError"
    assert s.join(2)


def test_input_error_is_reported():
    s = started(Recorder(), bypass_unhandled=False)
    s.submit(video(0))
    s.submit(AudioFrame(data=torch.zeros(1, 10), sample_rate=16_000))
    out = collect(s)
    assert [type(f) for f in out] == [VideoFrame, ErrorEvent]
    assert out[-1].exception_type == InputError.__name__
    assert "AudioFrame" in out[-1].message and "video" in out[-1].message
    assert s.join(2)


# ---------------------------------------------------------------------- close
def test_close_stops_session_whose_consumer_is_gone():
    gen = Recorder()
    s = started(gen, input_size=4, output_size=1)
    for i in range(4):
        s.submit(video(i), timeout=2)
    # nobody reads the output: the worker is stuck emitting into a full lossless queue
    time.sleep(0.2)
    assert s.running
    start = time.perf_counter()
    s.close()
    assert time.perf_counter() - start < 2.0
    assert not s.running
    assert gen.closed, "close() releases the generator once the worker stopped"
    with pytest.raises(QueueClosed):
        s.submit(video(9))


def test_close_idle_session():
    gen = Recorder()
    s = started(gen)
    start = time.perf_counter()
    s.close()
    assert time.perf_counter() - start < 2.0
    assert not s.running and gen.closed


# ---------------------------------------------------------------------- metrics
def test_metrics_count_frames_and_latency_from_capture_time():
    s = started(PassthroughGenerator())
    f0 = video(0)
    f0.metadata[CAPTURE_TIME] = time.perf_counter() - 0.5  # captured half a second ago
    s.submit(f0)
    for i in range(1, 4):
        s.submit(video(i))
    s.end()
    out = collect(s)
    assert len(out) == 5
    lat = s.metrics.latencies()
    assert len(lat) == 4
    assert lat[0] >= 0.5, "latency is measured from the frame's t_capture"
    assert all(0 <= x < 0.5 for x in lat[1:])
    snap = s.metrics.snapshot()
    assert snap.frames_in == 4 and snap.frames_out == 4
    assert snap.latency_p90_ms >= snap.latency_p50_ms > 0
    assert snap.busy_seconds >= 0 and snap.errors == 0
    assert [st.name for st in s.queue_stats()] == ["passthrough.in", "passthrough.out"]
    assert s.queue_stats()[0].puts == 5  # four frames and the end of stream


def _live_latencies(
    policy: QueuePolicy, *, frames: int, interval: float, delay: float
) -> tuple[list, Session]:
    gen = Recorder()
    gen.prepare({"delay": delay})
    s = started(gen, input_policy=policy, input_size=8, output_size=64)
    results: list[Frame] = []
    reader = threading.Thread(target=lambda: results.extend(collect(s, timeout=20)), daemon=True)
    reader.start()
    for i in range(frames):
        s.submit(video(i))
        time.sleep(interval)
    s.end()
    reader.join(20)
    assert isinstance(results[-1], EndOfStream)
    return s.metrics.latencies(), s


def test_newest_only_input_keeps_latency_flat_with_slow_generator():
    delay = 0.02  # the generator: 50 fps at best
    interval = 0.004  # the camera: 250 fps
    newest, s_newest = _live_latencies(QueuePolicy.NEWEST_ONLY, frames=60, interval=interval, delay=delay)
    lossless, s_lossless = _live_latencies(QueuePolicy.LOSSLESS, frames=40, interval=interval, delay=delay)

    assert s_newest.input.stats().drops > 0
    assert s_lossless.input.stats().drops == 0 and len(lossless) == 40
    # newest-only: a frame waits at most for the frame in progress, then is processed
    assert max(newest) < 6 * delay, newest
    second_half = newest[len(newest) // 2 :]
    assert max(second_half) < 6 * delay
    # lossless: the queue fills up and every frame waits for the ones before it
    assert lossless[-1] > 5 * delay, lossless
    assert lossless[-1] > 2 * max(newest)
    assert lossless[-1] > 3 * lossless[0]


class AudioRecorder(Generator):
    """Records the audio pushes it gets (their pts and lengths) and returns them unchanged."""

    spec = GeneratorSpec(
        name="audio-recorder",
        description="test generator",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        sample_rate=48_000,
        channels=1,
        joins_audio=True,
    )

    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[tuple[int, int]] = []

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame)
        self.pushes.append((frame.pts, frame.samples))
        return [frame]


def audio(pts: int, samples: int = 960) -> AudioFrame:
    return AudioFrame(
        data=torch.arange(pts, pts + samples, dtype=torch.float32)[None], sample_rate=48_000, pts=pts
    )


@pytest.mark.parametrize("joins", [True, False])
def test_a_session_behind_joins_waiting_audio_that_continues(joins):
    gen = AudioRecorder()
    if not joins:
        gen.spec = dataclasses.replace(AudioRecorder.spec, joins_audio=False)
    gen.prepare()
    s = Session(gen, input_size=32)
    # queued before the worker starts, as if it had fallen behind: 12 contiguous 20 ms frames, a gap, then 2 more
    frames = [audio(960 * i) for i in range(12)] + [audio(960 * 20), audio(960 * 21)]
    for f in frames:
        s.submit(f)
    s.end()
    s.start()
    out = collect(s)
    data = [f for f in out if isinstance(f, AudioFrame)]
    assert torch.equal(
        torch.cat([f.data for f in data], 1), torch.cat([f.data for f in frames], 1)
    )  # nothing lost
    if joins:
        # the first push takes up to 200 ms (10 frames); the gap is never bridged
        assert gen.pushes == [(0, 9600), (9600, 1920), (19200, 1920)]
    else:
        assert gen.pushes == [(f.pts, f.samples) for f in frames]
    assert s.metrics.frames_in == len(frames)
