"""`streamrt render` for audio pipelines: reading wav/flac/ogg and the audio of video files, resampling to the
generator's rate, chunking, exact output duration, and the bad-input behaviour (wrong channels, empty or corrupt
files, a generator that loses samples)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _media import make_clip

from streamrt import registry
from streamrt.cli import main
from streamrt.frames import AudioFrame, DataFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.speech import load_audio


class DelayedGain(Generator):
    """Mono in, mono out at 16 kHz: a gain, emitted with a 300-sample delay (so the render must flush)."""

    spec = GeneratorSpec(
        name="test-delayed-gain",
        description="test",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        params=ParamSet([Param("gain", float, 0.5, help="gain", live=True)]),
        sample_rate=16_000,
        channels=1,
        latency=300,
    )

    def on_prepare(self) -> None:
        self._held = torch.zeros(1, 0)
        self._next = 0

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame)
        self._held = torch.cat([self._held, frame.data * self.params["gain"]], dim=-1)
        return self._emit(self._held.shape[-1] - 300, frame.sample_rate)

    def flush(self) -> list[DataFrame]:
        return self._emit(self._held.shape[-1], 16_000)

    def _emit(self, n: int, rate: int) -> list[DataFrame]:
        if n <= 0:
            return []
        out, self._held = self._held[:, :n], self._held[:, n:]
        frame = AudioFrame(data=out, sample_rate=rate, pts=self._next)
        self._next += n
        return [frame]


class Stereo48k(DelayedGain):
    """Mono 48 kHz in, stereo out (like BinauralFlow)."""

    spec = GeneratorSpec(
        name="test-stereo",
        description="test",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        params=ParamSet([Param("gain", float, 1.0, help="gain", live=True)]),
        sample_rate=48_000,
        channels=1,
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame)
        out = AudioFrame(data=frame.data.repeat(2, 1), sample_rate=frame.sample_rate, pts=frame.pts)
        return [out]

    def flush(self) -> list[DataFrame]:
        return []


class AnyChannels(DelayedGain):
    spec = GeneratorSpec(
        name="test-any-channels",
        description="test",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        params=ParamSet([Param("gain", float, 1.0, help="gain", live=True)]),
        sample_rate=16_000,
    )

    def on_prepare(self) -> None:
        self._held = None
        self._next = 0

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame)
        return [AudioFrame(data=frame.data, sample_rate=frame.sample_rate, pts=frame.pts)]

    def flush(self) -> list[DataFrame]:
        return []


class LosesSamples(Stereo48k):
    spec = GeneratorSpec(
        name="test-loses-samples",
        description="test",
        inputs=(MediaKind.AUDIO,),
        outputs=(MediaKind.AUDIO,),
        sample_rate=48_000,
        channels=1,
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, AudioFrame)
        return [AudioFrame(data=frame.data[:, :-1], sample_rate=frame.sample_rate, pts=frame.pts)]


TEST_GENERATORS = {g.spec.name: g for g in (DelayedGain, Stereo48k, AnyChannels, LosesSamples)}


@pytest.fixture(autouse=True)
def _test_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda name: TEST_GENERATORS.get(name) or real_get(name))


def write_audio(path: Path, data: np.ndarray, rate: int, codec: str = "pcm_s16le") -> Path:
    """Write float (C, S) audio with PyAV."""
    channels = data.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = av.codec.Codec(codec, "w").audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data, dtype=np.float32), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        n = 0
        for out in [*resampler.resample(frame), *resampler.resample(None)]:
            out.pts = n
            n += out.samples
            for packet in stream.encode(out):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return path


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * freq * t))[None], channels, axis=0).astype(np.float32)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
@pytest.mark.parametrize("chunk_ms", [None, 20, 7])
def test_render_keeps_duration_and_content(tmp_path, capsys, ext, chunk_ms):
    src = write_audio(tmp_path / "in.wav", tone(1.003, 16_000), 16_000)
    out = tmp_path / f"out{ext}"
    argv = ["render", "test-delayed-gain", "-i", str(src), "-o", str(out), "--no-progress"]
    if chunk_ms:
        argv += ["--chunk-ms", str(chunk_ms)]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "1.00 s of audio" in stdout
    y, rate = load_audio(out)
    x, _ = load_audio(src)
    assert y.shape[0] == 1
    assert y.shape[-1] * 16_000 == x.shape[-1] * rate  # the same duration, at the output's rate
    if ext != ".ogg":  # lossless containers: the gain, sample for sample (16-bit)
        torch.testing.assert_close(y, 0.5 * x, atol=2e-4, rtol=0)


def test_narrowband_input_is_resampled_up_to_the_generator_rate(tmp_path, capsys):
    src = write_audio(tmp_path / "nb.wav", tone(0.5, 8_000, freq=1000), 8_000)
    out = tmp_path / "out.flac"
    code, _, err = run(
        ["render", "test-delayed-gain", "-i", str(src), "-o", str(out), "--no-progress"], capsys
    )
    assert code == 0, err
    y, rate = load_audio(out)
    assert rate == 16_000 and y.shape[-1] == 8_000
    spectrum = torch.fft.rfft(y[0]).abs()
    assert abs(spectrum.argmax().item() * rate / y.shape[-1] - 1000) < 3


def test_audio_of_a_video_file(tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=15)  # 0.625 s of video with a stereo 48 kHz aac track
    x, rate = load_audio(clip)
    out = tmp_path / "out.wav"
    code, _, err = run(
        ["render", "test-any-channels", "-i", str(clip), "-o", str(out), "--no-progress"], capsys
    )
    assert code == 0, err
    y, out_rate = load_audio(out)
    assert out_rate == 16_000 and y.shape == (2, round(x.shape[-1] * 16_000 / rate))
    # the mono pipeline refuses the stereo track, naming the fix
    code, _, err = run(["render", "test-stereo", "-i", str(clip), "-o", str(out)], capsys)
    assert code == 2 and "1-channel" in err and "2 channels" in err and "ffmpeg" in err


def test_mono_in_stereo_out(tmp_path, capsys):
    src = write_audio(tmp_path / "in.flac", tone(0.25, 22_050), 22_050, codec="flac")
    out = tmp_path / "out.wav"
    code, _, err = run(["render", "test-stereo", "-i", str(src), "-o", str(out), "--no-progress"], capsys)
    assert code == 0, err
    y, rate = load_audio(out)
    n_in = tone(0.25, 22_050).shape[-1]
    assert rate == 48_000 and y.shape == (2, round(n_in * 48_000 / 22_050))


def test_wrong_channel_count_is_a_clear_error(tmp_path, capsys):
    src = write_audio(tmp_path / "stereo.wav", tone(0.2, 16_000, channels=2), 16_000)
    out = tmp_path / "out.wav"
    code, _, err = run(["render", "test-delayed-gain", "-i", str(src), "-o", str(out)], capsys)
    assert code == 2
    assert "1-channel" in err and "2 channels" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 50])
def test_empty_or_corrupt_input(tmp_path, capsys, content):
    src = tmp_path / "bad.wav"
    src.write_bytes(content)
    out = tmp_path / "out.wav"
    code, _, err = run(["render", "test-delayed-gain", "-i", str(src), "-o", str(out)], capsys)
    assert code == 2 and str(src) in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_video_only_file_is_refused(tmp_path, capsys):
    clip = make_clip(tmp_path / "silent.mp4", frames=5, audio=False)
    code, _, err = run(
        ["render", "test-delayed-gain", "-i", str(clip), "-o", str(tmp_path / "o.wav")], capsys
    )
    assert code == 2 and "no audio stream" in err


def test_a_generator_that_loses_samples_fails_and_writes_nothing(tmp_path, capsys):
    src = write_audio(tmp_path / "in.wav", tone(0.3, 48_000), 48_000)
    out = tmp_path / "out.wav"
    code, _, err = run(["render", "test-loses-samples", "-i", str(src), "-o", str(out)], capsys)
    assert code == 2 and "samples" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_bad_audio_options(tmp_path, capsys):
    src = write_audio(tmp_path / "in.wav", tone(0.1, 16_000), 16_000)
    code, _, err = run(["render", "test-delayed-gain", "-i", str(src), "-o", str(tmp_path / "o.mp4")], capsys)
    assert code == 2 and ".wav" in err
    code, _, err = run(
        ["render", "test-delayed-gain", "-i", str(src), "-o", str(tmp_path / "o.wav"), "--chunk-ms", "0"],
        capsys,
    )
    assert code == 2 and "--chunk-ms" in err
    clip = make_clip(tmp_path / "v.mp4", frames=3)
    code, _, err = run(
        ["render", "passthrough", "-i", str(clip), "-o", str(tmp_path / "o.mp4"), "--chunk-ms", "20"], capsys
    )
    assert code == 2 and "audio pipelines" in err
