"""Tiny random diffusers components, built inside the tests (as diffusers' own tests do).

The StreamDiffusion pipeline is tested on these independently of the default weights; they are written with
``save_pretrained`` so that the folder loader is exercised too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipelines.streamdiffusion.train import bytes_to_unicode


def write_tokenizer(folder: Path) -> None:
    """A character-level CLIP BPE tokenizer (no merges) that handles any text."""
    from transformers import CLIPTokenizer

    chars = bytes_to_unicode()
    vocab = {
        t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    tok.save_pretrained(str(folder))


def make_tiny_sd(folder: Path, *, seed: int = 0, vae: str = "kl") -> Path:
    """Write a random tiny SD model (UNet, VAE, CLIP text encoder, tokenizer, LCM scheduler) to ``folder``.

    The default VAE is a tiny AutoencoderKL: a random 4-channel AutoencoderTiny decodes every latent to nearly the
    same picture, which would let output comparisons pass vacuously. ``vae="tiny"`` exercises the TAESD path.
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    if vae == "tiny":
        vae_model = AutoencoderTiny(
            encoder_block_out_channels=(4, 4, 4, 4),
            decoder_block_out_channels=(4, 4, 4, 4),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        )
    else:
        vae_model = AutoencoderKL(
            block_out_channels=(4, 4, 4, 4),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=2,
            layers_per_block=1,
        )
    write_tokenizer(folder / "tokenizer")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    unet.save_pretrained(str(folder / "unet"))
    vae_model.save_pretrained(str(folder / "vae"))
    text_encoder.save_pretrained(str(folder / "text_encoder"))
    scheduler.save_pretrained(str(folder / "scheduler"))
    return folder
