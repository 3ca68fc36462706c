"""Model folders of the animation generators: ``config.json`` + ``model.safetensors`` (fp16, through
``streamrt.video.folder``) + ``reference.png`` (the default reference image: a held-out character at rest).

Weights are stored under RAIN's module names (``denoising_unet.``, ``reference_unet.``, ``pose_guider.``) plus
``image_encoder.`` and ``codec.``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamrt.animation.backbone import AnimationBackbone, BackboneConfig
from streamrt.errors import InputError, ModelLoadError
from streamrt.video.folder import load_into, read_folder, resolve_model, save_folder

REFERENCE = "reference.png"


def save_model(
    folder: Path, pipeline: str, backbone: AnimationBackbone, reference: torch.Tensor, extra: dict
) -> None:
    """Write the folder; ``reference`` is (S, S, 3) uint8."""
    config = {"backbone": backbone.cfg.to_dict(), **extra}
    save_folder(folder, pipeline, config, backbone.weight_modules())
    write_image(folder / REFERENCE, reference)


def load_model(pipeline: str, model: str | None, device: str = "cpu") -> tuple[AnimationBackbone, dict, Path]:
    folder = resolve_model(pipeline, model)
    config, parts = read_folder(folder, pipeline)
    try:
        cfg = BackboneConfig.from_dict(config["backbone"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder}/config.json has no valid 'backbone' section: {exc}") from exc
    backbone = AnimationBackbone(cfg)
    for name, module in backbone.weight_modules().items():
        load_into(module, parts.get(name), name, folder)
    return backbone.to(device).eval().requires_grad_(False), config, folder


def write_image(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    Image.fromarray(image.cpu().numpy().astype(np.uint8)).save(path)


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file -> (3, size, size) float in [0, 1] (centre-cropped to a square, then resized)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"reference image {p} does not exist; pass an image file (png/jpg) with --reference")
    try:
        img = Image.open(p).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read reference image {p}: {exc}; pass a png or jpg") from exc
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
