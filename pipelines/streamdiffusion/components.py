"""Loading the diffusers/transformers components of a Stable Diffusion model for StreamDiffusion.

Any SD 1.x / 2.x / turbo model in diffusers format works: a local folder (``--model PATH``), or a hub id when online.
The scheduler is always LCM (built from the model's scheduler config, which keeps its beta schedule). The VAE is the
model's own (AutoencoderKL or AutoencoderTiny), or a separate TAESD folder. LCM-LoRA weights are fused into the UNet
when given. Only safetensors (or ``torch.load(weights_only=True)``) is ever used to read weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from streamrt.errors import ModelLoadError, require

log = logging.getLogger(__name__)


def default_model_dir() -> Path:
    """The embedded default model (trained by the project, ``assets/streamdiffusion-tiny``)."""
    from assets import ASSETS_DIR

    return ASSETS_DIR / "streamdiffusion-tiny"


@dataclass
class SDComponents:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    source: str

    @property
    def vae_is_tiny(self) -> bool:
        return type(self.vae).__name__ == "AutoencoderTiny"

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        cfg = self.vae.config
        if hasattr(cfg, "block_out_channels") and not self.vae_is_tiny:
            return 2 ** (len(cfg.block_out_channels) - 1)
        return 8

    @property
    def default_size(self) -> int:
        size = self.unet.config.sample_size
        size = size[0] if isinstance(size, list | tuple) else size
        return int(size) * self.vae_scale_factor


def _vae_class(config: dict):
    import diffusers

    name = config.get("_class_name", "AutoencoderKL")
    if name not in ("AutoencoderKL", "AutoencoderTiny"):
        raise ModelLoadError(f"unsupported VAE class {name!r}; use AutoencoderKL or AutoencoderTiny (TAESD)")
    return getattr(diffusers, name)


def load_components(
    model: str | Path | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    vae: str | Path | None = None,
    lcm_lora: str | Path | None = None,
) -> SDComponents:
    """Load UNet, VAE, text encoder, tokenizer and an LCM scheduler from a diffusers folder or hub id."""
    from diffusers import LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    source = str(model) if model is not None else str(default_model_dir())
    local = Path(source).expanduser()
    is_local = local.is_dir()
    if model is None and not is_local:
        raise ModelLoadError(f"the embedded default model is missing at {local}; reinstall streamrt")
    if not is_local and (Path(source).suffix or source.startswith((".", "/", "~"))):
        raise ModelLoadError(f"model folder {source} does not exist")
    where = str(local) if is_local else source
    try:
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype)
        vae_src = str(vae) if vae is not None else where
        vae_sub = None if vae is not None else "vae"
        vae_cfg = _read_config(vae_src, vae_sub)
        vae_model = _vae_class(vae_cfg).from_pretrained(vae_src, subfolder=vae_sub, torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer")
        scheduler_cfg = _read_config(where, "scheduler")
        scheduler = LCMScheduler.from_config(scheduler_cfg)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        hint = "" if is_local else " (not a local folder; loading a hub id needs network access)"
        raise ModelLoadError(f"could not load model {source}{hint}: {exc}".splitlines()[0]) from exc
    if lcm_lora is not None:
        _fuse_lora(unet, Path(lcm_lora))
    for module in (unet, vae_model, text_encoder):
        # .to(dtype) too: transformers 5 keeps a checkpoint's stored fp16 unless asked, which is slow on a CPU.
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    log.info("loaded %s (unet %.1f M params)", source, sum(p.numel() for p in unet.parameters()) / 1e6)
    return SDComponents(unet, vae_model, text_encoder, tokenizer, scheduler, source)


def _read_config(where: str, subfolder: str | None) -> dict:
    name = "scheduler_config.json" if subfolder == "scheduler" else "config.json"
    local = Path(where) / (subfolder or "") / name
    if local.is_file():
        return json.loads(local.read_text())
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(where, name, subfolder=subfolder)
    return json.loads(Path(path).read_text())


def _fuse_lora(unet: torch.nn.Module, path: Path) -> None:
    """Fuse LCM-LoRA weights (a safetensors file or a folder holding one) into the UNet."""
    require("peft", "lora")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(f"no .safetensors file in LoRA folder {path}")
        path = files[0]
    if path.suffix != ".safetensors":
        raise ModelLoadError(f"LoRA weights must be a .safetensors file; got {path.name}")
    try:
        unet.load_lora_adapter(str(path), prefix="unet", adapter_name="lcm")
        unet.fuse_lora(lora_scale=1.0)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not apply LoRA {path}: {exc}") from exc
