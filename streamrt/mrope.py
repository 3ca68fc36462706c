"""Time-aligned multimodal rotary position embedding (X-Streamer's mRoPE) for interleaved text, audio and video.

Every token carries a 3D position (t, h, w). ``t`` is measured on ONE session clock in audio-token steps (20 ms at
16 kHz / hop 320): audio step ``s`` sits at t = s, video frame ``f`` (25 fps, 40 ms) at t = 2f, and the text slots
of a chunk at the chunk's first step. So a video frame and the audio step that starts at the same instant share t,
which is what lets attention line lips up with sound. ``h, w`` are a video patch's row and column; non-spatial
tokens (text, audio) sit at the centre of the patch grid, equally far from every patch of a frame.

The head dimension is split into t / h / w parts exactly like Wan's 3D RoPE (``streamrt.video.attention.Rope``,
whose frequencies are reused), and angles are computed by formula from float positions, so the clock may run for
hours and a cached key can be re-rotated to any position later (the identity sink is re-rotated on every step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamrt.video.attention import Rope


@dataclass(frozen=True)
class ChunkLayout:
    """Token order of one chunk: ``text_slots`` text tokens, ``audio_steps`` audio tokens, then ``frames`` video
    frames of ``grid_h x grid_w`` patch tokens (frame-major, row-major inside a frame)."""

    text_slots: int = 4
    frames: int = 8
    steps_per_frame: int = 2
    grid_h: int = 4
    grid_w: int = 4

    @property
    def audio_steps(self) -> int:
        return self.frames * self.steps_per_frame

    @property
    def patches_per_frame(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def video_tokens(self) -> int:
        return self.frames * self.patches_per_frame

    @property
    def tokens(self) -> int:
        return self.text_slots + self.audio_steps + self.video_tokens

    def slices(self) -> tuple[slice, slice, slice]:
        """(text, audio, video) token ranges inside a chunk."""
        a = self.text_slots
        b = a + self.audio_steps
        return slice(0, a), slice(a, b), slice(b, b + self.video_tokens)

    def positions(self, chunk: int | torch.Tensor) -> torch.Tensor:
        """(tokens, 3) float64 (t, h, w) of chunk ``chunk``'s tokens; a tensor of n chunk indices gives
        (n * tokens, 3), chunks in the given order."""
        chunks = torch.as_tensor(chunk, dtype=torch.float64).reshape(-1)
        steps = self.audio_steps
        ch, cw = (self.grid_h - 1) / 2, (self.grid_w - 1) / 2  # centre of the patch grid
        text = torch.tensor([[0.0, ch, cw]], dtype=torch.float64).expand(self.text_slots, 3)
        s = torch.arange(steps, dtype=torch.float64)
        audio = torch.stack([s, torch.full_like(s, ch), torch.full_like(s, cw)], dim=-1)
        f = torch.arange(self.frames, dtype=torch.float64) * self.steps_per_frame
        y = torch.arange(self.grid_h, dtype=torch.float64)
        x = torch.arange(self.grid_w, dtype=torch.float64)
        ff, yy, xx = torch.meshgrid(f, y, x, indexing="ij")
        video = torch.stack([ff, yy, xx], dim=-1).reshape(-1, 3)
        base = torch.cat([text, audio, video])  # (tokens, 3), chunk-relative
        offset = torch.zeros(chunks.shape[0], 1, 3, dtype=torch.float64)
        offset[:, 0, 0] = chunks * steps  # chunk k starts at step k * steps
        return (base[None] + offset).reshape(-1, 3)


class MRope:
    """Rotary embedding of 3D float positions, head dimension split into t / h / w parts as in Wan."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        self.rope = Rope(head_dim, theta)  # the t/h/w split and inverse frequencies
        self.head_dim = head_dim

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """(..., 3) positions -> (..., head_dim / 2) angles (float64)."""
        pos = positions.to(torch.float64)
        parts = [pos[..., i, None] * f for i, f in enumerate(self.rope.inv_freq)]
        return torch.cat(parts, dim=-1)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.angles(positions)
        return torch.cos(a).float(), torch.sin(a).float()

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (B, L, H, D) by angles (L, D/2) shared by the batch, or (B, L, D/2) per sample."""
        if cos.ndim == 2:
            return Rope.apply(x, cos, sin)
        x2 = x.float().unflatten(-1, (-1, 2))  # (B, L, H, D/2, 2)
        a, b = x2[..., 0], x2[..., 1]
        c, s = cos.to(x.device)[:, :, None], sin.to(x.device)[:, :, None]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2).to(x.dtype)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self.cos_sin(positions)
        return self.apply(x, cos, sin)
