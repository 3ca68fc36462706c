"""The adaLN DiT of the video family, in the Wan2.1 layout (parameter names match the official checkpoints:
``patch_embedding``, ``text_embedding.{0,2}``, ``time_embedding.{0,2}``, ``time_projection.1``,
``blocks.N.{self_attn,cross_attn}.{q,k,v,o,norm_q,norm_k}``, ``blocks.N.norm3``, ``blocks.N.ffn.{0,2}``,
``blocks.N.modulation``, ``head.head``, ``head.modulation``).

One time embedding per latent frame: ``t`` is (B, F) and every token is modulated by its own frame's embedding, which
is what lets frames at different noise levels share one pass (StreamDiT's buffer, Rolling Forcing's window).

How tokens attend to each other is a strategy (``AttentionPlan``): full bidirectional by default; StreamDiT's
(shifted) window masks; Rolling Forcing's sink + rolling KV cache. The model itself never branches on the method.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.video.attention import Rope


@dataclass
class DiTConfig:
    """Wan2.1-T2V-1.3B is dim 1536, ffn 8960, 12 heads, 30 layers, text_dim 4096 (umT5), latent 16 channels."""

    in_dim: int = 16
    out_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    cross_attn_norm: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        d = dict(d)
        if "patch_size" in d:
            d["patch_size"] = tuple(d["patch_size"])
        return cls(**d)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def sinusoidal_embedding(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's 1D sinusoidal embedding: [cos, sin] of position * 10000^(-i/half)."""
    half = dim // 2
    pos = position.to(torch.float64).flatten()
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64) / half)
    sinusoid = torch.outer(pos, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1).float()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (Wan's), affine or not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


@dataclass
class TokenGrid:
    """Where the tokens of one forward sit: ``frames`` latent frames of h x w patches, starting at absolute latent
    frame ``frame_start`` of the stream (RoPE positions)."""

    frames: int
    h: int
    w: int
    frame_start: int = 0

    @property
    def tokens_per_frame(self) -> int:
        return self.h * self.w

    def frame_positions(self) -> torch.Tensor:
        return torch.arange(self.frame_start, self.frame_start + self.frames)


class AttentionPlan:
    """How self-attention runs in each layer. The default: full bidirectional attention with RoPE at the grid's
    absolute positions. ``q``, ``k``, ``v`` are (B, L, H, D), already q/k-normalised, not yet rotated."""

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: TokenGrid, rope: Rope
    ) -> torch.Tensor:
        cos, sin = rope.cos_sin(grid.frame_positions(), grid.h, grid.w)
        mask = self.mask(layer, grid)
        if mask is not None:
            mask = mask.to(q.device)
        return sdpa(rope.apply(q, cos, sin), rope.apply(k, cos, sin), v, mask)

    def mask(self, layer: int, grid: TokenGrid) -> torch.Tensor | None:
        return None


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, Lq, H, D) x (B, Lk, H, D) -> (B, Lq, H, D); ``mask`` (Lq, Lk) bool, True = attend."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, -1)
        k = self.norm_k(self.k(x)).view(b, n, self.num_heads, -1)
        v = self.v(x).view(b, n, self.num_heads, -1)
        return q, k, v


class CrossAttention(SelfAttention):
    def forward(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, L, D) attends to context (B, M, D); ``mask``: additive (B, 1, L, M) or bool, None = all visible."""
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, -1)
        k = self.norm_k(self.k(context)).view(b, context.shape[1], self.num_heads, -1)
        v = self.v(context).view(b, context.shape[1], self.num_heads, -1)
        return self.o(sdpa(q, k, v, mask).flatten(2))


class DiTBlock(nn.Module):
    """adaLN block: modulated self-attention, cross-attention to the text, modulated FFN (6 modulation vectors)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = (
            LayerNorm(dim, cfg.eps, elementwise_affine=cfg.cross_attn_norm)
            if cfg.cross_attn_norm
            else nn.Identity()
        )
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        context: torch.Tensor,
        layer: int,
        grid: TokenGrid,
        plan: AttentionPlan,
        rope: Rope,
    ) -> torch.Tensor:
        # e: (B, L, 6, dim) per-token modulation (each token carries its frame's time embedding)
        mod = (self.modulation.unsqueeze(0) + e).unbind(2)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        q, k, v = self.self_attn.qkv(self.norm1(x) * (1 + scale1) + shift1)
        y = self.self_attn.o(plan.attend(layer, q, k, v, grid, rope).flatten(2))
        x = x + y * gate1
        x = x + self.cross_attn(self.norm3(x), context)
        y = self.ffn(self.norm2(x) * (1 + scale2) + shift2)
        return x + y * gate2


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # e: (B, L, dim)
        shift, scale = (self.modulation.unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        return self.head(self.norm(x) * (1 + scale) + shift)


class VideoDiT(nn.Module):
    """Latent video (B, C, F, H, W) + per-frame timesteps (B, F) + text tokens (B, L, text_dim) -> velocity."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = Rope(cfg.head_dim)

    def embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """Project text tokens once per prompt; the result can be reused for every pass (``context_embedded``)."""
        return self.text_embedding(context)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        *,
        frame_start: int = 0,
        plan: AttentionPlan | None = None,
        context_embedded: bool = False,
    ) -> torch.Tensor:
        cfg = self.cfg
        plan = plan or AttentionPlan()
        b = x.shape[0]
        x = self.patch_embedding(x)  # (B, dim, F', h, w)
        f, h, w = x.shape[2:]
        grid = TokenGrid(f, h, w, frame_start)
        x = x.flatten(2).transpose(1, 2)  # (B, L, dim)
        if t.ndim == 1:
            t = t[:, None].expand(b, f)
        e = self.time_embedding(
            sinusoidal_embedding(cfg.freq_dim, t.cpu()).to(x.device, x.dtype)
        )  # (B*F, dim)
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim))  # (B*F, 6, dim)
        per_frame = h * w
        e = e.view(b, f, cfg.dim).repeat_interleave(per_frame, dim=1)
        e0 = e0.view(b, f, 6, cfg.dim).repeat_interleave(per_frame, dim=1)
        ctx = context if context_embedded else self.embed_text(context)
        for i, block in enumerate(self.blocks):
            x = block(x, e0, ctx, i, grid, plan, self.rope)
        x = self.head(x, e)
        return self.unpatchify(x, (f, h, w))

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, L, prod(patch)*C) -> (B, C, F*pt, h*ph, w*pw), Wan's channel order (pt, ph, pw, C)."""
        f, h, w = grid
        pt, ph, pw = self.cfg.patch_size
        c = self.cfg.out_dim
        x = x.view(x.shape[0], f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(x.shape[0], c, f * pt, h * ph, w * pw)
