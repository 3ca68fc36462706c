"""The two UNets of the animation backbone, built from diffusers' classes in RAIN's / AnimateAnyone's layout.

- ``denoising_unet``: diffusers' ``UNetMotionModel`` (SD-1.5-style 2D blocks, each followed by an AnimateDiff motion
  module: 1D self-attention over the frames at every pixel);
- ``reference_unet``: diffusers' ``UNet2DConditionModel`` with the same 2D blocks (ReferenceNet: it reads the
  reference image; its self-attention inputs are injected into the denoiser's self-attention).

``denoising_forward`` runs the motion UNet with ONE TIMESTEP PER FRAME and the condition guider's features added
to the ``conv_in`` output (AnimateAnyone's ``pose_cond_fea``). diffusers' ``UNetMotionModel.forward`` takes one
timestep per clip, but RAIN's window holds 4 groups at 4 noise levels in one 16-frame pass, so the forward walks
the same diffusers blocks with a per-frame time embedding (the resnets take one embedding per row anyway).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class UNetConfig:
    """Sizes of both UNets (the algorithm is SD-1.5's; only the sizes shrink for the CPU default)."""

    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 16  # heads = channels / head_dim at every level
    cross_attention_dim: int = 64  # width of the reference image embedding (CLIP image embeds in RAIN)
    norm_num_groups: int = 8
    motion_heads: int = 4
    motion_max_seq_length: int = 32  # AnimateDiff's temporal position encoding length
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        d["block_out_channels"] = tuple(d["block_out_channels"])
        return cls(**d)

    def heads(self) -> tuple[int, ...]:
        return tuple(max(1, c // self.attention_head_dim) for c in self.block_out_channels)


def build_denoising_unet(cfg: UNetConfig) -> nn.Module:
    """The motion UNet (every level has spatial cross-attention blocks, so each can read the reference)."""
    from diffusers import UNetMotionModel

    n = len(cfg.block_out_channels)
    return UNetMotionModel(
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlockMotion",) * n,
        up_block_types=("CrossAttnUpBlockMotion",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim,
        num_attention_heads=cfg.heads(),
        motion_num_attention_heads=cfg.motion_heads,
        motion_max_seq_length=cfg.motion_max_seq_length,
        use_motion_mid_block=True,
    )


def build_reference_unet(cfg: UNetConfig) -> nn.Module:
    """The ReferenceNet: the same 2D blocks without motion modules."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.heads(),  # diffusers' UNet2D names the head count attention_head_dim
    )


def time_embedding(unet: nn.Module, timesteps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N,) timesteps -> (N, D) embeddings through the UNet's sinusoidal projection and MLP."""
    return unet.time_embedding(unet.time_proj(timesteps).to(dtype))


def denoising_forward(
    unet: nn.Module,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    num_frames: int,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """The motion UNet over clips of ``num_frames`` frames.

    sample: (B*F, C, h, w) frames in time order inside each clip; timesteps: (B*F,) one per frame;
    encoder_hidden_states: (B*F, L, D); condition: (B*F, C0, h, w) guider features added after ``conv_in``.
    Returns the model output (B*F, C, h, w).
    """
    emb = time_embedding(unet, timesteps, sample.dtype)
    h = unet.conv_in(sample)
    if condition is not None:
        h = h + condition
    residuals: tuple[torch.Tensor, ...] = (h,)
    for block in unet.down_blocks:
        h, res = block(
            hidden_states=h, temb=emb, encoder_hidden_states=encoder_hidden_states, num_frames=num_frames
        )
        residuals += res
    h = unet.mid_block(h, emb, encoder_hidden_states=encoder_hidden_states, num_frames=num_frames)
    for block in unet.up_blocks:
        res = residuals[-len(block.resnets) :]
        residuals = residuals[: -len(block.resnets)]
        h = block(
            hidden_states=h,
            res_hidden_states_tuple=res,
            temb=emb,
            encoder_hidden_states=encoder_hidden_states,
            num_frames=num_frames,
        )
    h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)


def reference_forward(
    unet: nn.Module, latents: torch.Tensor, encoder_hidden_states: torch.Tensor
) -> torch.Tensor:
    """The ReferenceNet at t = 0 (as AnimateAnyone runs it): its attention processors record the bank."""
    t = torch.zeros(latents.shape[0], dtype=torch.long, device=latents.device)
    return unet(latents, t, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
