"""StreamingT2V on a published ModelScope text-to-video folder in the diffusers layout (``unet/`` UNet3DConditionModel,
``text_encoder/`` + ``tokenizer/`` CLIP, ``vae/`` the SD KL autoencoder): the base weights load by name.

StreamingT2V's own CAM/APM release uses its own layout, which is not converted here: on a bare ModelScope folder
CAM and APM start at their zero initialisation, i.e. every chunk is the base model's (conditioning inactive) until
CAM/APM weights are trained (``streamrt train streamingt2v``) or converted.
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamrt.errors import ModelLoadError

MODELSCOPE_SIZE = 256  # the published base model's resolution


class CLIPText:
    """CLIP text encoder: ``encode(list[str]) -> (B, 77, D)`` hidden states, padded to the tokenizer's length."""

    def __init__(self, folder: Path) -> None:
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        self.model = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()

    @property
    def tokens(self) -> int:
        return int(self.tokenizer.model_max_length)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            texts, padding="max_length", max_length=self.tokens, truncation=True, return_tensors="pt"
        ).input_ids
        return self.model(ids)[0].float()

    def eval(self) -> CLIPText:
        return self


class SDFrameVAE:
    """The SD KL autoencoder, frame by frame (as ModelScope decodes): latents are scaled by ``scaling_factor``."""

    def __init__(self, folder: Path) -> None:
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
        self.scale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((images.clamp(-1, 1) + 1) / 2).float()

    def eval(self) -> SDFrameVAE:
        return self


def build_modelscope_engine(folder: Path):
    from diffusers import UNet3DConditionModel

    from pipelines.streamingt2v.model import StreamingT2VConfig, StreamingT2VModel
    from pipelines.streamingt2v.pipeline import StreamingT2V

    try:
        unet = UNet3DConditionModel.from_pretrained(folder, subfolder="unet")
        text = CLIPText(folder)
        vae = SDFrameVAE(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder} is not a complete ModelScope text-to-video folder: {exc}") from exc
    model = StreamingT2VModel(unet, StreamingT2VConfig(text_tokens=text.tokens))
    hw = MODELSCOPE_SIZE // vae.scale
    return StreamingT2V(model, text, vae, (hw, hw), scale=vae.scale)
