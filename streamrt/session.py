"""A session: source -> bounded queue -> generator worker thread -> bounded queue -> sink.

The worker thread owns the generator (and so the model and its device); the asyncio event loop, the decoder and the
encoder only move frames through the two queues. A generator exception ends this session with an ``ErrorEvent`` on
the output queue; nothing else is affected.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from fractions import Fraction

import torch

from buffers.queues import FrameQueue, QueueClosed, QueuePolicy, QueueStats
from streamrt.errors import StreamrtError
from streamrt.frames import (
    AudioFrame,
    ControlFrame,
    DataFrame,
    EndOfStream,
    ErrorEvent,
    Frame,
    ParamUpdate,
    Tick,
)
from streamrt.generator import Generator, kind_of
from streamrt.metrics import SessionMetrics

log = logging.getLogger(__name__)

# A session that fell behind joins at most this much waiting audio into one push (``GeneratorSpec.joins_audio``).
MAX_JOINED_AUDIO_S = 0.2

# Metadata key for the wall-clock (perf_counter) time a frame was captured or read: latency is measured from it.
CAPTURE_TIME = "t_capture"


class Session:
    """Runs one generator on its own thread between two bounded queues."""

    def __init__(
        self,
        generator: Generator,
        *,
        input_policy: QueuePolicy | str = QueuePolicy.LOSSLESS,
        input_size: int = 8,
        output_policy: QueuePolicy | str = QueuePolicy.LOSSLESS,
        output_size: int = 8,
        name: str = "",
        bypass_unhandled: bool = True,
    ) -> None:
        self.generator = generator
        self.name = name or generator.spec.name
        self.input: FrameQueue[Frame] = FrameQueue(input_size, input_policy, name=f"{self.name}.in")
        self.output: FrameQueue[Frame] = FrameQueue(output_size, output_policy, name=f"{self.name}.out")
        self.metrics = SessionMetrics()
        # Frames of a kind the generator does not take (e.g. audio beside a video generator) go straight to the
        # output instead of failing the session.
        self.bypass_unhandled = bypass_unhandled
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"streamrt-worker-{self.name}", daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def submit(self, frame: Frame, timeout: float | None = None) -> None:
        """Put a frame into the input queue, stamping its capture time if the source did not."""
        frame.metadata.setdefault(CAPTURE_TIME, time.perf_counter())
        self.input.put(frame, timeout=timeout)

    def update(self, params: dict) -> None:
        """Queue a live parameter change; it applies in stream order (never dropped)."""
        self.input.put(ParamUpdate(params=dict(params)))

    def end(self) -> None:
        """No more input: the generator flushes and the output ends with EndOfStream."""
        self.input.put(EndOfStream())

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (what is in flight is dropped) and release the generator."""
        self._stop.set()
        self.input.close()
        self.output.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.generator.close()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def queue_stats(self) -> list[QueueStats]:
        return [self.input.stats(), self.output.stats()]

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self.input.get(timeout=0.5)
                except TimeoutError:
                    continue
                except QueueClosed:
                    return
                if self._handle(item):
                    return
        # BaseException: an interrupt raised inside the generator must still reach the sink as an event (the
        # worker is not the main thread, so nothing else would see it).
        except BaseException as exc:  # the session ends; the process does not
            self.error = str(exc) or type(exc).__name__
            self.metrics.error()
            if not isinstance(exc, StreamrtError | KeyboardInterrupt):
                log.exception("session %s: generator failed", self.name)
            self._emit(ErrorEvent(message=self.error, exception_type=type(exc).__name__))
            self.input.close()

    def _handle(self, item: Frame) -> bool:
        """Process one input item; True when the stream is over."""
        gen = self.generator
        if isinstance(item, ParamUpdate):
            gen.update(item.params)
            return False
        if isinstance(item, EndOfStream):
            self._timed(gen.flush)
            self._emit(EndOfStream(pts=item.pts, time_base=item.time_base))
            return True
        if isinstance(item, ControlFrame):
            self._emit(item)
            return False
        self.metrics.frame_in()
        if isinstance(item, Tick):
            self._timed(gen.pull, item.pts, item.time_base)
            return False
        assert isinstance(item, DataFrame)
        if self.bypass_unhandled and kind_of(item) not in gen.spec.inputs:
            self._emit(item)
            return False
        if isinstance(item, AudioFrame) and gen.spec.joins_audio:
            item = self._join_waiting_audio(item)
        self._timed(gen.push, item)
        ssf = getattr(gen, "ssf", None)  # a SimilarityFilteredGenerator reports its skips
        if ssf is not None:
            self.metrics.ssf_skips = ssf.skipped
        return False

    def _join_waiting_audio(self, first: AudioFrame) -> AudioFrame:
        """``first`` joined with the audio frames that continue it in the input queue, up to MAX_JOINED_AUDIO_S."""
        limit = round(first.sample_rate * MAX_JOINED_AUDIO_S)
        parts = [first.data]
        end = first.pts + first.samples

        def continues(item: Frame) -> bool:
            return (
                isinstance(item, AudioFrame)
                and item.sample_rate == first.sample_rate
                and item.channels == first.channels
                and item.time_base == first.time_base
                and item.pts == end
                and end - first.pts + item.samples <= limit
            )

        while (nxt := self.input.pop_if(continues)) is not None:
            self.metrics.frame_in()
            parts.append(nxt.data)
            end += nxt.samples
        if len(parts) == 1:
            return first
        return dataclasses.replace(first, data=torch.cat(parts, dim=1))

    def _timed(self, fn, *args) -> None:
        start = time.perf_counter()
        outputs = fn(*args)
        self.metrics.busy(time.perf_counter() - start)
        for out in outputs:
            self._emit(out)

    def _emit(self, frame: Frame) -> None:
        if not isinstance(frame, ControlFrame):
            captured = frame.metadata.get(CAPTURE_TIME)
            self.metrics.frame_out(None if captured is None else time.perf_counter() - captured)
        # A lossless output waits for a slow sink, but gives up once the session is stopped.
        while not self._stop.is_set():
            try:
                self.output.put(frame, timeout=0.5)
                return
            except TimeoutError:
                continue
            except QueueClosed:
                return


def ticks(count: int, fps: float, time_base: Fraction = Fraction(1, 90_000)) -> list[Tick]:
    """``count`` ticks at ``fps`` with pts in ``time_base`` units (for txt2img renders)."""
    step = Fraction(1, 1) / Fraction(fps).limit_denominator(1001) / time_base
    return [Tick(pts=round(i * step), time_base=time_base) for i in range(count)]


def next_output(session: Session) -> Frame:
    """The session's next output, waiting for it. Polls rather than blocking forever: a worker that died without an
    end-of-stream raises ``StreamrtError`` instead of hanging the caller (the file renders use this)."""
    while True:
        try:
            return session.output.get(timeout=0.5)
        except TimeoutError:
            if not session.running:
                try:
                    item = session.output.get_nowait()
                except QueueClosed:
                    item = None
                if item is not None:
                    return item
                raise StreamrtError(
                    f"session {session.name!r} stopped without finishing the stream"
                ) from None
        except QueueClosed:
            raise StreamrtError(f"session {session.name!r} closed its output early") from None
