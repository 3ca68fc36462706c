"""The generator-contract side shared by the animation generators (RAIN, EvAnimate): parameters, the reference,
grouping input frames into 4-frame groups, the window, flush.

A subclass says how an input frame becomes a condition image (``condition_of``) and, for offline files, how a
condition comes without a video frame (``condition_at``, e.g. RAIN's ``poses`` keypoint file).

Timing: a group of 4 frames enters the window when its 4th frame arrives and leaves 3 passes later, so the first
frame of a group comes out 15 frames after it went in (``latency`` 15); its output depends on the conditions of the
3 groups behind it in the window (``lookahead`` = 3 groups = up to 15 frames after it).
"""

from __future__ import annotations

import abc
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from streamrt.animation.backbone import GROUP_FRAMES, GROUPS, AnimationBackbone
from streamrt.animation.folder import REFERENCE, load_model, read_image
from streamrt.animation.stream import AnimationStream
from streamrt.errors import InputError, ParamError
from streamrt.frames import DataFrame, VideoFrame
from streamrt.params import Param

LOOKAHEAD_GROUPS = GROUPS - 1
LATENCY_FRAMES = (
    GROUPS * GROUP_FRAMES - 1
)  # the first frame of a group: 3 frames to fill it + 3 groups of passes
LOOKAHEAD_FRAMES = LOOKAHEAD_GROUPS * GROUP_FRAMES + GROUP_FRAMES - 1


def common_params() -> tuple[Param, ...]:
    return (
        Param("reference", str, None, "Reference image (png/jpg) of the character to animate; default: the "
              "model's reference.png.", live=False, optional=True, path=True),
        Param("seed", int, 0, "Seed of the window's noise.", minimum=0),
        Param("noise", str, "fixed", "Noise: fixed (one noise map per level, shared by the frames: a still pose "
              "gives a still output) or fresh (new noise per frame and step, as plain LCM sampling).", live=False,
              choices=("fixed", "fresh")),
    )  # fmt: skip


class AnimationGenerator(abc.ABC):
    """Mixin over ``streamrt.generator.Generator``; subclasses set ``spec`` and the condition hooks."""

    pipeline: ClassVar[str]

    def __init__(self, backbone: AnimationBackbone, folder: Path, device: str = "cpu") -> None:
        super().__init__()  # type: ignore[call-arg]
        self.backbone = backbone
        self.folder = folder
        self.device = device
        self.size = backbone.cfg.size
        self.stream: AnimationStream | None = None
        self._pending: list[tuple[torch.Tensor, VideoFrame]] = []
        self._reference_key: str | None = None
        self._frame_index = 0

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
            raise ParamError(f"{cls.pipeline}: pass a model folder with --model; --checkpoint does not apply")
        backbone, _, folder = load_model(cls.pipeline, model, device)
        return cls(backbone, folder, device)

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def condition_of(self, frame: VideoFrame, index: int) -> torch.Tensor:
        """(C0, S, S) float in [0, 1]: the condition image of input frame ``index``."""

    def condition_at(self, index: int) -> torch.Tensor:
        """The condition of frame ``index`` without a video frame (offline files); none by default."""
        raise InputError(f"{self.spec.name} needs driving video input; give it with -i")  # type: ignore[attr-defined]

    def on_stream_start(self) -> None:
        """Per-stream state of the condition source (pose estimator, event simulator)."""

    # ------------------------------------------------------------------ contract
    def on_prepare(self) -> None:
        p = self.params  # type: ignore[attr-defined]
        if self.stream is None or self.stream.noise_kind != p["noise"]:
            cache = self.stream.cache if self.stream is not None else None
            self.stream = AnimationStream(self.backbone, seed=p["seed"], noise=p["noise"], device=self.device)
            self.stream.cache = cache  # the reference stays cached across noise settings
        self.stream.reset(p["seed"])
        key = p["reference"] or str(self.folder / REFERENCE)
        if key != self._reference_key:  # the reference cache is computed once per reference image
            self.stream.set_reference(read_image(key, self.size))
            self._reference_key = key
        self._pending = []
        self._frame_index = 0
        self.on_stream_start()

    def on_update(self, changed: dict[str, Any]) -> None:
        if "seed" in changed and self.stream is not None:
            self.stream.noise.reseed(changed["seed"])

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, VideoFrame)
        cond = self.condition_of(frame, self._frame_index)
        return self._add(cond, frame)

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        cond = self.condition_at(self._frame_index)
        blank = VideoFrame(data=torch.zeros(1, 1, 3, dtype=torch.uint8), pts=pts, time_base=time_base)
        return self._add(cond, blank)

    def flush(self) -> list[DataFrame]:
        self._require_prepared()  # type: ignore[attr-defined]
        assert self.stream is not None
        out = self._step() if self._pending else []
        return out + self._emit(self.stream.drain())

    # ------------------------------------------------------------------ internals
    def _add(self, cond: torch.Tensor, frame: VideoFrame) -> list[DataFrame]:
        self._frame_index += 1
        self._pending.append((cond, frame))
        if len(self._pending) < GROUP_FRAMES:
            return []
        return self._step()

    def _step(self) -> list[DataFrame]:
        assert self.stream is not None
        conds = torch.stack([c for c, _ in self._pending])
        frames = [f for _, f in self._pending]
        self._pending = []
        return self._emit(self.stream.step(conds, frames))

    def _emit(self, decoded: list[tuple[torch.Tensor, Any]]) -> list[DataFrame]:
        out: list[DataFrame] = []
        for image, src in decoded:
            data = image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().contiguous()
            out.append(VideoFrame(data=data, pts=src.pts, time_base=src.time_base))
        return out
