"""Model folders of the video generators: ``config.json`` + ``model.safetensors`` (fp16), written by the training
recipes and read by ``Generator.load``. Weights of several modules share one file, each under its prefix
(``transformer.``, ``text.``, ``codec.`` ...). Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamrt.errors import ModelLoadError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CONFIG, WEIGHTS = "config.json", "model.safetensors"


def default_folder(name: str) -> Path:
    """Where the committed default of ``name`` lives: ``assets/<name>-tiny``."""
    return ASSETS / f"{name}-tiny"


def resolve_model(name: str, model: str | None) -> Path:
    """The folder to load: ``model``, or the committed default; without either, a ModelLoadError naming the fix
    (random weights are never a default)."""
    if model is None:
        folder = default_folder(name)
        if not (folder / CONFIG).is_file():
            raise ModelLoadError(
                f"{name} has no committed default weights yet ({folder} is missing): train them with "
                f"`streamrt train {name}` (it writes {folder}), or pass --model DIR with a folder written by it"
            )
        return folder
    folder = Path(model)
    if not folder.is_dir():
        raise ModelLoadError(
            f"--model {model}: no such folder; pass a folder written by `streamrt train {name} --out DIR`"
        )
    return folder


def save_folder(
    folder: Path, pipeline: str, config: dict[str, Any], modules: dict[str, nn.Module], *, dtype=torch.float16
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            v = value.detach().cpu()
            tensors[f"{prefix}.{key}"] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    save_file(tensors, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps({"pipeline": pipeline, **config}, indent=2) + "\n")


def read_folder(folder: Path, pipeline: str) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """(config, {prefix: state dict}) of a folder written by ``save_folder`` for ``pipeline``."""
    from safetensors.torch import load_file

    cfg_path, w_path = folder / CONFIG, folder / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(
            f"{folder} is not a {pipeline} model folder (needs {CONFIG} and {WEIGHTS}); "
            f"write one with `streamrt train {pipeline} --out DIR`"
        )
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if config.get("pipeline") != pipeline:
        raise ModelLoadError(f"{folder} holds a {config.get('pipeline')!r} model, not {pipeline!r}")
    try:
        flat = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"cannot read {w_path}: {exc}") from exc
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        prefix, _, rest = key.partition(".")
        parts.setdefault(prefix, {})[rest] = value.float() if value.is_floating_point() else value
    return config, parts


def load_into(module: nn.Module, state: dict[str, torch.Tensor] | None, what: str, folder: Path) -> None:
    if state is None:
        raise ModelLoadError(f"{folder / WEIGHTS} has no {what} weights")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{what} weights in {folder} do not match its config: {exc}") from exc
