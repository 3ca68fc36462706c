"""The X-Streamer generator: text in (a script's turns, or the live ``say`` parameter), speech audio and talking-face
video out, both on the session clock.

Driven by ticks (``pull``): each tick gives one video frame, the one that is on screen at the tick's time, and the
audio up to the end of that frame, so audio stays continuous however the ticks fall (a live session's tick queue keeps
only the newest tick; a dropped tick skips a picture, never a sound). The call engine (``call.Call``) produces media
in chunks of 8 frames / 320 ms; frames are taken from it as the clock reaches them.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import torch

from pipelines.xstreamer.call import MAX_TURN_CHARS, Call, CallChunk
from pipelines.xstreamer.model import FPS, NAME, SAMPLE_RATE, SIZE, XStreamerModel, load_model
from pipelines.xstreamer.thinker import Thinker
from streamrt.animation.folder import read_image
from streamrt.errors import InputError, ParamError
from streamrt.frames import AudioFrame, DataFrame, TextFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet

FRAME_SAMPLES = round(SAMPLE_RATE / FPS)  # 640
MAX_CATCH_UP_S = 1.0  # after a longer stall the clock skips ahead instead of generating the backlog


class XStreamerGenerator(Generator):
    spec = GeneratorSpec(
        name=NAME,
        description="X-Streamer: a talking character from one portrait; text turns in, speech + face video out",
        inputs=(MediaKind.TEXT,),
        outputs=(MediaKind.VIDEO, MediaKind.AUDIO),
        input_optional=True,
        params=ParamSet(
            [
                Param(
                    "reference",
                    str,
                    None,
                    "Portrait (png/jpg) of the character; default: the model's first portrait.",
                    live=False,
                    optional=True,
                    path=True,
                ),
                Param(
                    "portrait",
                    int,
                    0,
                    "Which of the model's portraits to use when no reference is given (the demo's picker).",
                    minimum=0,
                    maximum=15,
                    live=False,
                ),
                Param(
                    "say",
                    str,
                    "",
                    f"A user turn (live: the character answers it; at most {MAX_TURN_CHARS} characters).",
                    maximum=MAX_TURN_CHARS,
                ),
                Param(
                    "thinker",
                    str,
                    None,
                    "A local Hugging Face causal LM folder to use as the Thinker instead of "
                    "the model's own (its hidden size must match the Actor's).",
                    live=False,
                    optional=True,
                    path=True,
                ),
                Param("seed", int, 0, "Seed of the Actor's noise.", minimum=0, live=False),
                Param(
                    "temperature",
                    float,
                    0.0,
                    "Sampling temperature of the audio/text tokens (0: most likely).",
                    minimum=0.0,
                    maximum=2.0,
                    live=False,
                ),
                Param(
                    "max_reply_tokens",
                    int,
                    32,
                    "Longest reply of the Thinker, in tokens.",
                    minimum=1,
                    maximum=128,
                    live=False,
                ),
            ]
        ),  # fmt: skip
    )

    fps = FPS
    sample_rate = SAMPLE_RATE

    def __init__(self, model: XStreamerModel, device: str = "cpu") -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.call: Call | None = None
        self._thinker: Thinker | None = None
        self._thinker_key: str | None = None
        self._reset_clock()

    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> Self:
        if checkpoint is not None:
            raise ParamError(f"{NAME}: pass a model folder with --model; --checkpoint does not apply")
        return cls(load_model(model, device), device)

    # ------------------------------------------------------------------ contract
    def on_prepare(self) -> None:
        p = self.params
        key = p["thinker"] or str(self.model.thinker_folder)
        if key != self._thinker_key:
            self._thinker = Thinker.load(key, device=self.device)
            self._thinker_key = key
            if self._thinker.hidden_size != self.model.actor.cfg.thinker_dim:
                raise ParamError(
                    f"the Thinker in {key} has hidden size {self._thinker.hidden_size}, but this Actor was trained "
                    f"on {self.model.actor.cfg.thinker_dim}; train an Actor against it (`streamrt train xstreamer "
                    f"--thinker {key}`)"
                )
        assert self._thinker is not None
        self._thinker.reset()
        self.call = Call(
            self.model,
            self._thinker,
            self.portrait(),
            seed=p["seed"],
            temperature=p["temperature"],
            max_reply_tokens=p["max_reply_tokens"],
        )
        self._reset_clock()
        if p["say"]:
            self.call.say(p["say"])

    def portrait(self) -> torch.Tensor:
        """(3, 128, 128) float: the reference portrait of this stream."""
        ref = self.params["reference"]
        if ref is None:
            portraits = self.model.portraits()
            if not portraits:
                raise InputError(
                    f"{self.model.folder} has no portraits/; pass one with --reference PORTRAIT.png"
                )
            k = self.params["portrait"]
            if k >= len(portraits):
                raise ParamError(
                    f"portrait {k} does not exist: this model has {len(portraits)} (0-{len(portraits) - 1})"
                )
            ref = portraits[k]
        return read_image(Path(ref), SIZE)

    def on_update(self, changed: dict[str, Any]) -> None:
        if changed.get("say") and self.call is not None:
            self.call.say(changed["say"])

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, TextFrame) and self.call is not None
        self.call.say(frame.text)
        return []

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        assert self.call is not None
        t = float(pts * time_base)
        if self._t0 is None:
            self._t0 = t
        index = math.floor((t - self._t0) * FPS + 1e-6)
        if index < self._frame:  # a tick from the past (clock reset by the caller): show the current frame
            index = self._frame
        if (index - self._frame) / FPS > MAX_CATCH_UP_S:
            self._skip_to(index)
        frame = self._frame_at(index)
        out: list[DataFrame] = [VideoFrame.from_float(frame, pts=pts, time_base=time_base)]
        end = (index + 1) * FRAME_SAMPLES
        audio = self._audio_until(end)
        if audio is not None:
            out.append(audio)
        return out

    def flush(self) -> list[DataFrame]:
        self._require_prepared()
        return []

    @property
    def speaking(self) -> bool:
        """A reply is pending or in progress (the script render waits for it to end)."""
        return self.call is not None and self.call.speaking

    def next_chunk(self) -> CallChunk:
        """The next 320 ms of the call, for offline renders that take every frame (no clock)."""
        assert self.call is not None
        return self.call.next_chunk()

    # ------------------------------------------------------------------ the media clock
    def _reset_clock(self) -> None:
        self._t0: float | None = None
        self._frame = 0  # the frame shown last
        self._chunk: CallChunk | None = None
        self._chunk_first = 0  # media frame index of self._chunk's first frame
        self._audio_sent = 0  # samples emitted so far
        self._audio_buf = torch.zeros(0)
        self._audio_buf_start = 0  # sample index of self._audio_buf[0]

    def _generate_chunk(self) -> None:
        assert self.call is not None
        first = 0 if self._chunk is None else self._chunk_first + self._chunk.frames.shape[0]
        self._chunk = self.call.next_chunk()
        self._chunk_first = first
        # chunks are contiguous in time: the new audio continues the buffer; what was sent is dropped from it
        cut = max(0, min(self._audio_buf.shape[0], self._audio_sent - self._audio_buf_start))
        self._audio_buf = torch.cat([self._audio_buf[cut:], self._chunk.audio.float()])
        self._audio_buf_start += cut

    def _frame_at(self, index: int) -> torch.Tensor:
        while self._chunk is None or index >= self._chunk_first + self._chunk.frames.shape[0]:
            self._generate_chunk()
        self._frame = index
        return self._chunk.frames[index - self._chunk_first]

    def _audio_until(self, end: int) -> AudioFrame | None:
        while self._audio_buf_start + self._audio_buf.shape[0] < end:
            self._generate_chunk()
        n = end - self._audio_sent
        if n <= 0:
            return None
        start = self._audio_sent - self._audio_buf_start
        data = self._audio_buf[start : start + n].clamp(-1, 1)[None].clone()
        frame = AudioFrame(data=data, sample_rate=SAMPLE_RATE, pts=self._audio_sent)
        self._audio_sent = end
        return frame

    def _skip_to(self, index: int) -> None:
        """Drop the media between the last frame and ``index`` (a long stall): generate the chunks, discard them."""
        while self._chunk is None or index >= self._chunk_first + self._chunk.frames.shape[0]:
            self._generate_chunk()
        self._audio_sent = max(self._audio_sent, index * FRAME_SAMPLES)
