"""`streamrt render streamdiffusion` end to end on tiny random components: lossless img2img, txt2img, SSF."""

from __future__ import annotations

from pathlib import Path

import pytest
from _media import make_clip, probe
from tiny_sd import make_tiny_sd

from streamrt.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "model")


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_img2img_render_is_lossless(tmp_path: Path, model: Path, ext: str, capsys) -> None:
    clip = make_clip(tmp_path / f"in{ext}", frames=10, width=64, height=48)
    out = tmp_path / f"out{ext}"
    code = main(["render", "streamdiffusion", "-i", str(clip), "-o", str(out), "--model", str(model),
                 "--prompt", "fire style", "--set", "steps=3", "--seed", "3"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    a, b = probe(clip), probe(out)
    assert b["frames"] == a["frames"] == 10
    assert b["pts"] == a["pts"], "every output frame keeps its input frame's pts despite the N-1 frame lag"
    assert b["size"] == (64, 48)
    assert b["audio_seconds"] == pytest.approx(a["audio_seconds"], abs=0.03)


def test_render_with_ssf_and_frame_buffer_stays_lossless(tmp_path: Path, model: Path, capsys) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=9, audio=False)
    out = tmp_path / "out.mp4"
    code = main(["render", "streamdiffusion", "-i", str(clip), "-o", str(out), "--model", str(model),
                 "--set", "ssf=true", "--set", "ssf_threshold=0.5", "--set", "frame_buffer_size=2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert probe(out)["pts"] == probe(clip)["pts"]


def test_txt2img_render(tmp_path: Path, model: Path, capsys) -> None:
    out = tmp_path / "dream.mkv"
    code = main(["render", "streamdiffusion", "-o", str(out), "--frames", "7", "--model", str(model),
                 "--prompt", "a sunset", "--set", "t_index_list=0,16,32,45", "--set", "width=64",
                 "--set", "height=64", "--set", "cfg_type=none"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    info = probe(out)
    assert info["frames"] == 7 and info["size"] == (64, 64)


def test_wrong_size_input_fails_cleanly(tmp_path: Path, model: Path, capsys) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=3, width=66, height=50, audio=False)
    out = tmp_path / "out.mp4"
    code = main(["render", "streamdiffusion", "-i", str(clip), "-o", str(out), "--model", str(model)])
    err = capsys.readouterr().err
    assert code != 0
    assert "multiples of 8" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
