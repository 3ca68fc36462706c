"""PyAV file readers and writers: the transport edge between media files and streamrt frames.

This is the only place that converts between ``av`` frames and ``streamrt.frames``:

- ``open_input(path)`` probes a file and returns a ``MediaReader`` that decodes it into ``VideoFrame`` (uint8 (H, W, 3)
  tensors) and ``AudioFrame`` (float32 (channels, samples)) objects, keeping each stream's pts and time base;
- ``MediaWriter`` encodes frames into a file whose container and codecs follow the extension (.mp4 -> h264 + aac,
  .webm -> vp9 + opus, .mkv -> h264 + the source audio), copying the source's audio stream without re-encoding when
  the container allows its codec. Writing is atomic: the result appears under its name only when complete.

Every failure a user can cause (missing, empty, corrupt or truncated input; unsupported extension; odd frame size)
raises a ``StreamrtError`` subclass whose message names the file and the problem.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from streamrt.errors import InputError, StreamrtError
from streamrt.frames import AudioFrame, VideoFrame

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class OutputError(StreamrtError):
    """The output cannot be written as asked: unsupported extension, odd frame size, missing folder, bad pts."""


# ---------------------------------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class OutputFormat:
    """How one output extension is written."""

    extension: str
    muxer: str
    video_codecs: tuple[str, ...]  # tried in order: the first encoder this FFmpeg build has wins
    video_options: tuple[tuple[str, str], ...]
    audio_copy: frozenset[str]  # audio codecs remuxed as they are
    audio_codec: str  # encoder for everything else
    muxer_options: tuple[tuple[str, str], ...] = ()


# libx264 first; the others are hardware or alternative h264 encoders, used only when a build lacks libx264.
_H264 = (
    "libx264",
    "libopenh264",
    "h264_nvenc",
    "h264_qsv",
    "h264_vaapi",
    "h264_videotoolbox",
    "h264_v4l2m2m",
)
# crf 18 is visually lossless for h264; veryfast keeps offline rendering from being encode-bound on small CPUs.
_X264_OPTIONS = (("crf", "18"), ("preset", "veryfast"))
# Constant quality (b=0 + crf) with row multithreading; cpu-used 5 is libvpx's fast "good" setting.
_VP9_OPTIONS = (("crf", "30"), ("b", "0"), ("deadline", "good"), ("cpu-used", "5"), ("row-mt", "1"))

FORMATS: dict[str, OutputFormat] = {
    ".mp4": OutputFormat(
        ".mp4",
        "mp4",
        _H264,
        _X264_OPTIONS,
        frozenset({"aac", "mp3"}),
        "aac",
        # moov atom first: the file plays while it downloads.
        muxer_options=(("movflags", "+faststart"),),
    ),
    ".webm": OutputFormat(
        ".webm", "webm", ("libvpx-vp9",), _VP9_OPTIONS, frozenset({"opus", "vorbis"}), "libopus"
    ),
    ".mkv": OutputFormat(
        ".mkv",
        "matroska",
        _H264,
        _X264_OPTIONS,
        frozenset({"aac", "opus", "vorbis", "mp3", "flac", "ac3", "pcm_s16le", "pcm_f32le"}),
        "aac",
        # aac's priming packet has a negative pts; by default the muxer would shift every stream (video too) later.
        muxer_options=(("avoid_negative_ts", "disabled"),),
    ),
}


@dataclass(frozen=True)
class AudioOutputFormat:
    """How one audio-only output extension is written (the output of audio generators)."""

    extension: str
    muxer: str
    codec: str


# wav and flac keep every sample (16-bit); ogg holds Opus, which decoders always return at 48 kHz (same duration).
AUDIO_FORMATS: dict[str, AudioOutputFormat] = {
    ".wav": AudioOutputFormat(".wav", "wav", "pcm_s16le"),
    ".flac": AudioOutputFormat(".flac", "flac", "flac"),
    ".ogg": AudioOutputFormat(".ogg", "ogg", "libopus"),
}


def audio_output_format(path: PathLike) -> AudioOutputFormat:
    """The audio-only format of an output path, or ``OutputError`` listing the supported extensions."""
    ext = Path(path).suffix.lower()
    fmt = AUDIO_FORMATS.get(ext)
    if fmt is None:
        raise OutputError(
            f"unsupported audio output extension {ext or '(none)'!r} for {path}; use one of "
            f"{', '.join(sorted(AUDIO_FORMATS))}"
        )
    return fmt


def output_format(path: PathLike) -> OutputFormat:
    """The format an output path will be written in, or ``OutputError`` listing the supported extensions."""
    ext = Path(path).suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        supported = ", ".join(sorted(FORMATS))
        raise OutputError(
            f"unsupported output extension {ext or '(none)'!r} for {path}; use one of {supported}"
        )
    return fmt


def check_output_path(path: PathLike, *, missing_folders_ok: bool = False, audio_only: bool = False) -> Any:
    """Validate an output path before any work starts: a supported extension and an existing, writable folder.

    Returns its ``OutputFormat`` (or ``AudioOutputFormat`` with ``audio_only``). With ``missing_folders_ok`` the
    folder may be missing if it can be created (the caller creates it when it is about to write, so a run that fails
    early leaves nothing behind).
    """
    fmt = audio_output_format(path) if audio_only else output_format(path)
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() and missing_folders_ok:
        folder = next((p for p in folder.resolve().parents if p.exists()), Path("/"))
        if not folder.is_dir():
            raise OutputError(f"cannot create the output folder: {folder} is not a folder")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable")
    if target.is_dir():
        raise OutputError(f"output {target} is a folder")
    return fmt


def check_frame_size(width: int, height: int) -> None:
    """yuv420p (h264, vp9) stores chroma at half resolution, so both sides must be even."""
    if width <= 0 or height <= 0:
        raise OutputError(f"invalid frame size {width}x{height}")
    if width % 2 or height % 2:
        raise OutputError(
            f"frame size {width}x{height} is odd; h264/vp9 (yuv420p) need an even width and height "
            "(crop or resize the input by one pixel)"
        )


def _encoder(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different types for an unknown codec across versions
            continue
        if name != names[0]:
            log.warning("encoder %s is not available; using %s", names[0], name)
        return name
    raise OutputError(f"this FFmpeg build has none of the encoders {', '.join(names)}")


# ---------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    layout: str
    time_base: Fraction
    duration: float | None


@dataclass(frozen=True)
class MediaInfo:
    """What a probe of the file found. Video fields are None when the file has no video stream."""

    path: str
    format: str
    duration: float | None
    video_codec: str | None
    width: int | None
    height: int | None
    rate: Fraction | None
    time_base: Fraction | None
    frame_count: int | None
    audio: AudioInfo | None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None


def open_input(path: PathLike, *, need_video: bool = True) -> MediaReader:
    """Probe ``path`` and return a reader, or raise ``InputError`` naming the file and what is wrong with it."""
    return MediaReader(path, need_video=need_video)


class MediaReader:
    """Decodes one file into streamrt frames. Iterate it (or ``frames()``) from one thread; ``close()`` when done."""

    def __init__(self, path: PathLike, *, need_video: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"input file not found: {self.path}")
        if not self.path.is_file():
            raise InputError(f"input {self.path} is not a file")
        if self.path.stat().st_size == 0:
            raise InputError(f"input file {self.path} is empty")
        try:
            self._container = av.open(str(self.path), "r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(
                f"cannot read {self.path}: corrupt, truncated or not a media file ({_reason(exc)})"
            ) from exc
        try:
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise
        if need_video and not self.info.has_video:
            self._container.close()
            raise InputError(f"input file {self.path} has no video stream")
        self.frames_decoded = 0

    def _probe(self) -> MediaInfo:
        c = self._container
        video = c.streams.video[0] if c.streams.video else None
        audio = c.streams.audio[0] if c.streams.audio else None
        if video is None and audio is None:
            raise InputError(
                f"cannot read {self.path}: no audio or video stream found (corrupt, truncated or not a media file)"
            )
        duration = c.duration / av.time_base if c.duration is not None else None
        audio_info = None
        if audio is not None:
            cc = audio.codec_context
            if not cc.sample_rate:
                raise InputError(f"cannot read {self.path}: its audio stream has no sample rate (corrupt?)")
            audio_info = AudioInfo(
                codec=cc.name,
                sample_rate=int(cc.sample_rate),
                channels=int(cc.channels),
                layout=cc.layout.name,
                time_base=Fraction(audio.time_base),
                duration=float(audio.duration * audio.time_base) if audio.duration else duration,
            )
        if video is None:
            return MediaInfo(
                str(self.path), c.format.name, duration, None, None, None, None, None, None, audio_info
            )
        cc = video.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"cannot read {self.path}: its video stream has no frame size (corrupt?)")
        rate = video.average_rate or video.guessed_rate or video.base_rate
        count = video.frames or self._count_packets()
        return MediaInfo(
            path=str(self.path),
            format=c.format.name,
            duration=duration,
            video_codec=cc.name,
            width=int(cc.width),
            height=int(cc.height),
            rate=Fraction(rate) if rate else None,
            time_base=Fraction(video.time_base),
            frame_count=count or None,
            audio=audio_info,
        )

    def _count_packets(self) -> int:
        # Matroska/WebM headers carry no frame count; demuxing without decoding is cheap and gives the exact one.
        # A second container, because seeking back to 0 can skip audio packets with negative pts.
        count = 0
        try:
            with av.open(str(self.path), "r") as probe:
                for packet in probe.demux(probe.streams.video[0]):
                    if packet.size:
                        count += 1
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read {self.path}: corrupt ({_reason(exc)})") from exc
        return count

    # ------------------------------------------------------------------ decoding
    def __iter__(self) -> Iterator[VideoFrame | AudioFrame]:
        return self.frames()

    def frames(self, *, video: bool = True, audio: bool = True) -> Iterator[VideoFrame | AudioFrame]:
        """Decoded frames of the first video and/or audio stream, in file order."""
        c = self._container
        streams = []
        if video and c.streams.video:
            streams.append(c.streams.video[0])
        if audio and c.streams.audio:
            streams.append(c.streams.audio[0])
        if not streams:
            return
        vstream = c.streams.video[0] if video and c.streams.video else None
        step = self._pts_step(vstream)
        next_vpts = 0
        next_apts = 0
        first_audio = True
        resampler: av.AudioResampler | None = None
        try:
            for packet in c.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        pts = frame.pts if frame.pts is not None else next_vpts
                        next_vpts = pts + step
                        self.frames_decoded += 1
                        yield self._video(frame, pts, Fraction(packet.stream.time_base))
                    elif isinstance(frame, av.AudioFrame):
                        if resampler is None:
                            # Normalise every sample format/layout to float32 planar (channels, samples).
                            resampler = av.AudioResampler(
                                format="fltp", layout=frame.layout, rate=frame.sample_rate
                            )
                        sr = frame.sample_rate
                        if frame.pts is not None:
                            # Count samples, resyncing on the container's pts only at a real gap: Matroska's
                            # millisecond pts would otherwise make continuous audio jitter by up to 1 ms.
                            tick = Fraction(packet.stream.time_base) * sr
                            stamped = round(frame.pts * tick)
                            if first_audio or abs(stamped - next_apts) > max(1, tick):
                                next_apts = stamped
                            first_audio = False
                        for out in resampler.resample(frame):
                            data = torch.from_numpy(np.ascontiguousarray(out.to_ndarray(), dtype=np.float32))
                            yield AudioFrame(
                                data=data, sample_rate=sr, pts=next_apts, time_base=Fraction(1, sr)
                            )
                            next_apts += out.samples
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(
                f"cannot decode {self.path} after {self.frames_decoded} video frames: corrupt ({_reason(exc)})"
            ) from exc
        expected = self.info.frame_count
        if vstream is not None and expected and self.frames_decoded < expected:
            raise InputError(
                f"{self.path} is truncated or corrupt: decoded {self.frames_decoded} of {expected} video frames"
            )

    @staticmethod
    def _pts_step(stream: Any) -> int:
        # Frames without a pts get the previous pts plus one frame duration in the stream's time base.
        if stream is None:
            return 1
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            return 1
        return max(1, round(1 / (Fraction(rate) * Fraction(stream.time_base))))

    @staticmethod
    def _video(frame: av.VideoFrame, pts: int, time_base: Fraction) -> VideoFrame:
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
        return VideoFrame(data=torch.from_numpy(np.ascontiguousarray(rgb)), pts=int(pts), time_base=time_base)

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    # FFmpeg errors carry errno, strerror and the file name; people need only the strerror part.
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class AudioSpec:
    """An audio stream encoded from the ``AudioFrame`` objects given to ``MediaWriter.write``."""

    sample_rate: int
    channels: int


def partial_path(path: PathLike) -> Path:
    """The hidden temporary file a writer fills before renaming it onto ``path`` (same folder: rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial{p.suffix}")


class _AudioEncoder:
    """Resamples av audio frames to what an encoder takes, keeps pts continuous, encodes and muxes."""

    def __init__(self, container: Any, codec: str, sample_rate: int, channels: int) -> None:
        spec = av.codec.Codec(codec, "w")
        rates = spec.audio_rates
        # Keep the source rate when the encoder takes it (opus takes only 8..48 kHz steps; aac a fixed list).
        rate = sample_rate if not rates or sample_rate in rates else (48000 if 48000 in rates else max(rates))
        layout = "mono" if channels == 1 else "stereo"  # every encoder here takes these two
        formats = [f.name for f in spec.audio_formats or []]
        fmt = next((f for f in ("fltp", "flt", "s16") if f in formats), formats[0] if formats else "fltp")
        self.stream = container.add_stream(codec, rate=rate)
        self.stream.layout = layout
        self.stream.format = fmt
        self.container = container
        self.rate = rate
        self._resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        self._next_pts: int | None = None

    def encode(self, frame: av.AudioFrame | None, start: float = 0.0) -> None:
        """Encode ``frame`` (None flushes). ``start`` (seconds) places the first frame."""
        outs = self._resampler.resample(frame)
        for out in outs:
            if self._next_pts is None:
                self._next_pts = round(start * self.rate)
            out.pts = self._next_pts
            out.time_base = Fraction(1, self.rate)
            self._next_pts += out.samples
            for packet in self.stream.encode(out):
                self.container.mux(packet)
        if frame is None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)


class _AudioCopy:
    """Copies the first audio stream of a source file: packets remuxed as they are, or decoded and re-encoded."""

    def __init__(self, container: Any, fmt: OutputFormat, source: Path) -> None:
        try:
            self._src = av.open(str(source), "r")
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read the audio of {source}: {_reason(exc)}") from exc
        self.source = source
        self.present = bool(self._src.streams.audio)
        self.done = False
        self._encoder: _AudioEncoder | None = None
        self._packets: Iterator[Any] = iter(())
        self._pending: Any = None  # one packet read ahead, not yet due
        if not self.present:
            self._src.close()
            return
        self._in = self._src.streams.audio[0]
        codec = self._in.codec_context.name
        # aac from ADTS sources (mpeg-ts, raw .aac) has no extradata and would need a bitstream filter to remux.
        remux = codec in fmt.audio_copy and not (codec == "aac" and not self._in.codec_context.extradata)
        if remux:
            self.stream = container.add_stream_from_template(self._in)
            log.info("copying %s audio from %s without re-encoding", codec, source)
        else:
            self._encoder = _AudioEncoder(
                container,
                fmt.audio_codec,
                self._in.codec_context.sample_rate,
                self._in.codec_context.channels,
            )
            log.info("re-encoding %s audio from %s as %s", codec, source, fmt.audio_codec)
        self._container = container
        self._packets = iter(self._src.demux(self._in))
        self._tb = Fraction(self._in.time_base)

    def pump(self, until: float | None) -> None:
        """Write source audio up to ``until`` seconds (None: everything left)."""
        if not self.present or self.done:
            return
        try:
            while True:
                packet = self._pending if self._pending is not None else next(self._packets, None)
                self._pending = None
                if packet is None:
                    self.finish()
                    return
                t = packet.pts if packet.pts is not None else packet.dts
                if until is not None and t is not None and float(t * self._tb) > until:
                    self._pending = packet  # not due yet: keeps audio interleaved with video
                    return
                self._write(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"cannot copy the audio of {self.source}: corrupt ({_reason(exc)})") from exc

    def _write(self, packet: Any) -> None:
        if self._encoder is None:
            if packet.dts is None or not packet.size:  # demuxer's end-of-stream marker
                return
            packet.stream = self.stream
            self._container.mux(packet)
            return
        for frame in packet.decode():
            start = float(frame.pts * self._tb) if frame.pts is not None else 0.0
            self._encoder.encode(frame, start=max(start, 0.0))

    def finish(self) -> None:
        """Flush the re-encoder (if any); nothing more is copied."""
        if self.present and not self.done and self._encoder is not None:
            self._encoder.encode(None)
        self.done = True

    def close(self) -> None:
        if self.present:
            self._src.close()


class MediaWriter:
    """Encodes streamrt frames into ``path`` atomically.

    The container and codecs follow the extension (``FORMATS``). Each video frame's pts is rescaled from the frame's
    time base to the stream's, which is ``time_base`` (pass the input stream's time base to keep pts exactly; a muxer
    with a fixed clock, like Matroska's milliseconds, rounds). ``audio`` is either the path of a file whose first audio
    stream is copied (remuxed when the container allows the codec, otherwise re-encoded), an ``AudioSpec`` for an
    audio stream encoded from the ``AudioFrame`` objects given to ``write``, or None. ``audio_end`` (seconds) stops
    the copy there; ``video_options`` override the encoder's options (e.g. ``{"crf": "28"}``).

    Frames go to a hidden temporary file in the same folder; ``close()`` renames it onto ``path``, ``abort()`` (or an
    exception inside ``with``) deletes it, so no partial output is ever left under the target name.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        width: int,
        height: int,
        rate: Fraction | float | int = 30,
        time_base: Fraction | None = None,
        audio: PathLike | AudioSpec | None = None,
        audio_end: float | None = None,
        video_options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = check_output_path(self.path)
        check_frame_size(width, height)
        self.width, self.height = width, height
        self.rate = Fraction(rate).limit_denominator(1_000_000)
        if self.rate <= 0:
            raise OutputError(f"invalid frame rate {rate}")
        self.time_base = Fraction(time_base) if time_base else 1 / self.rate
        self.frames_written = 0
        self._audio_end = audio_end
        self._video_options = dict(self.format.video_options) | dict(video_options or {})
        self._last_pts: int | None = None
        self._warned_rounding = False
        self._finished = False
        self.tmp_path = partial_path(self.path)
        self._container: Any = None
        self._audio_copy: _AudioCopy | None = None
        self._audio_enc: _AudioEncoder | None = None
        try:
            self._open(audio)
        except BaseException:
            self.abort()
            raise

    def _open(self, audio: PathLike | AudioSpec | None) -> None:
        fmt = self.format
        codec = _encoder(fmt.video_codecs)
        self._container = av.open(
            str(self.tmp_path), "w", format=fmt.muxer, options=dict(fmt.muxer_options) or None
        )
        stream = self._container.add_stream(codec, rate=self.rate)
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = "yuv420p"
        # The muxer starts from this time base (mp4 keeps it, scaled by an integer when it is coarse; Matroska and
        # WebM always use milliseconds), and the encoder works in it, so input pts pass through unchanged.
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if codec.startswith("lib"):
            stream.codec_context.options = self._video_options
        self._video = stream
        if isinstance(audio, AudioSpec):
            self._audio_enc = _AudioEncoder(
                self._container, fmt.audio_codec, audio.sample_rate, audio.channels
            )
        elif audio is not None:
            self._audio_copy = _AudioCopy(self._container, fmt, Path(audio))
        log.info(
            "writing %s (%s, %dx%d @ %s fps, time base %s)",
            self.path,
            codec,
            self.width,
            self.height,
            self.rate,
            self.time_base,
        )

    # ------------------------------------------------------------------ writing
    def write(self, frame: VideoFrame | AudioFrame) -> None:
        """Encode one frame. Video pts must increase strictly (after rescaling to the stream's time base)."""
        if self._finished:
            raise OutputError(f"writer for {self.path} is already closed")
        try:
            if isinstance(frame, VideoFrame):
                self._write_video(frame)
            elif isinstance(frame, AudioFrame):
                self._write_audio(frame)
            else:
                raise TypeError(f"MediaWriter writes VideoFrame or AudioFrame, not {type(frame).__name__}")
        except av.FFmpegError as exc:
            raise OutputError(f"cannot encode {self.path}: {_reason(exc)}") from exc

    def _write_video(self, frame: VideoFrame) -> None:
        if frame.width != self.width or frame.height != self.height:
            raise OutputError(
                f"frame size changed from {self.width}x{self.height} to {frame.width}x{frame.height} "
                f"while writing {self.path}"
            )
        exact = Fraction(frame.pts) * frame.time_base / self.time_base
        pts = round(exact)
        if pts != exact and not self._warned_rounding:
            log.warning(
                "pts %s in %s is not exact in %s; rounding", frame.pts, frame.time_base, self.time_base
            )
            self._warned_rounding = True
        if self._last_pts is not None and pts <= self._last_pts:
            raise OutputError(
                f"video pts must increase: got {pts} after {self._last_pts} (time base {self.time_base}) "
                f"while writing {self.path}"
            )
        self._last_pts = pts
        av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.data.cpu().numpy()), format="rgb24")
        av_frame.pts = pts
        av_frame.time_base = self.time_base
        for packet in self._video.encode(av_frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._audio_copy is not None:
            # Keep source audio interleaved with the video written so far (half a second ahead is plenty).
            until = float(pts * self.time_base) + 0.5
            if self._audio_end is not None:
                until = min(until, self._audio_end)
            self._audio_copy.pump(until)

    def _write_audio(self, frame: AudioFrame) -> None:
        if self._audio_enc is None:
            return  # no audio stream was asked for: dropping is the declared behaviour
        data = frame.data.detach().to(torch.float32).cpu().numpy()
        layout = "mono" if frame.channels == 1 else "stereo" if frame.channels == 2 else None
        if layout is None:
            raise OutputError(f"cannot write {frame.channels}-channel audio; mono or stereo only")
        av_frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
        av_frame.sample_rate = frame.sample_rate
        self._audio_enc.encode(av_frame, start=max(frame.time, 0.0))

    # ------------------------------------------------------------------ finishing
    def close(self) -> None:
        """Flush the encoders, finish the file and move it onto the target name."""
        if self._finished:
            return
        try:
            if self.frames_written == 0:
                raise OutputError(f"no video frames were written; {self.path} not created")
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio_copy is not None:
                self._audio_copy.pump(self._audio_end)  # None: everything left
                self._audio_copy.finish()
            if self._audio_enc is not None:
                self._audio_enc.encode(None)
            self._container.close()
            self._container = None
            self._close_sources()
            os.replace(self.tmp_path, self.path)
            self._finished = True
        except av.FFmpegError as exc:
            self.abort()
            raise OutputError(f"cannot finish {self.path}: {_reason(exc)}") from exc
        except BaseException:
            self.abort()
            raise
        log.info("wrote %s (%d video frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Discard everything: close the container and delete the temporary file. Safe to call more than once."""
        self._finished = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # noqa: BLE001 - the file is being thrown away; report nothing else
                log.debug("ignoring error while aborting %s: %s", self.tmp_path, exc)
            self._container = None
        self._close_sources()
        try:
            self.tmp_path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", self.tmp_path, exc)

    def _close_sources(self) -> None:
        if self._audio_copy is not None:
            self._audio_copy.close()
            self._audio_copy = None

    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class AudioWriter:
    """Encodes ``AudioFrame`` objects into an audio-only file (``AUDIO_FORMATS``), atomically like ``MediaWriter``.

    The rate and channel count are fixed by the first frame; samples are written back to back (the frames' pts are
    checked to be contiguous, so a generator that loses or repeats samples is caught, not written).
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.format = check_output_path(self.path, audio_only=True)
        self.tmp_path = partial_path(self.path)
        self.samples_written = 0
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self._next_pts: int | None = None
        self._container: Any = None
        self._encoder: _AudioEncoder | None = None
        self._finished = False

    def write(self, frame: AudioFrame) -> None:
        if self._finished:
            raise OutputError(f"writer for {self.path} is already closed")
        if self._encoder is None:
            self._open(frame.sample_rate, frame.channels)
        if frame.sample_rate != self.sample_rate or frame.channels != self.channels:
            raise OutputError(
                f"audio changed from {self.channels} channels at {self.sample_rate} Hz to {frame.channels} "
                f"channels at {frame.sample_rate} Hz while writing {self.path}"
            )
        if self._next_pts is not None and frame.pts != self._next_pts:
            raise OutputError(
                f"audio is not contiguous: a chunk starts at sample {frame.pts}, expected {self._next_pts} "
                f"(writing {self.path})"
            )
        self._next_pts = frame.pts + frame.samples
        if frame.samples == 0:
            return
        assert self._encoder is not None
        data = np.ascontiguousarray(frame.data.detach().to(torch.float32).cpu().numpy())
        av_frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self._layout)
        av_frame.sample_rate = frame.sample_rate
        try:
            self._encoder.encode(av_frame)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot encode {self.path}: {_reason(exc)}") from exc
        self.samples_written += frame.samples

    def _open(self, sample_rate: int, channels: int) -> None:
        if channels not in (1, 2):
            raise OutputError(f"cannot write {channels}-channel audio to {self.path}; mono or stereo only")
        self.sample_rate, self.channels = sample_rate, channels
        self._layout = "mono" if channels == 1 else "stereo"
        try:
            self._container = av.open(str(self.tmp_path), "w", format=self.format.muxer)
            self._encoder = _AudioEncoder(self._container, self.format.codec, sample_rate, channels)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Flush the encoder, finish the file and move it onto the target name."""
        if self._finished:
            return
        try:
            if self._encoder is None or self.samples_written == 0:
                raise OutputError(f"no audio was written; {self.path} not created")
            self._encoder.encode(None)
            self._container.close()
            self._container = None
            os.replace(self.tmp_path, self.path)
            self._finished = True
        except av.FFmpegError as exc:
            self.abort()
            raise OutputError(f"cannot finish {self.path}: {_reason(exc)}") from exc
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything written so far. Safe to call more than once."""
        self._finished = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # noqa: BLE001 - the file is being thrown away
                log.debug("ignoring error while aborting %s: %s", self.tmp_path, exc)
            self._container = None
        try:
            self.tmp_path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", self.tmp_path, exc)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
