"""One frame family for everything that flows through a session.

Every frame carries a presentation timestamp ``pts`` in an explicit rational ``time_base`` (seconds = pts * time_base).
Payloads are tensors, never encoded bytes: conversion to ``av.VideoFrame``/``av.AudioFrame`` happens only at the
transport edge (``transport.files``, ``transport.webrtc``).

Data frames (video, audio, text) are processed in order; control frames (parameter updates, end of stream, errors)
travel through the same queues so that their position relative to the data is preserved.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

_ids = itertools.count()

# Video pts default to a 90 kHz clock, the RTP clock for video (RFC 3551), so live and file timestamps share a base.
VIDEO_TIME_BASE = Fraction(1, 90_000)


@dataclass(kw_only=True)
class Frame:
    """Base of the family: an id, a pts in ``time_base`` units and free-form metadata."""

    pts: int = 0
    time_base: Fraction = VIDEO_TIME_BASE
    metadata: dict[str, Any] = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)


@dataclass(kw_only=True)
class VideoFrame(Frame):
    """One RGB picture: ``data`` is a uint8 tensor of shape (H, W, 3).

    uint8 HWC is what decoders and encoders exchange, so the runtime moves it without conversion; generators turn it
    into float CHW themselves (``to_float``), once, on their own thread.
    """

    data: torch.Tensor

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[-1] != 3 or self.data.dtype != torch.uint8:
            raise ValueError(
                f"VideoFrame.data must be a uint8 tensor of shape (H, W, 3), got {tuple(self.data.shape)} "
                f"{self.data.dtype}"
            )

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def to_float(self) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1]."""
        return self.data.permute(2, 0, 1).float().div_(255.0)

    @staticmethod
    def from_float(image: torch.Tensor, like: Frame | None = None, **kwargs: Any) -> VideoFrame:
        """Build a frame from a (3, H, W) float image in [0, 1], copying pts/time base/metadata from ``like``."""
        # +0.5 then truncation rounds (clamped values are non-negative); 5x cheaper than .round() per frame.
        data = (
            image.detach().clamp(0, 1).mul(255).add_(0.5).to(torch.uint8).permute(1, 2, 0).contiguous().cpu()
        )
        if like is not None:
            kwargs.setdefault("pts", like.pts)
            kwargs.setdefault("time_base", like.time_base)
            kwargs.setdefault("metadata", dict(like.metadata))
        return VideoFrame(data=data, **kwargs)

    def with_pts(self, pts: int, time_base: Fraction | None = None) -> VideoFrame:
        """The same picture at another time (shares the payload, no copy)."""
        return VideoFrame(
            data=self.data, pts=pts, time_base=time_base or self.time_base, metadata=dict(self.metadata)
        )


@dataclass(kw_only=True)
class AudioFrame(Frame):
    """A chunk of audio: ``data`` is float32 of shape (channels, samples) in [-1, 1]; pts counts samples."""

    data: torch.Tensor
    sample_rate: int

    def __post_init__(self) -> None:
        if self.data.ndim != 2 or not self.data.dtype.is_floating_point:
            raise ValueError(
                f"AudioFrame.data must be a float tensor of shape (channels, samples), got "
                f"{tuple(self.data.shape)} {self.data.dtype}"
            )
        if self.time_base == VIDEO_TIME_BASE:
            self.time_base = Fraction(1, self.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def samples(self) -> int:
        return int(self.data.shape[1])


@dataclass(kw_only=True)
class TextFrame(Frame):
    """A text event: a prompt, a line of a conversation, a caption."""

    text: str


@dataclass(kw_only=True)
class Tick(Frame):
    """Produce one step without input, at this pts (drives txt2img and text-to-video generators).

    A data frame, not a control frame: a live clock may drop ticks the generator cannot keep up with.
    """


@dataclass(kw_only=True)
class ControlFrame(Frame):
    """Base of control frames: they are handled by the runtime, never given to ``Generator.push``."""


@dataclass(kw_only=True)
class ParamUpdate(ControlFrame):
    """Change generator parameters live, at this point of the stream."""

    params: dict[str, Any]


@dataclass(kw_only=True)
class EndOfStream(ControlFrame):
    """No more input: the generator flushes, the sink finalises."""


@dataclass(kw_only=True)
class ErrorEvent(ControlFrame):
    """A session ended because of an error; ``message`` is meant for people."""

    message: str
    exception_type: str = ""


DataFrame = VideoFrame | AudioFrame | TextFrame
