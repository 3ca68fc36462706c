"""Loading AP-BWE weights: the official checkpoints (torch.save with the key ``generator``), safetensors files, and
the embedded default (``assets/ap-bwe-8k-16k``: fp16 safetensors + config.json).

Official files are read with ``torch.load(weights_only=True)``: no pickle code runs. The parameter names are the
official ones, so a state dict loads into ``APBWE`` as it is. The model size is read from the tensor shapes (channels,
blocks, FFT size); official files say nothing about sample rates, so the target rate comes from the ``target_rate``
parameter. Files written by this project carry the rates (config.json next to the weights, or safetensors metadata)
and a mismatch is an error that names the fix.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

from pipelines.ap_bwe.model import APBWE, APBWEConfig
from streamrt.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "assets" / "ap-bwe-8k-16k"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_BLOCK = re.compile(r"^convnext_mag\.(\d+)\.dwconv\.weight$")
_REQUIRED = (
    "conv_pre_mag.weight",
    "conv_pre_pha.weight",
    "linear_post_mag.weight",
    "linear_post_pha_r.weight",
)


def config_from_state_dict(state: dict[str, torch.Tensor], **rates: int | None) -> APBWEConfig:
    """Read the model's sizes from its tensors (official layout)."""
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        some = ", ".join(sorted(state)[:5]) or "none"
        raise ModelLoadError(
            f"not an AP-BWE generator state dict: missing {', '.join(missing)} (found keys such as {some}); "
            "give the official generator checkpoint (g_XXXXXXXX, key 'generator') or a safetensors file of it"
        )
    pre = state["conv_pre_mag.weight"]  # (C, bins, k)
    layers = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    return APBWEConfig(
        channels=int(pre.shape[0]),
        layers=layers,
        kernel=int(pre.shape[2]),
        n_fft=2 * (int(pre.shape[1]) - 1),
        **{k: v for k, v in rates.items() if v is not None},
    )


def _rates_from(meta: dict[str, str] | None) -> dict[str, int | None]:
    meta = meta or {}
    out: dict[str, int | None] = {}
    for key in ("sample_rate", "narrowband_rate"):
        out[key] = int(meta[key]) if meta.get(key) not in (None, "", "None") else None
    return out


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """Tensors of a checkpoint file and, for safetensors, its metadata."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"checkpoint {path} does not exist (give the path of a .pt/.ckpt or .safetensors file)"
        )
    with path.open("rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte header length, then the JSON header; torch.save files are zip archives ("PK")
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        except Exception as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc
        return state, meta
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {path} as a weights-only torch checkpoint ({type(exc).__name__}: {exc}); "
            "AP-BWE takes the official generator file (torch.save with key 'generator') or safetensors"
        ) from exc
    if isinstance(obj, dict) and "generator" in obj and isinstance(obj["generator"], dict):
        obj = obj["generator"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(
            f"{path} holds no generator state dict (expected a dict with key 'generator', as the official "
            "g_XXXXXXXX files, or a plain state dict)"
        )
    return obj, None


def build(state: dict[str, torch.Tensor], config: APBWEConfig) -> APBWE:
    model = APBWE(config)
    state = {k.removeprefix("module."): v.to(torch.float32) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"the checkpoint does not fit the AP-BWE layout: {exc}") from exc
    return model.eval()


def load_checkpoint(path: str | Path) -> APBWE:
    """An official (or project) checkpoint file -> the generator module, float32, eval mode."""
    state, meta = read_state_dict(path)
    rates = _rates_from(meta)
    sidecar = Path(path).with_name(CONFIG_NAME)
    if meta is None or not any(rates.values()):
        if sidecar.is_file() and Path(path).suffix == ".safetensors":
            rates = _rates_from({k: str(v) for k, v in json.loads(sidecar.read_text()).items()})
    config = config_from_state_dict(state, **rates)
    log.info("AP-BWE checkpoint %s: %s", path, config)
    return build(state, config)


def load_folder(folder: str | Path) -> APBWE:
    """A folder with model.safetensors and config.json (the layout of the embedded default)."""
    folder = Path(folder)
    weights, cfg_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not cfg_path.is_file():
        raise ModelLoadError(
            f"{folder} is not an AP-BWE model folder: it needs {WEIGHTS_NAME} and {CONFIG_NAME} "
            "(or give a single checkpoint file with --checkpoint)"
        )
    config = APBWEConfig.from_dict(json.loads(cfg_path.read_text()))
    state, _ = read_state_dict(weights)
    found = config_from_state_dict(
        state, sample_rate=config.sample_rate, narrowband_rate=config.narrowband_rate
    )
    if found != config:
        raise ModelLoadError(f"{cfg_path} says {config} but the weights are {found}")
    return build(state, config)


def load_default() -> APBWE:
    if not (DEFAULT_DIR / WEIGHTS_NAME).is_file():
        raise ModelLoadError(
            f"the embedded AP-BWE default is missing ({DEFAULT_DIR / WEIGHTS_NAME}); train it with "
            "`streamrt train ap-bwe` or give --checkpoint"
        )
    return load_folder(DEFAULT_DIR)


def save_folder(model: APBWE, folder: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write model.safetensors (official names, ``dtype``) and config.json into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    meta = {k: str(v) for k, v in cfg.items()}
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata=meta)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return folder / WEIGHTS_NAME
