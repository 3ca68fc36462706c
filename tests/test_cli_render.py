"""``streamrt render`` / ``streamrt pipelines``: lossless output, txt2img runs, clean failures and interrupts.

The command line runs in-process (``streamrt.cli.main(argv)`` returns the exit status) except where the real process
exit code and stderr are the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from _media import make_clip, probe

from streamrt import registry
from streamrt.cli import main
from streamrt.errors import InputError
from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- test generators
class DelayedInvert(Generator):
    """Video only (so the input's audio is copied around it); emits each frame two pushes late, the rest at flush."""

    spec = GeneratorSpec(
        name="delayed-invert",
        description="test: inverts colours with a two-frame delay",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet((Param("gain", int, 1, minimum=0, maximum=4), Param("prompt", str, ""))),
        latency=2,
    )

    def on_prepare(self) -> None:
        self.held: list[VideoFrame] = []

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, VideoFrame)
        self.held.append(VideoFrame(data=255 - frame.data, pts=frame.pts, time_base=frame.time_base))
        return [self.held.pop(0)] if len(self.held) > 2 else []

    def flush(self) -> list[DataFrame]:
        out, self.held = self.held, []
        return list(out)


class DropsOne(DelayedInvert):
    spec = GeneratorSpec(
        name="drops-one",
        description="test: loses a frame",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
    )

    def flush(self) -> list[DataFrame]:
        return super().flush()[:-1]


class Interrupts(DelayedInvert):
    """Ctrl-C arrives while the generator works: SIGINT goes to the process, Python raises it in the main thread."""

    spec = GeneratorSpec(
        name="interrupts", description="test: Ctrl-C", inputs=(MediaKind.VIDEO,), outputs=(MediaKind.VIDEO,)
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        if frame.pts and not getattr(self, "sent", False):
            self.sent = True
            signal.raise_signal(signal.SIGINT)
        return [frame]


class FailsMidway(DelayedInvert):
    spec = GeneratorSpec(
        name="fails-midway", description="test: raises", inputs=(MediaKind.VIDEO,), outputs=(MediaKind.VIDEO,)
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        self.count = getattr(self, "count", 0) + 1
        if self.count == 5:
            raise InputError("frame 5 is not to my taste")
        return super().process(frame)


class RaisesInterrupt(DelayedInvert):
    spec = GeneratorSpec(
        name="raises-interrupt", description="test", inputs=(MediaKind.VIDEO,), outputs=(MediaKind.VIDEO,)
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        if frame.pts:
            raise KeyboardInterrupt
        return [frame]


TEST_GENERATORS = {
    g.spec.name: g for g in (DelayedInvert, DropsOne, Interrupts, FailsMidway, RaisesInterrupt)
}


@pytest.fixture(autouse=True)
def _test_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda name: TEST_GENERATORS.get(name) or real_get(name))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {ext: make_clip(folder / f"in{ext}", frames=12) for ext in (".mp4", ".webm", ".mkv")}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------- lossless
@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mkv"])
def test_passthrough_is_lossless(tmp_path: Path, clips: dict[str, Path], ext: str, capsys) -> None:
    out = tmp_path / f"out{ext}"
    code, stdout, err = run(["render", "passthrough", "-i", str(clips[ext]), "-o", str(out)], capsys)
    assert code == 0, err
    assert stdout.strip().startswith(f"wrote {out} (12 frames")
    a, b = probe(clips[ext]), probe(out)
    assert b["frames"] == a["frames"] == 12
    assert b["time_base"] == a["time_base"] and b["pts"] == a["pts"]
    assert b["audio_codec"] == a["audio_codec"]
    assert b["audio_seconds"] == pytest.approx(a["audio_seconds"], abs=0.03)
    assert files_in(tmp_path) == [out.name]


@pytest.mark.parametrize(("src", "dst"), [(".mp4", ".mkv"), (".webm", ".mp4"), (".mkv", ".webm")])
def test_delayed_video_generator_keeps_pts_and_copies_audio(
    tmp_path: Path, clips: dict[str, Path], src: str, dst: str, capsys
) -> None:
    out = tmp_path / f"out{dst}"
    argv = [
        "render",
        "delayed-invert",
        "-i",
        str(clips[src]),
        "-o",
        str(out),
        "--set",
        "gain=2",
        "--prompt",
        "x",
    ]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    a, b = probe(clips[src]), probe(out)
    assert b["frames"] == 12
    # Every frame keeps its input's time (exact where both containers share a clock, else to the millisecond).
    assert [float(p * b["time_base"]) for p in b["pts"]] == pytest.approx(
        [float(p * a["time_base"]) for p in a["pts"]], abs=6e-4
    )
    assert b["audio_codec"] == {".mkv": "aac", ".mp4": "aac", ".webm": "opus"}[dst]
    assert b["audio_seconds"] == pytest.approx(0.5, abs=0.05)


def test_frames_limits_the_input(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    out = tmp_path / "first.mkv"
    code, _, err = run(
        ["render", "delayed-invert", "-i", str(clips[".mkv"]), "-o", str(out), "--frames", "5"], capsys
    )
    assert code == 0, err
    b = probe(out)
    assert b["pts"] == probe(clips[".mkv"])["pts"][:5]
    assert b["audio_seconds"] == pytest.approx(5 / 24, abs=0.05)


@pytest.mark.parametrize(("ext", "fps"), [(".mp4", None), (".webm", "24")])
def test_txt2img_style_frames(tmp_path: Path, ext: str, fps: str | None, capsys) -> None:
    out = tmp_path / f"gen{ext}"
    argv = ["render", "passthrough", "-o", str(out), "--frames", "7"] + (["--fps", fps] if fps else [])
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "7 frames" in stdout
    b = probe(out)
    rate = int(fps or 30)
    assert b["frames"] == 7
    assert [Fraction(p) * b["time_base"] for p in b["pts"]] == pytest.approx(
        [Fraction(i, rate) for i in range(7)], abs=6e-4
    )
    assert b["audio_codec"] is None


def test_pipelines_lists_specs(capsys) -> None:
    code, out, _ = run(["pipelines"], capsys)
    assert code == 0 and "passthrough:" in out and "inputs: video, audio" in out
    code, out, _ = run(["pipelines", "--json"], capsys)
    specs = {s["name"]: s for s in json.loads(out)}
    assert specs["passthrough"]["inputs"] == ["video", "audio"]
    assert "params" in specs["passthrough"]


# ---------------------------------------------------------------------------------------------------- failures
def _bad_inputs(folder: Path, clip: Path) -> Iterator[tuple[str, list[str], str]]:
    """(case, argv, words the error line must contain)."""
    rnd = folder / "random.mp4"
    rnd.write_bytes(os.urandom(8192))
    half = folder / "half.mp4"
    half.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    odd = make_clip(folder / "odd.mkv", width=65, height=63, vcodec="ffv1", pix_fmt="yuv444p", audio=False)
    out = str(folder / "out" / "result.mp4")
    yield "corrupt", ["render", "passthrough", "-i", str(rnd), "-o", out], "random.mp4"
    yield "truncated", ["render", "passthrough", "-i", str(half), "-o", out], "half.mp4"
    yield "missing", ["render", "passthrough", "-i", str(folder / "nope.mp4"), "-o", out], "not found"
    yield "pipeline", ["render", "nosuch", "-i", str(clip), "-o", out], "unknown pipeline 'nosuch'"
    yield (
        "param",
        ["render", "passthrough", "-i", str(clip), "-o", out, "--set", "foo=1"],
        "unknown parameter 'foo'",
    )
    yield "value", ["render", "delayed-invert", "-i", str(clip), "-o", out, "--set", "gain=abc"], "'gain'"
    yield "range", ["render", "delayed-invert", "-i", str(clip), "-o", out, "--set", "gain=9"], "<= 4"
    yield "syntax", ["render", "passthrough", "-i", str(clip), "-o", out, "--set", "gain"], "KEY=VALUE"
    yield "seed", ["render", "passthrough", "-i", str(clip), "-o", out, "--seed", "3"], "no 'seed' parameter"
    yield "extension", ["render", "passthrough", "-i", str(clip), "-o", out[:-4] + ".avi"], "'.avi'"
    yield "odd size", ["render", "passthrough", "-i", str(odd), "-o", out], "65x63 is odd"
    yield "no frames", ["render", "passthrough", "-o", out], "--frames"
    yield "generator error", ["render", "fails-midway", "-i", str(clip), "-o", out], "not to my taste"
    yield "lost frame", ["render", "drops-one", "-i", str(clip), "-o", out], "produced 11 frames for 12"


def test_bad_input_fails_cleanly(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    (tmp_path / "out").mkdir()
    for case, argv, words in _bad_inputs(tmp_path, clips[".mp4"]):
        code, stdout, err = run(argv, capsys)
        assert code == 2, (case, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("streamrt: error: "), (case, err)
        assert words in lines[0], (case, lines[0])
        assert "Traceback" not in err and stdout == ""
        assert files_in(tmp_path / "out") == [], case  # no output, no hidden partial file


def test_failure_keeps_a_previous_output(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    out = tmp_path / "result.mp4"
    out.write_bytes(b"yesterday's render")
    code, _, _ = run(["render", "drops-one", "-i", str(clips[".mp4"]), "-o", str(out)], capsys)
    assert code == 2
    assert out.read_bytes() == b"yesterday's render"
    assert files_in(tmp_path) == ["result.mp4"]


def test_interrupt_from_writer(tmp_path: Path, clips: dict[str, Path], monkeypatch, capsys) -> None:
    from transport.files import MediaWriter

    real_write = MediaWriter.write

    def write(self: MediaWriter, frame) -> None:
        if self.frames_written == 6:
            raise KeyboardInterrupt
        real_write(self, frame)

    monkeypatch.setattr(MediaWriter, "write", write)
    code, _, err = run(
        ["render", "passthrough", "-i", str(clips[".webm"]), "-o", str(tmp_path / "o.webm")], capsys
    )
    assert code == 130
    assert err.strip() == "streamrt: error: interrupted; no output written"
    assert files_in(tmp_path) == []


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, even when this process was started with SIGINT ignored (as `cmd &` in a
    non-interactive shell does): the tests below are about what streamrt does with the interrupt."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_interrupt_while_generating(tmp_path: Path, clips: dict[str, Path], capsys, sigint_raises) -> None:
    code, _, err = run(
        ["render", "interrupts", "-i", str(clips[".mp4"]), "-o", str(tmp_path / "o.mp4")], capsys
    )
    assert code == 130, err
    assert files_in(tmp_path) == []


def test_interrupt_raised_by_generator(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    argv = ["render", "raises-interrupt", "-i", str(clips[".mp4"]), "-o", str(tmp_path / "o.mp4")]
    code, _, err = run(argv, capsys)
    assert files_in(tmp_path) == []  # whatever the status, nothing is left behind
    assert code == 130, err


# ---------------------------------------------------------------------------------------------------- real process
def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_subprocess_exit_codes(tmp_path: Path, clips: dict[str, Path]) -> None:
    ok = _python(
        ["-m", "streamrt", "render", "passthrough", "-i", str(clips[".mkv"]), "-o", "out.mkv"], tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("wrote out.mkv (12 frames")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    res = _python(["-m", "streamrt", "render", "passthrough", "-i", str(bad), "-o", "x.mp4"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("streamrt: error: cannot read ")
    assert sorted(files_in(tmp_path)) == ["bad.mp4", "out.mkv"]


def test_subprocess_ctrl_c(tmp_path: Path, clips: dict[str, Path]) -> None:
    # A real SIGINT delivered to the process mid-render: exit 130, one line, no partial file.
    script = textwrap.dedent(
        f"""
        import signal
        import sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
        from streamrt import registry
        from test_cli_render import TEST_GENERATORS
        real_get = registry.get
        registry.get = lambda name: TEST_GENERATORS.get(name) or real_get(name)
        from streamrt.cli import main
        sys.exit(main(["render", "interrupts", "-i", {str(clips[".webm"])!r}, "-o", "o.webm"]))
        """
    )
    res = _python(["-c", script], tmp_path)
    assert res.returncode == 130, res.stderr
    assert res.stderr == "streamrt: error: interrupted; no output written\n"
    assert files_in(tmp_path) == []


def test_missing_output_folders_are_created(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    out = tmp_path / "new" / "deeper" / "out.mp4"
    code, _, err = run(["render", "passthrough", "-i", str(clips[".mp4"]), "-o", str(out)], capsys)
    assert code == 0, err
    assert probe(out)["frames"] == 12


def test_failed_render_creates_no_folders(tmp_path: Path, clips: dict[str, Path], capsys) -> None:
    out = tmp_path / "new" / "out.mp4"
    code, _, _ = run(["render", "nosuchpipeline", "-i", str(clips[".mp4"]), "-o", str(out)], capsys)
    assert code != 0
    assert not (tmp_path / "new").exists()
