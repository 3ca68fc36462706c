"""The condition guider and the reference image encoder of the animation backbone.

``ConditionGuider`` is AnimateAnyone's / RAIN's ``PoseGuider`` layout (``conv_in``, ``blocks``, ``conv_out``): a
small conv encoder of the motion condition image (a pose map for RAIN, an event slice for EvAnimate), downsampling
to the latent size, whose zero-initialised ``conv_out`` maps onto the denoiser's first feature width. Its output is
added to the ``conv_in`` features of the noisy latent, so an untrained guider leaves the denoiser unchanged.

``ImageEncoder`` stands in for RAIN's CLIP image encoder: it turns the reference image into the cross-attention
tokens (RAIN: one CLIP image embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionGuider(nn.Module):
    def __init__(
        self,
        embedding_channels: int,
        condition_channels: int = 3,
        block_out_channels: tuple[int, ...] = (8, 16, 32, 64),
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(condition_channels, block_out_channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:], strict=True):
            self.blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], embedding_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # zero-initialised, as the PoseGuider
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.blocks) // 2)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """(N, C0, H, W) condition images in [0, 1] -> (N, embedding_channels, H/8, W/8)."""
        h = F.silu(self.conv_in(condition))
        for block in self.blocks:
            h = F.silu(block(h))
        return self.conv_out(h)


class ImageEncoder(nn.Module):
    """(N, 3, H, W) reference images in [0, 1] -> (N, 1, dim) cross-attention tokens."""

    def __init__(self, dim: int, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 4, stride=4)
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=4)
        self.proj = nn.Linear(4 * width, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv2(F.silu(self.conv1(images * 2 - 1))))
        # mean and max over space: the colours of the character and of its most salient parts
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.norm(self.proj(pooled)).unsqueeze(1)
