"""Rolling Forcing's causal Wan model: the shared ``VideoDiT`` (Wan2.1 parameter layout) with the rolling-window
attention plan, and loading of official checkpoints.

Attention (``RollingAttention``):

- **window pass**: the tokens of the window's blocks attend bidirectionally to each other and to
  ``[sink | rolling cache]``; the sink (K/V of block 0, stored without RoPE) is rotated on every call to the frames
  just before the first attended rolling frame; at most ``max_attended_frames`` (21) latent frames are attended;
- **write pass**: once a block is emitted, one forward of its clean latents at t = 0 computes its K/V; the first
  block becomes the (frozen) sink, later blocks enter the rolling cache (``buffers.kv_cache``, 24 frames per layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from buffers.kv_cache import LayerCaches
from streamrt.errors import ModelLoadError
from streamrt.video.attention import Rope
from streamrt.video.dit import AttentionPlan, TokenGrid, sdpa


@dataclass
class RollingConfig:
    """Rolling Forcing's published settings: 5 blocks of 3 latent frames, shift 5, sink of one block, 21 frames
    attended, 24 cached."""

    frames_per_block: int = 3
    window_blocks: int = 5
    timesteps: list[float] = field(default_factory=lambda: [1000.0, 800.0, 600.0, 400.0, 200.0])
    shift: float = 5.0
    sink_blocks: int = 1
    max_attended_frames: int = 21
    cache_frames: int = 24

    def validate(self) -> None:
        if len(self.timesteps) != self.window_blocks:
            raise ValueError(f"{self.window_blocks} window blocks need {self.window_blocks} noise levels")
        window = self.window_blocks * self.frames_per_block
        if self.sink_frames + window > self.max_attended_frames:
            raise ValueError(
                f"sink ({self.sink_frames}) + window ({window}) frames exceed max_attended_frames ({self.max_attended_frames})"
            )
        if self.cache_frames < self.max_attended_frames - window + self.sink_frames:
            raise ValueError("cache_frames is too small for the attended context")

    @property
    def sink_frames(self) -> int:
        return self.sink_blocks * self.frames_per_block


class RollingAttention(AttentionPlan):
    """The attention plan of one forward (window pass or clean write pass) over per-layer ``LayerCaches``."""

    def __init__(self, caches: LayerCaches, cfg: RollingConfig, *, write: bool) -> None:
        self.caches = caches
        self.cfg = cfg
        self.write = write
        self.attended_frames = 0  # the largest context of this forward, in latent frames (checked by tests)

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: TokenGrid, rope: Rope
    ) -> torch.Tensor:
        cache = self.caches[layer]
        h, w = grid.h, grid.w
        cos, sin = rope.cos_sin(grid.frame_positions(), h, w)
        q_rot, k_rot = rope.apply(q, cos, sin), rope.apply(k, cos, sin)
        sink_frames = self.cfg.sink_frames if cache.has_sink else 0
        budget = self.cfg.max_attended_frames - sink_frames - grid.frames
        ctx = cache.context(budget)
        keys, values = [], []
        if ctx.sink_k is not None:
            # The sink sits just before the first attended frame (rolling cache, or the window itself).
            start = ctx.first_frame if ctx.frames else grid.frame_start
            positions = torch.arange(start - sink_frames, start)
            keys.append(rope.rotate(ctx.sink_k, positions, h, w))
            values.append(ctx.sink_v)
        if ctx.k is not None:
            keys.append(ctx.k)
            values.append(ctx.v)
        keys.append(k_rot)
        values.append(v)
        self.attended_frames = max(self.attended_frames, sink_frames + ctx.frames + grid.frames)
        out = sdpa(q_rot, torch.cat(keys, 1), torch.cat(values, 1))
        if self.write:
            if not cache.has_sink:
                cache.write_sink(k, v)  # unrotated
            else:
                cache.write(k_rot, v, grid.frame_start)
        return out


# ---------------------------------------------------------------------------------------------- official checkpoints
_WRAPPERS = ("generator_ema", "generator", "state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors, or a torch file loaded with ``weights_only=True`` (never a pickle
    of arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read {path} as a weights-only torch checkpoint: {exc}") from exc
    return obj


def official_to_model(obj: dict) -> dict[str, torch.Tensor]:
    """The official release's layout -> ``VideoDiT`` keys: unwrap ``generator_ema`` / ``generator`` (EMA first, as the
    official inference does), drop the training wrapper's ``model.`` prefix (and diffusion-model prefixes)."""
    for key in _WRAPPERS:
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    out = {}
    for k, v in obj.items():
        for prefix in ("model.diffusion_model.", "model.", "module."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
                break
        out[k] = v
    return out


def load_official(model: torch.nn.Module, path: str | Path) -> None:
    state = official_to_model(read_state_dict(path))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{path} does not match the model's Wan layout: missing {result.missing_keys[:8]}, "
            f"unexpected {result.unexpected_keys[:8]} (is it a Wan2.1-T2V-1.3B-based checkpoint, and does the "
            "model folder's transformer config match it?)"
        )
