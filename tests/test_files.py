"""transport.files: reading, writing, audio copy, pts preservation, atomic output and clear input errors."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch
from _media import make_clip, probe

from streamrt.errors import InputError, StreamrtError
from streamrt.frames import AudioFrame, VideoFrame
from transport.files import (
    FORMATS,
    AudioSpec,
    MediaWriter,
    OutputError,
    check_output_path,
    open_input,
    output_format,
    partial_path,
)

EXTS = [".mp4", ".webm", ".mkv"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def _copy(src: Path, dst: Path, **kwargs) -> int:
    """Video frames of ``src`` into ``dst`` (audio copied from ``src``); returns the frames written."""
    with open_input(src) as reader:
        info = reader.info
        with MediaWriter(
            dst,
            width=info.width,
            height=info.height,
            rate=info.rate,
            time_base=info.time_base,
            audio=src,
            **kwargs,
        ) as writer:
            for frame in reader.frames(audio=False):
                writer.write(frame)
        return writer.frames_written


@pytest.mark.parametrize("ext", EXTS)
def test_reader_probes_and_decodes(tmp_path: Path, ext: str) -> None:
    src = make_clip(tmp_path / f"in{ext}", frames=12, width=64, height=48, rate=24)
    with open_input(src) as reader:
        info = reader.info
        assert (info.width, info.height, info.rate, info.frame_count) == (64, 48, Fraction(24), 12)
        assert info.audio is not None and info.audio.sample_rate == 48000 and info.audio.channels == 2
        frames = list(reader)
    video = [f for f in frames if isinstance(f, VideoFrame)]
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    assert len(video) == 12
    assert all(f.data.shape == (48, 64, 3) and f.data.dtype == torch.uint8 for f in video)
    assert [f.pts for f in video] == probe(src)["pts"]
    assert all(f.time_base == info.time_base for f in video)
    assert audio and all(f.data.dtype == torch.float32 and f.channels == 2 for f in audio)
    # Audio pts count samples and are continuous.
    assert all(a.time_base == Fraction(1, 48000) for a in audio)
    assert all(b.pts == a.pts + a.samples for a, b in zip(audio, audio[1:], strict=False))
    assert sum(a.samples for a in audio) / 48000 == pytest.approx(probe(src)["audio_seconds"], abs=1e-6)


@pytest.mark.parametrize("ext", EXTS)
def test_round_trip_keeps_frames_pts_and_audio(tmp_path: Path, ext: str) -> None:
    src = make_clip(tmp_path / f"in{ext}", frames=12)
    out = tmp_path / f"out{ext}"
    assert _copy(src, out) == 12
    a, b = probe(src), probe(out)
    assert b["frames"] == 12
    assert b["time_base"] == a["time_base"] and b["pts"] == a["pts"]  # exact, in the same time base
    # Same container in and out: the audio packets are remuxed, not re-encoded.
    assert b["audio_codec"] == a["audio_codec"]
    assert b["audio_seconds"] == pytest.approx(a["audio_seconds"], abs=1e-3)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("src_ext", "dst_ext"), [(".mp4", ".webm"), (".webm", ".mp4"), (".mp4", ".mkv")])
def test_cross_container_audio_and_pts(tmp_path: Path, src_ext: str, dst_ext: str) -> None:
    src = make_clip(tmp_path / f"in{src_ext}", frames=12)
    out = tmp_path / f"out{dst_ext}"
    _copy(src, out)
    a, b = probe(src), probe(out)
    # aac cannot go into WebM and opus is not allowed in mp4 here: re-encoded; aac goes into mkv as it is.
    assert b["audio_codec"] == {".webm": "opus", ".mp4": "aac", ".mkv": "aac"}[dst_ext]
    seconds_a = [float(p * a["time_base"]) for p in a["pts"]]
    seconds_b = [float(p * b["time_base"]) for p in b["pts"]]
    # Matroska/WebM store milliseconds: pts agree to the muxer's rounding.
    assert seconds_b == pytest.approx(seconds_a, abs=0.0006)
    assert b["audio_seconds"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("ext", EXTS)
def test_writer_encodes_audio_frames(tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"gen{ext}"
    rate, sr = 24, 16000
    tb = Fraction(1, rate)
    with MediaWriter(out, width=32, height=32, rate=rate, audio=AudioSpec(sr, 1)) as writer:
        for i in range(12):
            writer.write(
                VideoFrame(data=torch.full((32, 32, 3), i * 10, dtype=torch.uint8), pts=i, time_base=tb)
            )
            tone = torch.sin(torch.arange(sr // rate) * 0.1).mul(0.2).unsqueeze(0)
            writer.write(AudioFrame(data=tone, sample_rate=sr, pts=i * (sr // rate)))
    info = probe(out)
    assert info["frames"] == 12
    assert [float(p * info["time_base"]) for p in info["pts"]] == pytest.approx(
        [i / 24 for i in range(12)], abs=6e-4
    )
    assert info["audio_codec"] == output_format(out).audio_codec.removeprefix("lib")
    assert info["audio_seconds"] == pytest.approx(0.5, abs=0.05)


def test_writer_keeps_fine_time_base_exactly(tmp_path: Path) -> None:
    # A 90 kHz clock (live capture) with irregular spacing survives mp4 exactly.
    tb = Fraction(1, 90_000)
    pts = [0, 3000, 6100, 9000, 12500, 15000]
    out = tmp_path / "vfr.mp4"
    with MediaWriter(out, width=32, height=32, rate=30, time_base=tb) as writer:
        for p in pts:
            writer.write(VideoFrame(data=torch.zeros(32, 32, 3, dtype=torch.uint8), pts=p, time_base=tb))
    info = probe(out)
    assert [Fraction(p) * info["time_base"] for p in info["pts"]] == [p * tb for p in pts]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    tb = Fraction(1, 24)
    with pytest.raises(OutputError, match="frame size changed"):
        with MediaWriter(target, width=32, height=32, rate=24) as writer:
            for i in range(30):
                writer.write(VideoFrame(data=torch.zeros(32, 32, 3, dtype=torch.uint8), pts=i, time_base=tb))
            assert partial_path(target).exists()  # the work goes to a hidden temporary file
            writer.write(VideoFrame(data=torch.zeros(64, 64, 3, dtype=torch.uint8), pts=30, time_base=tb))
    assert target.read_bytes() == b"previous result"  # untouched
    assert _leftovers(tmp_path) == []


def test_interrupt_leaves_no_partial_file(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", frames=12)
    target = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt), open_input(src) as reader:
        with MediaWriter(
            target, width=64, height=64, rate=24, time_base=reader.info.time_base, audio=src
        ) as w:
            for i, frame in enumerate(reader.frames(audio=False)):
                if i == 6:
                    raise KeyboardInterrupt
                w.write(frame)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_writer_rejects_bad_outputs(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"'\.avi'.*\.mkv, \.mp4, \.webm"):
        check_output_path(tmp_path / "x.avi")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.mp4")
    with pytest.raises(OutputError, match="65x64 is odd"):
        MediaWriter(tmp_path / "odd.mp4", width=65, height=64)
    assert sorted(FORMATS) == [".mkv", ".mp4", ".webm"]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="pts must increase"):
        with MediaWriter(tmp_path / "dup.webm", width=32, height=32) as w:
            w.write(VideoFrame(data=torch.zeros(32, 32, 3, dtype=torch.uint8), pts=1))
            w.write(VideoFrame(data=torch.zeros(32, 32, 3, dtype=torch.uint8), pts=1))
    assert list(tmp_path.iterdir()) == []


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    good = make_clip(tmp_path / "good.mp4", frames=12)
    cases = {
        "missing.mp4": "not found",
        "empty.mp4": "is empty",
        "random.mp4": "corrupt, truncated or not a media file",
        "half.mp4": "corrupt, truncated or not a media file",  # moov atom at the end: nothing can be read
    }
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(os.urandom(4096))
    (tmp_path / "half.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as exc:
            open_input(tmp_path / name)
        assert name in str(exc.value)
    with pytest.raises(InputError, match="not a file"):
        open_input(tmp_path)


def test_truncated_file_fails_while_decoding(tmp_path: Path) -> None:
    # moov first (faststart): the header opens, the frames run out part-way.
    good = make_clip(tmp_path / "good.mp4", frames=24, options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])
    with open_input(cut) as reader:
        assert reader.info.frame_count == 24
        with pytest.raises(InputError, match="cut.mp4") as exc:
            list(reader)
    assert isinstance(exc.value, StreamrtError) and not isinstance(exc.value.__cause__, InputError)


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            torch.zeros(1, 800, dtype=torch.int16).numpy(), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
    with pytest.raises(InputError, match="no video stream"):
        open_input(wav)
    with open_input(wav, need_video=False) as reader:
        assert reader.info.audio is not None and not reader.info.has_video
        assert sum(f.samples for f in reader.frames(video=False)) == 800
