"""X-Streamer end to end on a tiny folder: the script render (audio as long as the video), live turns, bad input."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
import torch
from _xstreamer import tiny_xstreamer_folder

from pipelines.xstreamer import XStreamerGenerator
from pipelines.xstreamer.call import MAX_PENDING_TURNS
from streamrt.cli import main
from streamrt.errors import InputError, ParamError
from streamrt.frames import VIDEO_TIME_BASE, AudioFrame, TextFrame, VideoFrame
from streamrt.render import render

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_xstreamer_folder(tmp_path_factory.mktemp("xstreamer"))


@pytest.fixture()
def script(tmp_path) -> Path:
    path = tmp_path / "dialogue.txt"
    path.write_text("# a three-turn call\nhello there\n\nUser: what is your name?\nhow are you?\n")
    return path


def _streams(path: Path) -> tuple[int, float, int, int]:
    """(video frames, video seconds, audio samples, audio rate) decoded from the file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        rate = float(v.average_rate)
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(audio=0))
        sr = a.rate
    return frames, frames / rate, samples, sr


def test_script_render_gives_each_turn_a_reply_with_audio_as_long_as_the_video(
    folder, script, tmp_path
) -> None:
    out = tmp_path / "call.mp4"
    result = render("xstreamer", out, script=script, model=str(folder), progress=False)
    frames, video_s, samples, sr = _streams(out)
    assert frames == result.frames and frames % 8 == 0
    # 3 replies plus the pauses: each reply lasts at least the Actor's window + one chunk
    assert video_s >= 3 * 0.64 + 4 * 0.64
    # the encoded audio covers the video exactly, up to the AAC frame the encoder pads to (1024 samples)
    assert abs(samples / sr - video_s) <= 1024 / sr + 1e-6, (samples / sr, video_s)


def test_script_render_from_the_command_line(folder, script, tmp_path, capsys) -> None:
    out = tmp_path / "call.webm"
    code = main(
        [
            "render",
            "xstreamer",
            "--script",
            str(script),
            "--model",
            str(folder),
            "-o",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "no user turns"), (b"\x00\xff\xfe" * 10, "text"), (b"x" * 400 + b"\n", "300")],
)
def test_bad_scripts_fail_with_a_message_and_no_file(folder, tmp_path, content, message) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    out = tmp_path / "call.mp4"
    with pytest.raises(InputError, match=message):
        render("xstreamer", out, script=path, model=str(folder))
    assert not out.exists()


def test_script_flag_mistakes(folder, script, tmp_path) -> None:
    with pytest.raises(ParamError, match="takes no text"):
        render("streamdiffusion", tmp_path / "o.mp4", script=script)
    with pytest.raises(ParamError, match="drop -i"):
        render("xstreamer", tmp_path / "o.mp4", script=script, frames=10, model=str(folder))
    with pytest.raises(InputError):
        render("xstreamer", tmp_path / "o.mp4", script=tmp_path / "missing.txt", model=str(folder))


def test_live_turns_through_the_say_parameter(folder) -> None:
    gen = XStreamerGenerator.load(model=str(folder))
    gen.prepare({})
    assert not gen.speaking
    gen.update({"say": "hello there"})
    assert gen.speaking
    outs = []
    for i in range(40):
        outs += gen.pull(i * 3600, VIDEO_TIME_BASE)
    pictures = [o for o in outs if isinstance(o, VideoFrame)]
    sounds = [o for o in outs if isinstance(o, AudioFrame)]
    assert len(pictures) == 40
    # 40 ticks at 25 fps: audio up to the end of the last frame, contiguous
    assert sum(a.samples for a in sounds) == 40 * 640
    assert [a.pts for a in sounds] == [640 * k for k in range(40)]
    # a text frame is a turn too
    assert gen.push(TextFrame(text="how are you?")) == []


def test_turn_limits(folder) -> None:
    gen = XStreamerGenerator.load(model=str(folder))
    gen.prepare({})
    with pytest.raises(ParamError, match="300"):
        gen.update({"say": "word " * 100})
    with pytest.raises(InputError, match="300"):
        gen.call.say("word " * 100)
    with pytest.raises(ParamError, match="has 2"):
        gen.prepare({"portrait": 5})
    gen.prepare({"portrait": 1})
    second = gen.portrait()
    gen.prepare({"portrait": 0})
    assert not torch.equal(second, gen.portrait()), "the picker chose the same portrait"
    for _ in range(MAX_PENDING_TURNS + 1):
        gen.call.say("hello")
        if len(gen.call.pending) >= MAX_PENDING_TURNS:
            break
    with pytest.raises(InputError, match="waiting"):
        gen.call.say("one more")


def test_a_thinker_of_another_width_is_refused_with_the_fix(folder, tmp_path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    other = tmp_path / "other-lm"
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=48, n_head=2, n_positions=512, vocab_size=50)
    ).save_pretrained(other)
    from pipelines.xstreamer.thinker import Thinker

    Thinker.load(folder / "thinker").tokenizer.save_pretrained(other)
    gen = XStreamerGenerator.load(model=str(folder))
    with pytest.raises(ParamError, match="streamrt train xstreamer"):
        gen.prepare({"thinker": str(other)})


def test_unknown_portrait_file_names_the_flag(folder, tmp_path) -> None:
    gen = XStreamerGenerator.load(model=str(folder))
    with pytest.raises(InputError, match="--reference"):
        gen.prepare({"reference": str(tmp_path / "nobody.png")})


def test_bench_reports_the_issue_fields(folder, capsys) -> None:
    import json

    code = main(["bench", "xstreamer", "--json", "--model", str(folder), "--turns", "1", "--threads", "1"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    row = rows[0]
    fields = ["suite", "width", "height", "av_speed", "first_audio_ms", "lip_sync_corr", "av_offset_ms"]
    assert list(row)[: len(fields)] == fields
    assert row["suite"] == "xstreamer" and (row["width"], row["height"]) == (128, 128)
    assert row["av_speed"] > 0


def test_long_call_measurement_runs_in_bounded_memory(folder) -> None:
    from pipelines.xstreamer.evaluate import long_call
    from streamrt.face_probe import FaceProbe

    gen = XStreamerGenerator.load(model=str(folder))
    gen.prepare({})
    out = long_call(gen, ["hello there", "how are you?"], 0.1, FaceProbe.load(), gap_chunks=1)
    assert out["turns"] >= 1 and out["av_speed"] > 0
    first_cache = out["cache_bytes"]
    out2 = long_call(gen, ["hello there"], 0.1, FaceProbe.load(), gap_chunks=1)
    assert out2["cache_bytes"] == first_cache  # the KV cache stays bounded as the call goes on


def test_committed_default_keeps_the_portraits_identity() -> None:
    """The embedded default (assets/xstreamer-tiny): a short call stays much closer to its own portrait than to
    another character's (its card: 0.22 against 0.98)."""
    from streamrt.face_probe import identity_distance

    gen = XStreamerGenerator.load()
    gen.prepare({"say": "hello there", "portrait": 0})
    own = gen.portrait()
    frames = torch.cat([gen.next_chunk().frames for _ in range(4)])
    gen.prepare({"portrait": 1})
    other = gen.portrait()
    assert float(identity_distance(frames, own).mean()) < 0.5 * float(identity_distance(frames, other).mean())
