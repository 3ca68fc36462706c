"""Tiny test clips made with PyAV (shared by the file and render tests): real codecs, a fraction of a second."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Codecs each container gets in test clips: the same ones the writer picks, so remux paths are exercised too.
CODECS = {".mp4": ("libx264", "aac"), ".mkv": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus")}


def make_clip(
    path: Path,
    *,
    frames: int = 12,
    width: int = 64,
    height: int = 64,
    rate: int = 24,
    audio: bool = True,
    sample_rate: int = 48000,
    vcodec: str | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """A moving gradient with a square, plus a quiet tone; pts 0..frames-1 in 1/rate."""
    default_vcodec, acodec = CODECS[path.suffix]
    with av.open(str(path), "w", options=options) as c:
        v = c.add_stream(vcodec or default_vcodec, rate=rate)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.codec_context.time_base = Fraction(1, rate)
        a = None
        if audio:
            a = c.add_stream(acodec, rate=sample_rate)
            a.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            img = np.stack([(xx * 4 + i * 8) % 256, (yy * 4) % 256, np.full_like(xx, 128)], -1).astype(
                np.uint8
            )
            s = (i * 3) % max(1, width - 16)
            img[8:24, s : s + 16] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, rate)
            for p in v.encode(f):
                c.mux(p)
        if a is not None:
            total = round(frames / rate * sample_rate)
            t = np.arange(total) / sample_rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            chunk = 1024
            for start in range(0, total, chunk):
                block = np.stack([tone[start : start + chunk]] * 2)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = sample_rate, start, Fraction(1, sample_rate)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return path


def probe(path: Path) -> dict:
    """Video pts (stream time base), frame count, audio codec and audio duration in seconds."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        pts = [f.pts for f in c.decode(vs)]
        out: dict = {
            "pts": pts,
            "time_base": Fraction(vs.time_base),
            "frames": len(pts),
            "codec": vs.codec_context.name,
        }
        out["size"] = (vs.codec_context.width, vs.codec_context.height)
    with av.open(str(path)) as c:
        if not c.streams.audio:
            out["audio_codec"] = None
            out["audio_seconds"] = 0.0
            return out
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(a))
        out["audio_codec"] = a.codec_context.name
        out["audio_seconds"] = samples / a.codec_context.sample_rate
    return out
