"""The shared animation backbone: ReferenceNet + motion denoiser + condition guider + frame codec + LCM schedule.

RAIN (pose maps) and EvAnimate (event slices) differ only in the condition images the guider reads
(``condition_channels``) and how they are made from the input; everything here is shared.

Module names are RAIN's (AnimateAnyone's): ``denoising_unet``, ``reference_unet``, ``pose_guider``; the frame
codec (``codec``, the project's ``FrameCodec``, 8x downsampling) stands in for SD's VAE / RAIN's TAESD-style decoder,
and ``image_encoder`` for CLIP's image encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from streamrt.animation.guider import ConditionGuider, ImageEncoder
from streamrt.animation.reference import ReferenceAttention, ReferenceCache
from streamrt.animation.unet import (
    UNetConfig,
    build_denoising_unet,
    build_reference_unet,
    denoising_forward,
    reference_forward,
)
from streamrt.video.codec import CodecConfig, FrameCodec

# RAIN's window: 4 groups of 4 latent frames at t = [249, 499, 749, 999].
GROUPS = 4
GROUP_FRAMES = 4
WINDOW_FRAMES = GROUPS * GROUP_FRAMES


def lcm_scheduler(prediction_type: str = "v_prediction"):
    """An LCM scheduler whose ``groups``-step discretisation is exactly t = [999, 749, 499, 249] (SD's betas).

    v-prediction: at t = 999 an epsilon model's x0 = (x - beta*eps)/alpha divides its error by alpha ~ 0.07, which a
    tiny model cannot afford (the same reason as the tiny StreamDiffusion default)."""
    from diffusers import LCMScheduler

    return LCMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        original_inference_steps=GROUPS,
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=1,
    )


def group_schedule(device: str | torch.device = "cpu", prediction_type: str = "v_prediction"):
    """The window's noise schedule: level 0 = t 999 (the newest group) ... level 3 = t 249 (the oldest)."""
    from streamrt.schedules import LCMSchedule

    return LCMSchedule(
        lcm_scheduler(prediction_type), list(range(GROUPS)), num_inference_steps=GROUPS, device=device
    )


@dataclass
class BackboneConfig:
    size: int = 128  # frame size (square) the model works at
    condition_channels: int = 3  # pose maps: RGB; event slices: 3 channels too
    guider_channels: tuple[int, ...] = (8, 16, 32, 64)
    image_encoder_width: int = 16
    prediction_type: str = "v_prediction"
    unet: UNetConfig = field(default_factory=UNetConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "condition_channels": self.condition_channels,
            "guider_channels": list(self.guider_channels),
            "image_encoder_width": self.image_encoder_width,
            "prediction_type": self.prediction_type,
            "unet": self.unet.to_dict(),
            "codec": self.codec.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> BackboneConfig:
        return cls(
            size=int(d["size"]),
            condition_channels=int(d["condition_channels"]),
            guider_channels=tuple(d["guider_channels"]),
            image_encoder_width=int(d["image_encoder_width"]),
            prediction_type=str(d["prediction_type"]),
            unet=UNetConfig.from_dict(d["unet"]),
            codec=CodecConfig.from_dict(d["codec"]),
        )


class AnimationBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoising_unet = build_denoising_unet(cfg.unet)
        self.reference_unet = build_reference_unet(cfg.unet)
        self.pose_guider = ConditionGuider(
            cfg.unet.block_out_channels[0], cfg.condition_channels, cfg.guider_channels
        )
        self.image_encoder = ImageEncoder(cfg.unet.cross_attention_dim, cfg.image_encoder_width)
        self.codec = FrameCodec(cfg.codec)
        self.reference_attention = ReferenceAttention(self.reference_unet, self.denoising_unet)
        # how often the ReferenceNet ran (tests check that streaming runs it once per reference)
        self.reference_runs = 0
        if self.pose_guider.downsampling != cfg.codec.scale:
            raise ValueError(
                f"the guider downsamples by {self.pose_guider.downsampling}, the codec by {cfg.codec.scale}: "
                "give the guider one more/less channel stage"
            )

    # state dict of the weights only: the attention wiring holds no parameters
    def encode_reference(self, images: torch.Tensor) -> ReferenceCache:
        """(R, 3, H, W) reference images in [0, 1] -> their cache (ReferenceNet run once, K/V projected once)."""
        latents = self.codec.encode(images)
        embeds = self.image_encoder(images)
        reference_forward(self.reference_unet, latents, embeds)
        self.reference_runs += 1
        return self.reference_attention.build_cache(embeds)

    def guide(self, conditions: torch.Tensor) -> torch.Tensor:
        """(N, C0, H, W) condition images in [0, 1] -> (N, C, h, w) features (per frame: computed once each)."""
        return self.pose_guider(conditions)

    def predict(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        features: torch.Tensor,
        cache: ReferenceCache,
        num_frames: int,
    ) -> torch.Tensor:
        """Model output (v or epsilon) for clips of ``num_frames`` frames: x_t (R*F, C, h, w) in time order per
        clip, timesteps (R*F,), features (R*F, C1, h, w) from ``guide``; clip r reads reference r of ``cache``."""
        self.reference_attention.state.cache = cache
        try:
            embeds = cache.image_embeds.repeat_interleave(x_t.shape[0] // cache.references, dim=0)
            return denoising_forward(self.denoising_unet, x_t, timesteps, embeds, num_frames, features)
        finally:
            self.reference_attention.state.cache = None

    def weight_modules(self) -> dict[str, nn.Module]:
        """The modules whose weights make a model folder, by their RAIN names."""
        return {
            "denoising_unet": self.denoising_unet,
            "reference_unet": self.reference_unet,
            "pose_guider": self.pose_guider,
            "image_encoder": self.image_encoder,
            "codec": self.codec,
        }
