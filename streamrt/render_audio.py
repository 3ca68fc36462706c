"""``streamrt render`` for audio generators (audio in, audio out): AP-BWE, BinauralFlow, passthrough-style filters.

The input is any file PyAV reads with an audio stream (wav, flac, ogg, or the audio of a video file). A feeder thread
decodes it, resamples it to the rate the generator takes (``Generator.audio_input_format()``: for AP-BWE a narrowband
file is resampled up to the target rate, a file already at that rate is taken as it is), cuts it into chunks of
``chunk_ms`` and submits them to a session; the calling thread writes what comes out. Every queue is lossless, and the
output holds exactly the input's duration at the output rate, or the render fails and leaves no file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from buffers.queues import QueueClosed, QueuePolicy
from streamrt.errors import InputError, ParamError, StreamrtError
from streamrt.frames import AudioFrame, EndOfStream, ErrorEvent
from streamrt.generator import Generator
from streamrt.resample import StreamResampler, resampled_length
from streamrt.session import Session, next_output
from transport.files import AudioWriter, MediaReader

DEFAULT_CHUNK_MS = 1000.0
MIN_CHUNK_MS, MAX_CHUNK_MS = 1.0, 10_000.0


@dataclass(frozen=True)
class AudioRenderResult:
    output: Path
    samples: int
    sample_rate: int
    elapsed: float

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    @property
    def frames(self) -> int:  # the render summary's common field: samples, for audio
        return self.samples

    def summary(self) -> str:
        speed = self.seconds / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"wrote {self.output} ({self.seconds:.2f} s of audio at {self.sample_rate} Hz) "
            f"in {self.elapsed:.1f} s ({speed:.1f}x real time)"
        )


def check_chunk_ms(chunk_ms: float) -> None:
    if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
        raise ParamError(
            f"--chunk-ms must be between {MIN_CHUNK_MS:g} and {MAX_CHUNK_MS:g}; got {chunk_ms:g}"
        )


def render_audio(
    gen: Generator,
    reader: MediaReader,
    output: Path,
    *,
    chunk_ms: float | None,
    started: float,
    progress: bool,
) -> AudioRenderResult:
    """Run a prepared audio generator over ``reader``'s audio into ``output``. Closes neither ``gen`` nor ``reader``."""
    name = gen.spec.name
    info = reader.info.audio
    if info is None:
        raise InputError(f"{reader.path} has no audio stream; {name} needs audio input")
    rate, channels = gen.audio_input_format()
    rate = rate or info.sample_rate
    if channels is not None and info.channels != channels:
        fix = "downmix it to mono" if channels == 1 else f"convert it to {channels} channels"
        raise InputError(
            f"{name} takes {channels}-channel audio; {reader.path} has {info.channels} channels ({fix} first, "
            f"e.g. ffmpeg -i IN -ac {channels} OUT.wav)"
        )
    chunk = max(1, round((chunk_ms or DEFAULT_CHUNK_MS) * rate / 1000))
    session = Session(gen, input_policy=QueuePolicy.LOSSLESS, output_policy=QueuePolicy.LOSSLESS, name=name)
    feed = _AudioFeed(reader, session, info.sample_rate, rate, info.channels, chunk)
    expected_seconds = info.duration or None
    bar = tqdm(total=expected_seconds, unit="s", desc=name, disable=None if progress else True, leave=False)
    writer: AudioWriter | None = None
    out_rate: int | None = None
    try:
        session.start()
        feed.start()
        while True:
            item = next_output(session)
            if isinstance(item, EndOfStream):
                break
            if isinstance(item, ErrorEvent):
                if item.exception_type == "KeyboardInterrupt":
                    raise KeyboardInterrupt
                raise StreamrtError(f"pipeline {name!r} failed: {item.message}")
            if not isinstance(item, AudioFrame):
                continue
            if writer is None:
                output.parent.mkdir(parents=True, exist_ok=True)
                writer = AudioWriter(output)
                out_rate = item.sample_rate
            writer.write(item)
            bar.update(item.samples / item.sample_rate)
        feed.join()
        if writer is None or out_rate is None:
            raise StreamrtError(f"pipeline {name!r} produced no audio; {output} not written")
        # The generator's output covers its input exactly (at its own output rate): anything else loses audio.
        want = resampled_length(feed.samples_in, rate, out_rate)
        if writer.samples_written != want:
            raise StreamrtError(
                f"pipeline {name!r} produced {writer.samples_written} samples for {feed.samples_in} input samples "
                f"(expected {want} at {out_rate} Hz); {output} not written"
            )
        writer.close()
        return AudioRenderResult(output, writer.samples_written, out_rate, time.perf_counter() - started)
    finally:
        bar.close()
        if writer is not None:
            writer.abort()  # no-op after a successful close
        session.close()  # a feeder blocked on a full input queue returns at once
        feed.join(timeout=5.0, raise_error=False)


class _AudioFeed:
    """Feeder thread: decode, resample to the generator's rate, re-chunk, submit; then end of stream."""

    def __init__(
        self, reader: MediaReader, session: Session, file_rate: int, rate: int, channels: int, chunk: int
    ) -> None:
        self.reader, self.session, self.rate, self.chunk = reader, session, rate, chunk
        self.resampler = StreamResampler(file_rate, rate, channels)
        self.samples_in = 0  # at the generator's rate
        self.error: BaseException | None = None
        self._pending = torch.zeros(channels, 0)
        self._thread = threading.Thread(target=self._run, name="streamrt-render-audio-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None, *, raise_error: bool = True) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
        if raise_error and self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        try:
            decoded = 0
            for frame in self.reader.frames(video=False):
                if isinstance(frame, AudioFrame):
                    decoded += frame.samples
                    self._submit(self.resampler.push(frame.data), last=False)
            if decoded == 0:
                raise InputError(f"{self.reader.path}: the audio stream holds no samples")
            self._submit(self.resampler.flush(), last=True)
            self.session.end()
        except QueueClosed:
            return  # the render is being torn down
        except BaseException as exc:  # noqa: BLE001 - raised again in the writing thread by join()
            self.error = exc
            try:
                self.session.end()
            except QueueClosed:
                pass

    def _submit(self, samples: torch.Tensor, *, last: bool) -> None:
        self._pending = torch.cat([self._pending, samples], dim=-1)
        while self._pending.shape[-1] >= self.chunk or (last and self._pending.shape[-1] > 0):
            part, self._pending = self._pending[:, : self.chunk], self._pending[:, self.chunk :]
            frame = AudioFrame(data=part.contiguous(), sample_rate=self.rate, pts=self.samples_in)
            self.samples_in += part.shape[-1]
            self.session.submit(frame)
