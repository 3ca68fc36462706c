"""``streamrt render PIPELINE --script dialogue.txt``: a whole conversation with a talking generator, in one file.

Each user turn of the script is given to the generator, whose reply (speech + talking video) is written until it is
over, then a short listening pause follows before the next turn. The generator's media clock is the file's clock:
every generated frame and every audio sample is written (no pacing, nothing dropped), so the audio track is exactly as
long as the video.

A generator takes part by offering ``next_chunk()`` (the next few frames with their audio) and ``speaking`` (a reply
is pending or in progress); X-Streamer does.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from streamrt.errors import ParamError
from streamrt.frames import AudioFrame, TextFrame, VideoFrame
from streamrt.loading import with_runtime_features
from streamrt.render import RenderResult
from transport.files import AudioSpec, MediaWriter

PAUSE_S = 0.64  # listening time before each turn and after the last reply
MAX_REPLY_S = 30.0  # a reply that never ends is cut here (the generator's own deadline is shorter)


def render_dialogue(
    cls: Any,
    params: dict[str, Any],
    turns: list[str],
    output: Path,
    *,
    model: str | None,
    device: str,
    progress: bool,
    started: float,
) -> RenderResult:
    gen = with_runtime_features(cls.load(model=model, device=device))
    if not hasattr(gen, "next_chunk") or not hasattr(gen, "speaking"):
        gen.close()
        raise ParamError(f"--script applies to conversational pipelines (xstreamer), not {cls.spec.name!r}")
    try:
        gen.prepare(params)
        fps = float(gen.fps) if hasattr(gen, "fps") else 25.0
        rate = Fraction(fps).limit_denominator(1001)
        output.parent.mkdir(parents=True, exist_ok=True)
        first = gen.next_chunk()
        h, w = first.frames.shape[-2:]
        sample_rate = gen.sample_rate
        writer = MediaWriter(output, width=w, height=h, rate=rate, audio=AudioSpec(sample_rate, 1))
        state = {"frames": 0, "samples": 0}
        bar = tqdm(total=None, unit="frame", desc=f"{cls.spec.name} call", disable=not progress, leave=False)
        try:
            _write(writer, first, state, rate, sample_rate, bar)
            pause_chunks = max(1, math.ceil(PAUSE_S * fps / first.frames.shape[0]))
            for _ in range(pause_chunks - 1):
                _write(writer, gen.next_chunk(), state, rate, sample_rate, bar)
            for turn in turns:
                gen.push(TextFrame(text=turn))
                cap = math.ceil(MAX_REPLY_S * fps / first.frames.shape[0])
                n = 0
                while gen.speaking and n < cap:
                    _write(writer, gen.next_chunk(), state, rate, sample_rate, bar)
                    n += 1
                for _ in range(pause_chunks):
                    _write(writer, gen.next_chunk(), state, rate, sample_rate, bar)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
    finally:
        gen.close()
    return RenderResult(output, state["frames"], state["frames"] / fps, time.perf_counter() - started)


def _write(
    writer: MediaWriter, chunk: Any, state: dict[str, int], rate: Fraction, sample_rate: int, bar: Any
) -> None:
    for image in chunk.frames:
        writer.write(VideoFrame.from_float(image, pts=state["frames"], time_base=1 / rate))
        state["frames"] += 1
    audio = chunk.audio.float().clamp(-1, 1)[None]
    writer.write(AudioFrame(data=audio, sample_rate=sample_rate, pts=state["samples"]))
    state["samples"] += audio.shape[1]
    bar.update(chunk.frames.shape[0])
