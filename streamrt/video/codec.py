"""The frame autoencoder of the defaults: RGB frames <-> small latents (8x downsampling), per frame.

A real checkpoint comes with its own VAE (Wan's causal 3D VAE, ModelScope's SD VAE); the tiny defaults use this one,
trained by their recipes on the synthetic clips (reconstruction loss), so a 128x128 frame is a 16x16 latent and the
backbone runs at real-time sizes on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
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
        overshoots, and a run whose outputs all overshoot early never recovers (it collapses to a flat frame)."""
        return self.decoder(latents * self.cfg.latent_scale)
