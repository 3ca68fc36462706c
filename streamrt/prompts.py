"""Prompt-embedding transitions for live prompt changes.

A new prompt does not cut in: the conditioning moves from the old embedding to the new one over ``frames`` model
passes, linearly or by spherical interpolation (slerp keeps the norm of each token vector, which linear mixing of two
unrelated embeddings shrinks).
"""

from __future__ import annotations

import torch


def slerp(a: torch.Tensor, b: torch.Tensor, w: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of the last dimension (token vectors), falling back to lerp for parallel vectors."""
    a32, b32 = a.float(), b.float()
    na = a32.norm(dim=-1, keepdim=True).clamp_min(eps)
    nb = b32.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos = ((a32 / na) * (b32 / nb)).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    lerp = (1 - w) * a32 + w * b32
    out = torch.where(
        so.abs() < 1e-4, lerp, (torch.sin((1 - w) * omega) / so) * a32 + (torch.sin(w * omega) / so) * b32
    )
    return out.to(a.dtype)


def blend(a: torch.Tensor, b: torch.Tensor, w: float, method: str) -> torch.Tensor:
    if w <= 0:
        return a
    if w >= 1:
        return b
    if method == "slerp":
        return slerp(a, b, w)
    if method == "linear":
        return torch.lerp(a, b, w)
    raise ValueError(f"unknown prompt blend {method!r}; choose linear or slerp")


class PromptTransition:
    """The conditioning embedding, moving towards a target over a number of passes."""

    def __init__(self, embedding: torch.Tensor) -> None:
        self.source = embedding
        self.target = embedding
        self.frames = 0
        self.done = 0
        self.method = "slerp"

    def set_target(self, embedding: torch.Tensor, frames: int = 0, method: str = "slerp") -> None:
        blend(self.source, embedding, 0.5, method)  # validates the method before anything changes
        # A transition interrupted mid-way starts from where it got to, so the conditioning never jumps.
        self.source = self.current()
        self.target = embedding
        self.frames = max(0, int(frames))
        self.done = 0
        self.method = method

    def current(self) -> torch.Tensor:
        if self.frames == 0 or self.done >= self.frames:
            return self.target
        return blend(self.source, self.target, self.done / self.frames, self.method)

    def advance(self) -> None:
        if self.done < self.frames:
            self.done += 1
