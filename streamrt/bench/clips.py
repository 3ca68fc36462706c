"""Synthetic input clips for the benchmarks: deterministic, made in memory, nothing to download.

A static clip is one picture plus fresh sensor noise per frame (a camera on a tripod looking at a still scene); a
panning clip slides a window across a wide textured picture (a camera pan), so every frame moves by a few pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def textured_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(H, W, 3) uint8: multi-scale value noise with a 1/f spectrum, the statistics of natural scenes.

    Octaves from blobs a third of the frame high down to 4-pixel detail, so that shifting the
    picture by a few pixels changes it the way a camera pan changes a real scene (a smooth gradient would look the
    same after any shift; pure pixel noise would look like a different picture after a one-pixel shift).
    """
    gen = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, height, width)
    cell = height // 3
    while cell >= 4:
        # Mostly luminance with some colour: the channels of natural pictures are strongly correlated.
        grid = torch.randn(1, 1, height // cell + 2, width // cell + 2, generator=gen)
        grid = grid + 0.5 * torch.randn(1, 3, *grid.shape[2:], generator=gen)
        up = F.interpolate(grid, scale_factor=cell, mode="bicubic", align_corners=False)
        img += cell**0.5 * up[..., :height, :width]  # more contrast in the coarse octaves, as in photographs
        cell //= 2
    img = (img - img.mean()) / img.std()
    rgb = (0.5 + 0.18 * img).clamp(0, 1)[0].permute(1, 2, 0)  # (H, W, 3)
    return rgb.mul(255).round().to(torch.uint8)


def _sensor_noise(image: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    noisy = image.float() + std * torch.randn(image.shape, generator=gen)
    return noisy.round().clamp(0, 255).to(torch.uint8)


def static_clip(
    frames: int, height: int, width: int, *, noise_std: float = 2.0, seed: int = 0
) -> list[torch.Tensor]:
    """``frames`` (H, W, 3) uint8 pictures of one scene, each with fresh Gaussian noise of ``noise_std`` levels."""
    gen = torch.Generator().manual_seed(seed + 1)
    base = textured_image(height, width, seed)
    return [_sensor_noise(base, noise_std, gen) for _ in range(frames)]


def panning_clip(
    frames: int, height: int, width: int, *, speed: int = 8, noise_std: float = 2.0, seed: int = 0
) -> list[torch.Tensor]:
    """``frames`` (H, W, 3) uint8 pictures of a camera panning right by ``speed`` pixels per frame."""
    gen = torch.Generator().manual_seed(seed + 1)
    canvas = textured_image(height, width + speed * frames, seed)
    return [_sensor_noise(canvas[:, i * speed : i * speed + width], noise_std, gen) for i in range(frames)]
