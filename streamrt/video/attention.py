"""Position and attention structure of the video backbone: 3D rotary embedding and attention masks.

Tokens are laid out frame-major: token index = (f * h + y) * w + x for a latent grid of (F, h, w) patches.

``Rope`` is Wan2.1's 3D RoPE (the head dimension split into frame / height / width parts, theta 10000), computed
from positions by formula instead of a 1024-row table, so a stream's frame positions may grow without bound and a key
can be rotated to any position later (Rolling Forcing re-rotates its attention sink on every call).
"""

from __future__ import annotations

import torch


class Rope:
    """Wan's 3D rotary embedding for heads of ``head_dim`` (pairs of consecutive channels rotate together)."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE; got {head_dim}")
        self.head_dim = head_dim
        # Wan: d - 4*(d//6) channels for time, 2*(d//6) each for height and width.
        d6 = head_dim // 6
        dims = (head_dim - 4 * d6, 2 * d6, 2 * d6)
        self.inv_freq = [1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d) for d in dims]

    def angles(self, frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(len(frames) * h * w, head_dim / 2) rotation angles for tokens at frame positions ``frames``."""
        ff, fh, fw = self.inv_freq
        af = torch.outer(frames.to(torch.float64), ff)  # (F, df/2)
        ah = torch.outer(torch.arange(h, dtype=torch.float64), fh)
        aw = torch.outer(torch.arange(w, dtype=torch.float64), fw)
        f, hh, ww = af.shape[0], ah.shape[0], aw.shape[0]
        grid = torch.cat(
            [
                af[:, None, None].expand(f, hh, ww, -1),
                ah[None, :, None].expand(f, hh, ww, -1),
                aw[None, None, :].expand(f, hh, ww, -1),
            ],
            dim=-1,
        )
        return grid.reshape(f * hh * ww, -1)

    def cos_sin(self, frames: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.angles(frames, h, w)
        return torch.cos(a).float(), torch.sin(a).float()

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (B, L, H, D) by per-token angles (L, D/2)."""
        x2 = x.float().unflatten(-1, (-1, 2))  # (B, L, H, D/2, 2)
        a, b = x2[..., 0], x2[..., 1]
        c, s = cos.to(x.device)[None, :, None], sin.to(x.device)[None, :, None]
        out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
        return out.flatten(-2).to(x.dtype)

    def rotate(self, x: torch.Tensor, frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
        cos, sin = self.cos_sin(frames, h, w)
        return self.apply(x, cos, sin)


def token_frames(num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """Frame index of every token (frame-major layout)."""
    return torch.arange(num_frames).repeat_interleave(tokens_per_frame)


def block_causal_mask(frame_block: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """(L, L) bool, True = may attend: a token sees every token whose frame's block is not later than its own
    (bidirectional inside a block, causal across blocks). ``frame_block``: block index of each frame."""
    blocks = frame_block.repeat_interleave(tokens_per_frame)
    return blocks[None, :] <= blocks[:, None]


def window_ids(
    grid: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]
) -> torch.Tensor:
    """Window index of every token for a 3D partition of ``grid`` into ``window``-sized boxes, the partition moved
    by ``shift`` (Swin's shifted windows, without the cyclic roll: the boxes at the edges are smaller instead)."""
    ids = []
    for n, size, s in zip(grid, window, shift, strict=True):
        size = max(1, min(size, n))
        ids.append((torch.arange(n) + s) // size)
    f, h, w = grid
    nh, nw = int(ids[1].max()) + 1, int(ids[2].max()) + 1
    wid = (ids[0][:, None, None] * nh + ids[1][None, :, None]) * nw + ids[2][None, None, :]
    return wid.reshape(f * h * w)


def window_mask(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool) -> torch.Tensor:
    """(L, L) bool: tokens attend within their 3D window; ``shifted`` moves the partition by half a window (used on
    every other layer, so information crosses window borders)."""
    shift = tuple(max(1, min(wd, n)) // 2 if shifted else 0 for wd, n in zip(window, grid, strict=True))
    ids = window_ids(grid, window, shift)  # type: ignore[arg-type]
    return ids[None, :] == ids[:, None]
