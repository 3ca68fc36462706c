"""Loading weights published in RAIN's layout (Moore-AnimateAnyone's): ``denoising_unet`` (a UNet3DConditionModel
with AnimateDiff ``motion_modules``), ``reference_unet`` (UNet2DConditionModel) and ``pose_guider`` (PoseGuider).

The 2D parts of both UNets and the pose guider already have the same parameter names as ours (diffusers' blocks;
AnimateAnyone's ``InflatedConv3d`` is a ``Conv2d`` with 2D weights). Only AnimateDiff's motion modules are named
differently from diffusers' ``AnimateDiffTransformer3D``; the renames below are the ones diffusers' own AnimateDiff
conversion applies:

| AnimateDiff / RAIN | diffusers (ours) |
|---|---|
| ``motion_modules.N.temporal_transformer.X`` | ``motion_modules.N.X`` |
| ``transformer_blocks.K.attention_blocks.0`` / ``.1`` | ``transformer_blocks.K.attn1`` / ``.attn2`` |
| ``transformer_blocks.K.norms.0`` / ``.1`` | ``transformer_blocks.K.norm1`` / ``.norm2`` |
| ``transformer_blocks.K.ff_norm`` | ``transformer_blocks.K.norm3`` |
| ``attention_blocks.0.pos_encoder.pe`` | ``pos_embed.pe`` (diffusers applies one sinusoidal table before both attentions; AnimateDiff keeps a copy per attention: the copies must be equal) |

Files are read with safetensors, or ``torch.load(weights_only=True)`` for ``.pth``/``.ckpt``: nothing is unpickled.
Loading is strict: a missing or unexpected key is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamrt.animation.backbone import AnimationBackbone
from streamrt.errors import ModelLoadError

MOTION_RENAMES: tuple[tuple[str, str], ...] = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.pos_encoder.pe", ".pos_embed.pe"),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)
RAIN_PARTS = ("denoising_unet", "reference_unet", "pose_guider")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from .pth/.ckpt/.bin with ``torch.load(weights_only=True)``."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"checkpoint {p} does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several error types
        raise ModelLoadError(
            f"cannot read {p}: {exc} (use .safetensors, or a plain torch state dict)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{p} does not hold a state dict")
    return state


def convert_denoising_unet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RAIN's ``denoising_unet`` keys -> diffusers' ``UNetMotionModel`` keys (motion modules renamed)."""
    out: dict[str, torch.Tensor] = {}
    second_pe: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".motion_modules." not in key:
            out[key] = value
            continue
        if ".attention_blocks.1.pos_encoder.pe" in key:
            # the duplicate table of the second temporal attention: checked against the first below
            second_pe[key.replace(".attention_blocks.1.", ".attention_blocks.0.")] = value
            continue
        new = key
        for old, repl in MOTION_RENAMES:
            new = new.replace(old, repl)
        out[new] = value
    for first_key, value in second_pe.items():
        if first_key not in state or not torch.equal(state[first_key], value):
            raise ModelLoadError(
                f"{first_key.replace('.0.', '.1.')} differs from {first_key}: diffusers' motion block shares one "
                "positional table between its two temporal attentions, so this checkpoint cannot be mapped onto it"
            )
    return out


def load_rain_weights(backbone: AnimationBackbone, parts: dict[str, dict[str, torch.Tensor]]) -> None:
    """Load RAIN-layout state dicts (``denoising_unet``, ``reference_unet``, ``pose_guider``) into the backbone,
    strictly. The motion modules may come separately (AnimateAnyone ships ``motion_module.pth``): merge them into
    ``denoising_unet`` first."""
    missing = [p for p in RAIN_PARTS if p not in parts]
    if missing:
        raise ModelLoadError(f"RAIN weights need {', '.join(RAIN_PARTS)}; missing {', '.join(missing)}")
    targets = {
        "denoising_unet": (backbone.denoising_unet, convert_denoising_unet(parts["denoising_unet"])),
        "reference_unet": (backbone.reference_unet, parts["reference_unet"]),
        "pose_guider": (backbone.pose_guider, parts["pose_guider"]),
    }
    for name, (module, state) in targets.items():
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ModelLoadError(f"{name}: the checkpoint's shapes do not match the model: {exc}") from exc
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"{name}: the checkpoint does not match the model: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]} ({len(result.missing_keys)} / "
                f"{len(result.unexpected_keys)} in all)"
            )


def load_rain_files(backbone: AnimationBackbone, files: dict[str, str | Path]) -> None:
    """``files``: part name -> file (``motion_module`` optional, merged into ``denoising_unet``)."""
    parts = {name: read_state_dict(path) for name, path in files.items()}
    if "motion_module" in parts:
        parts["denoising_unet"] = {**parts.get("denoising_unet", {}), **parts.pop("motion_module")}
    load_rain_weights(backbone, parts)
