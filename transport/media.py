"""The live edge: ``av`` frames from and to WebRTC tracks, and the session clock.

Conversions happen here and nowhere else (as ``transport.files`` does for files). Generated output is stamped from
the session clock rather than from the input's pts: a generator may drop, skip or invent frames, and the receiver
must see time advance as the frames are really produced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from fractions import Fraction

import av
import numpy as np
import torch
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.reformatter import VideoReformatter

from buffers.queues import FrameQueue, QueueClosed, QueuePolicy
from streamrt.frames import AudioFrame, VideoFrame

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
# Opus on the wire is always 48 kHz (RFC 7587), whatever the source rate.
OPUS_RATE = 48_000
# Without a new generated frame for this long, the last one is sent again: it keeps the RTP stream (and the peer's
# receiver reports, which the liveness watchdog counts) alive while a slow generator works or a stream is idle.
KEEPALIVE_S = 1.0


class SessionClock:
    """Monotonic time since the session started, in any time base."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def pts(self, time_base: Fraction) -> int:
        return int(self.seconds() / time_base)


# ---------------------------------------------------------------------------------------------------- conversions
def video_from_av(
    frame: av.VideoFrame, size_multiple: int = 1, reformatter: VideoReformatter | None = None
) -> VideoFrame:
    """Decode to uint8 RGB, cropped (not scaled) down to a multiple of ``size_multiple`` so any camera size works.

    Pass one ``reformatter`` per stream: ``frame.to_ndarray(format=...)`` builds a new swscale context for every
    frame (decoded frames are fresh objects), which cost 2-3x more per 640x480 frame in measurements here.
    """
    if reformatter is not None and frame.format.name != "rgb24":
        rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    else:
        rgb = frame.to_ndarray(format="rgb24")
    if size_multiple > 1:
        h = rgb.shape[0] - rgb.shape[0] % size_multiple
        w = rgb.shape[1] - rgb.shape[1] % size_multiple
        rgb = rgb[:h, :w]
    data = torch.from_numpy(np.ascontiguousarray(rgb))
    tb = frame.time_base or VIDEO_TIME_BASE
    return VideoFrame(data=data, pts=int(frame.pts or 0), time_base=Fraction(tb))


def video_to_av(frame: VideoFrame) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(frame.data.numpy(), format="rgb24")


class AudioInput:
    """Opus-decoded audio (s16, 48 kHz, stereo) resampled at the edge to what the generator declares."""

    def __init__(self, sample_rate: int | None, channels: int | None) -> None:
        self.sample_rate = sample_rate or OPUS_RATE
        layout = "mono" if channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.sample_rate)
        self._samples = 0

    def convert(self, frame: av.AudioFrame) -> list[AudioFrame]:
        out = []
        for f in self._resampler.resample(frame):
            data = torch.from_numpy(np.ascontiguousarray(f.to_ndarray(), dtype=np.float32))
            out.append(AudioFrame(data=data, sample_rate=self.sample_rate, pts=self._samples))
            self._samples += data.shape[1]
        return out


def audio_to_av(frame: AudioFrame, pts: int) -> av.AudioFrame:
    """Interleaved s16, the only sample format aiortc's Opus encoder accepts (it resamples the rate itself)."""
    data = frame.data.detach().to(torch.float32).clamp(-1, 1)[:2]
    layout = "mono" if data.shape[0] == 1 else "stereo"
    pcm = (
        (data.T.reshape(1, -1) * 32767.0).round().to(torch.int16).contiguous().numpy()
    )  # (1, samples * channels)
    out = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
    out.sample_rate = frame.sample_rate
    out.pts = pts
    out.time_base = Fraction(1, frame.sample_rate)
    return out


# ---------------------------------------------------------------------------------------------------- tracks
class GeneratedVideoTrack(MediaStreamTrack):
    """Sends generated frames: each viewer has one, fed by the session's output router through its own queue.

    The queue keeps only the newest frame: a viewer whose encoder falls behind skips frames instead of adding delay.
    """

    kind = "video"

    def __init__(self, clock: SessionClock) -> None:
        super().__init__()
        self.clock = clock
        self.queue: FrameQueue[VideoFrame] = FrameQueue(1, QueuePolicy.NEWEST_ONLY, name="video.sink")
        self._last: VideoFrame | None = None
        self._last_pts = -1
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            if self._last is None:
                frame = await self.queue.aget()
            else:
                try:
                    frame = await asyncio.wait_for(self.queue.aget(), KEEPALIVE_S)
                except TimeoutError:
                    frame = self._last
        except QueueClosed:
            self.stop()
            raise MediaStreamError from None
        self._last = frame
        out = video_to_av(frame)
        # Session clock, strictly increasing (an encoder rejects equal timestamps).
        pts = max(self.clock.pts(VIDEO_TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        out.pts, out.time_base = pts, VIDEO_TIME_BASE
        self.frames_sent += 1
        return out

    def stop(self) -> None:
        self.queue.close()
        super().stop()


class GeneratedAudioTrack(MediaStreamTrack):
    """Sends generated audio; pts count samples continuously (aiortc's Opus encoder resamples to 48 kHz)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        # ~1 s of 20 ms chunks: audio must not be dropped while the encoder keeps up, but stays bounded if it does not.
        self.queue: FrameQueue[AudioFrame] = FrameQueue(50, QueuePolicy.DROP_OLDEST, name="audio.sink")
        self._samples = 0

    def offer(self, frame: AudioFrame) -> None:
        """Queue generated audio for sending, in pieces of at most 20 ms: a generator may return a longer chunk (a
        session that fell behind joins its input, ``GeneratorSpec.joins_audio``), and one RTP packet carries 20 ms.
        Raises ``QueueClosed`` once the track has stopped."""
        step = max(1, frame.sample_rate // 50)
        for start in range(0, frame.samples, step):
            piece = frame.data[:, start : start + step]
            self.queue.put_nowait(
                dataclasses.replace(frame, data=piece, pts=frame.pts + start)
                if frame.samples > step
                else frame
            )

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self.queue.aget()
        except QueueClosed:
            self.stop()
            raise MediaStreamError from None
        out = audio_to_av(frame, self._samples)
        self._samples += frame.samples
        return out

    def stop(self) -> None:
        self.queue.close()
        super().stop()
