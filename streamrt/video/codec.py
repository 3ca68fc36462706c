"""The frame autoencoder of the defaults: RGB frames <-> small latents (8x downsampling), per frame.

A real checkpoint comes with its own VAE (Wan's causal 3D VAE, ModelScope's SD VAE); the tiny defaults use this one,
trained by their recipes on the synthetic clips (reconstruction loss), so a 128x128 frame is a 16x16 latent and the
backbone runs at real-time sizes on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CodecConfig:
    latent_channels: int = 4
    width: int = 32  # channels of the first stage; doubled per downsampling
    levels: int = 3  # downsampling by 2 per level: 3 -> 8x
    latent_scale: float = 1.0  # latents are divided by it, so the diffusion models see unit-scale latents

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        return cls(**d)

    @property
    def scale(self) -> int:
        return 2**self.levels


class FrameCodec(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc: list[nn.Module] = [nn.Conv2d(3, cfg.width, 3, padding=1), nn.SiLU()]
        ch = cfg.width
        for _ in range(cfg.levels):
            enc += [nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), nn.SiLU()]
            ch *= 2
        enc.append(nn.Conv2d(ch, cfg.latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch, 3, padding=1), nn.SiLU()]
        for _ in range(cfg.levels):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ch, ch // 2, 3, padding=1),
                nn.SiLU(),
            ]
            ch //= 2
        dec.append(nn.Conv2d(ch, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, C, H/8, W/8)."""
        return self.encoder(frames * 2 - 1) / self.cfg.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, 3, 8h, 8w) in [0, 1]."""
        return (self.decode_unclamped(latents).clamp(-1, 1) + 1) / 2

    def decode_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output in [-1, 1] units. Training uses it: a clamp passes no gradient where the output
        overshoots, and a run whose outputs all overshoot early never recovers (it collapses to a flat frame).

        Without gradients (inference) each nearest-x2 upsampling and the 3x3 conv after it run as one
        ``upsample2x_conv3x3``: the same function in 4 multiply-adds per output instead of 9."""
        x = latents * self.cfg.latent_scale
        if torch.is_grad_enabled():
            return self.decoder(x)
        layers = list(self.decoder)
        i = 0
        while i < len(layers):
            layer = layers[i]
            if _fusable(layer, layers[i + 1] if i + 1 < len(layers) else None):
                x = upsample2x_conv3x3(x, layers[i + 1])
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _fusable(layer: nn.Module, following: nn.Module | None) -> bool:
    """A nearest x2 upsampling followed by a plain 3x3 conv."""
    return (
        isinstance(layer, nn.Upsample)
        and layer.mode == "nearest"
        and layer.scale_factor in (2, 2.0)
        and isinstance(following, nn.Conv2d)
        and _plain_3x3(following)
    )


def _plain_3x3(conv: nn.Conv2d) -> bool:
    return (
        conv.kernel_size == (3, 3)
        and conv.padding == (1, 1)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def upsample2x_conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(F.interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3 conv with padding 1, computed on x.

    Output pixel (2i + a, 2j + b) sees upsampled rows 2i + a - 1 .. 2i + a + 1, which are only two distinct rows
    of x: for a = 0 the top tap reads row i - 1 and the other two read row i; for a = 1 the bottom tap reads row
    i + 1 and the other two row i (the same for columns). So each of the 4 output phases is a 2x2 conv of x with
    summed taps, and x's zero padding is exactly the upsampled image's. Equal up to float rounding.
    """
    w = conv.weight  # (out, in, 3, 3)
    if not _plain_3x3(conv):
        raise ValueError("upsample2x_conv3x3 needs a plain 3x3 conv with padding 1, stride 1, no groups")
    # taps folded along one axis for phase 0 ([top], [middle + bottom]) and phase 1 ([top + middle], [bottom])
    rows = [
        torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], dim=2),
        torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], dim=2),
    ]  # (out, in, 2, 3)
    h, wd = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    phases = []
    for a, r in enumerate(rows):
        cols = [
            torch.stack([r[..., 0], r[..., 1] + r[..., 2]], dim=-1),
            torch.stack([r[..., 0] + r[..., 1], r[..., 2]], dim=-1),
        ]  # (out, in, 2, 2)
        for b, k in enumerate(cols):
            phases.append(F.conv2d(xp[:, :, a : a + h + 1, b : b + wd + 1], k, conv.bias))
    y = torch.stack(phases, dim=2)  # (N, out, [a b], h, w)
    n, c = y.shape[:2]
    return y.view(n, c, 2, 2, h, wd).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * wd)
