"""StreamingT2V's modules around a diffusers ``UNet3DConditionModel`` (the ModelScope text-to-video base, so
published base weights load by name).

- **CAM** (conditional attention module): a frame encoder and a copy of the UNet's encoder (ControlNet-style,
  initialised from the base) turn the previous chunk's last 8 frames into features at every skip connection of the
  encoder; there, temporal attention takes its queries from the base UNet's features of the 16 frames being
  generated and its keys/values from the 8 conditioning frames, and adds the result to the skip connection through a
  zero-initialised output projection. (The injection runs through forward hooks on the base UNet's down blocks, so
  the base model's code and weights stay untouched.)
- **APM** (appearance preservation): the anchor frame (first frame of the first chunk) -> image features -> MLP ->
  16 tokens, concatenated with the text tokens -> Conv1d(L + 16 -> L) + LayerNorm = x_mixed; every cross-attention
  layer l attends to ``x_text + SiLU(alpha_l) * x_mixed`` with ``alpha_l`` initialised to 0.

With CAM's projections and APM's alphas at their initial zeros the conditioned model equals the base model exactly.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StreamingT2VConfig:
    chunk_frames: int = 16
    cond_frames: int = 8
    apm_tokens: int = 16
    cam_heads: int = 4
    steps: int = 50  # DDIM steps (the paper's)
    guidance_scale: float = 7.5
    text_tokens: int = 77  # L (77 CLIP tokens in the published model)
    # what the UNet predicts: ModelScope's is "epsilon"; the tiny default is "v_prediction" (an epsilon model's x0 at
    # t = 999 divides its error by sqrt(alpha_bar) ~ 0.07, which a few-step sampler of a small model cannot afford)
    prediction_type: str = "epsilon"

    def to_dict(self) -> dict:
        return asdict(self)


def _frames_first(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W)."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


class TemporalCrossAttention(nn.Module):
    """At one skip connection: per spatial position, the F generated frames attend to the conditioning frames."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        heads = max(1, min(heads, channels))
        while channels % heads:
            heads -= 1
        self.norm_q = nn.GroupNorm(min(8, channels), channels)
        self.norm_kv = nn.GroupNorm(min(8, channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # zero-initialised: CAM starts as a no-op
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, frames: int, cond_frames: int) -> torch.Tensor:
        # x: (B*F, C, H, W) base features; cond: (B*Fc, C, H, W) conditioning features -> residual like x
        bf, c, h, w = x.shape
        b = bf // frames
        q = self.norm_q(x).view(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
        kv = (
            self.norm_kv(cond)
            .view(b, cond_frames, c, h * w)
            .permute(0, 3, 1, 2)
            .reshape(b * h * w, cond_frames, c)
        )
        y = self.proj_out(self.attn(q, kv, kv, need_weights=False)[0])
        return y.view(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)


@dataclass
class CamInput:
    """Conditioning frames after CAM's timestep-independent layers: (B*Fc, C, H, W) features."""

    features: torch.Tensor
    batch: int
    frames: int

    def doubled(self) -> CamInput:
        """The batch twice over (classifier-free guidance runs the unconditional and conditional pass together)."""
        f = self.features.view(self.batch, self.frames, *self.features.shape[1:])
        return CamInput(torch.cat([f, f]).flatten(0, 1), 2 * self.batch, self.frames)


class CAM(nn.Module):
    """Frame encoder + a copy of the UNet encoder + one zero-initialised temporal attention per skip connection."""

    def __init__(self, unet: nn.Module, heads: int = 4) -> None:
        super().__init__()
        cfg = unet.config
        c0 = cfg.block_out_channels[0]
        self.frame_encoder = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c0, 3, padding=1), nn.SiLU(), nn.Conv2d(c0, c0, 3, padding=1)
        )
        nn.init.zeros_(self.frame_encoder[-1].weight)
        nn.init.zeros_(self.frame_encoder[-1].bias)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.transformer_in = copy.deepcopy(unet.transformer_in)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        # one attention per skip connection a down block emits (its resnets, plus its downsampler)
        self.merge = nn.ModuleList()
        for block in unet.down_blocks:
            chans = [r.out_channels for r in block.resnets]
            if block.downsamplers is not None:
                chans.append(chans[-1])
            self.merge.append(nn.ModuleList(TemporalCrossAttention(ch, heads) for ch in chans))

    def prepare(self, cond: torch.Tensor) -> CamInput:
        """The part of the encoding that does not depend on the timestep (frame encoder, conv_in, the temporal
        transformer): a sampler computes it once per chunk and passes it to every step."""
        b, _, fc = cond.shape[:3]
        x = _frames_first(cond)
        x = self.conv_in(x) + self.frame_encoder(x)
        return CamInput(self.transformer_in(x, num_frames=fc, return_dict=False)[0], b, fc)

    def encode(
        self, prepared: CamInput, timestep: torch.Tensor, text: torch.Tensor
    ) -> list[tuple[torch.Tensor, ...]]:
        """Features of the ``prepare``d conditioning frames at every skip connection of every down block."""
        x, b, fc = prepared.features, prepared.batch, prepared.frames
        emb = self.time_embedding(
            self.time_proj(timestep.to(x.device).expand(b)).to(x.dtype)
        ).repeat_interleave(fc, dim=0)
        ctx = text.repeat_interleave(fc, dim=0)
        feats = []
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                x, res = block(hidden_states=x, temb=emb, encoder_hidden_states=ctx, num_frames=fc)
            else:
                x, res = block(hidden_states=x, temb=emb, num_frames=fc)
            feats.append(res)
        return feats


class APMProcessor:
    """Cross-attention processor of one layer: the keys/values come from x_text + SiLU(alpha_l) * x_mixed."""

    def __init__(self, apm: APM, layer: int, base) -> None:
        self.apm, self.layer, self.base = apm, layer, base

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        mixed = self.apm.active
        if mixed is not None and encoder_hidden_states is not None:
            reps = encoder_hidden_states.shape[0] // mixed.shape[0]
            gate = F.silu(self.apm.alphas[self.layer])
            encoder_hidden_states = encoder_hidden_states + gate * mixed.repeat_interleave(reps, dim=0)
        return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


class APM(nn.Module):
    """Anchor frame -> 16 tokens mixed with the text tokens; one zero-initialised gate per cross-attention layer."""

    def __init__(self, unet: nn.Module, latent_channels: int, text_tokens: int, tokens: int = 16) -> None:
        super().__init__()
        dim = unet.config.cross_attention_dim
        self.tokens = tokens
        # Image features of the anchor (CLIP's image embedding in the published model; a small encoder here).
        self.image_encoder = nn.Sequential(
            nn.Conv2d(latent_channels, dim, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * tokens), nn.GELU(), nn.Linear(dim * tokens, dim * tokens)
        )
        self.mix = nn.Conv1d(text_tokens + tokens, text_tokens, 1)
        self.norm = nn.LayerNorm(dim)
        self.layers = [name for name, m in unet.named_modules() if name.endswith("attn2")]
        self.alphas = nn.Parameter(torch.zeros(len(self.layers)))
        self.active: torch.Tensor | None = None

    def install(self, unet: nn.Module) -> None:
        modules = dict(unet.named_modules())
        for i, name in enumerate(self.layers):
            attn = modules[name]
            attn.set_processor(APMProcessor(self, i, attn.processor))

    def mixed(self, anchor: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """anchor (B, C, h, w) latents, text (B, L, D) -> x_mixed (B, L, D)."""
        b, _, d = text.shape
        img = self.mlp(self.image_encoder(anchor)).view(b, self.tokens, d)
        return self.norm(self.mix(torch.cat([text, img], dim=1)))


class StreamingT2VModel(nn.Module):
    """Base UNet3D + CAM + APM: eps(x_t (B, C, 16, h, w), t, text, cond (B, C, 8, h, w) | None, anchor | None)."""

    def __init__(self, unet: nn.Module, cfg: StreamingT2VConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = unet
        self.cam = CAM(unet, cfg.cam_heads)
        self.apm = APM(unet, unet.config.in_channels, cfg.text_tokens, cfg.apm_tokens)
        self.apm.install(unet)
        self._cond_feats: list[tuple[torch.Tensor, ...]] | None = None
        self._frames = 0
        self._cond_frames = 0
        for i, block in enumerate(unet.down_blocks):
            block.register_forward_hook(self._inject(i))

    def _inject(self, index: int):
        def hook(module, args, output):
            if self._cond_feats is None:
                return output
            hidden, res = output
            merged = tuple(
                r + att(r, c, self._frames, self._cond_frames)
                for r, c, att in zip(res, self._cond_feats[index], self.cam.merge[index], strict=True)
            )
            return hidden, merged

        return hook

    @contextmanager
    def conditioned(self, cond_feats, frames: int, cond_frames: int, mixed: torch.Tensor | None):
        self._cond_feats, self._frames, self._cond_frames = cond_feats, frames, cond_frames
        self.apm.active = mixed
        try:
            yield
        finally:
            self._cond_feats, self.apm.active = None, None

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        cond: torch.Tensor | CamInput | None = None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``cond``: the conditioning latents (B, C, 8, h, w), or ``cam.prepare(cond)`` computed once for all the
        steps of a chunk (the same result)."""
        t = t.reshape(-1)
        if cond is None:  # the first chunk: the base model alone
            return self.unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
        prepared = cond if isinstance(cond, CamInput) else self.cam.prepare(cond)
        feats = self.cam.encode(prepared, t, text)
        mixed = self.apm.mixed(anchor, text) if anchor is not None else None
        with self.conditioned(feats, x.shape[2], prepared.frames, mixed):
            return self.unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
