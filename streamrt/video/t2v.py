"""What every streaming text-to-video generator shares behind the generator contract.

- Output is driven by ticks (``pull``): each tick returns exactly one frame, at the tick's pts. Frames are produced a
  chunk at a time by the subclass's ``step()`` (one or more model passes -> clean latents) and decoded to pixels by a
  **decode worker thread** (``DecodeWorker``): while it decodes chunk i, the model thread computes chunk i+1.
- A pushed ``TextFrame`` changes the prompt at that point of the stream (and yields that tick's frame).
- Live prompt changes blend over ``prompt_transition`` model passes (``streamrt.prompts.PromptTransition``, slerp).
- Everything the stream holds is bounded: one chunk of frames waiting and one chunk of latents computed ahead;
  model state (windows, caches) is bounded by each method.
"""

from __future__ import annotations

import abc
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import torch

from streamrt.frames import DataFrame, TextFrame, VideoFrame
from streamrt.generator import Generator
from streamrt.params import Param
from streamrt.prompts import PromptTransition


def common_params(default_prompt: str) -> tuple[Param, ...]:
    return (
        Param("prompt", str, default_prompt, "What to generate (see the model card for the default model's words)."),
        Param("seed", int, 0, "Seed of the stream's noise.", minimum=0),
        Param("prompt_transition", int, 8, "Model passes over which a new prompt blends in (0 = at once).",
              minimum=0, maximum=10_000),
        Param("prompt_blend", str, "slerp", "How prompts blend during a transition.", choices=("linear", "slerp")),
    )  # fmt: skip


class DecodeWorker:
    """Decodes latent chunks on its own thread (one at a time, in order)."""

    def __init__(self, decode) -> None:
        self.decode = decode
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrt-decode")

    def _run(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # inference mode is per thread
            return self.decode(latents)

    def start(self, latents: torch.Tensor) -> Future:
        return self.pool.submit(self._run, latents)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class TextToVideoGenerator(Generator):
    """Base of the text-to-video generators: subclasses implement ``start_stream``, ``step``, ``decode`` and
    ``encode_prompt``."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = DecodeWorker(self.decode)
        self.frames: deque[torch.Tensor] = deque()
        self.ahead: torch.Tensor | None = (
            None  # the next chunk's latents, computed while the last one decoded
        )
        self.decoded: torch.Tensor | None = None  # the chunk whose frames are going out
        self.cond: PromptTransition | None = None
        self.chunks_out = 0
        self.passes_with: list[torch.Tensor] | None = None  # tests may record the conditioning of every pass

    # ------------------------------------------------------------------ for subclasses
    @abc.abstractmethod
    def encode_prompt(self, text: str) -> torch.Tensor:
        """Prompt -> conditioning tensor (cached by the subclass)."""

    @abc.abstractmethod
    def start_stream(self) -> None:
        """Allocate per-stream state from ``self.params`` (called by ``prepare``/``reset``)."""

    @abc.abstractmethod
    def step(self) -> torch.Tensor:
        """Run the model until a chunk of frames is final; return its clean latents (n, C, h, w)."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) latents -> (n, 3, H, W) pixels in [0, 1]; runs on the decode thread."""

    def reseed(self, seed: int) -> None:
        """A live seed change: later noise comes from ``seed``."""

    def condition(self) -> torch.Tensor:
        """The conditioning for the next model pass (moves one pass along a prompt transition)."""
        assert self.cond is not None
        c = self.cond.current()
        self.cond.advance()
        if self.passes_with is not None:
            self.passes_with.append(c)
        return c

    # ------------------------------------------------------------------ the contract
    def on_prepare(self) -> None:
        self.ahead = self.decoded = None
        self.frames.clear()
        self.chunks_out = 0
        self.cond = PromptTransition(self.encode_prompt(self.params["prompt"]))
        self.start_stream()

    def on_update(self, changed: dict[str, Any]) -> None:
        if {"prompt", "prompt_transition", "prompt_blend"} & changed.keys():
            assert self.cond is not None
            p = self.params
            self.cond.set_target(self.encode_prompt(p["prompt"]), p["prompt_transition"], p["prompt_blend"])
        if "seed" in changed:
            self.reseed(self.params["seed"])

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, TextFrame)
        self.update({"prompt": frame.text})
        return self.generate(frame.pts, frame.time_base)

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        if not self.frames:
            with torch.inference_mode():
                latents = self.ahead if self.ahead is not None else self.step()
                decoding = self.decoder.start(latents)
                # From the second chunk on, the model computes the next chunk while this one decodes; the first
                # chunk goes out without waiting for a second model step (first-frame latency).
                self.ahead = self.step() if self.chunks_out > 0 else None
                # Kept until the next chunk replaces it: the stream holds the same bytes whatever the phase.
                self.decoded = decoding.result()
                self.frames.extend(self.decoded.unbind(0))
                self.chunks_out += 1
        image = self.frames.popleft()
        return [VideoFrame.from_float(image, pts=pts, time_base=time_base)]

    def close(self) -> None:
        self.decoder.close()
