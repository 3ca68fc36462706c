"""Architecture of the embedded tiny StreamDiffusion model set (diffusers/transformers configs).

Sized for the speed budget on a 2-core CPU (float32, 256x256, 2 LCM steps, >= 15 fps for the whole frame):
the UNet forward at batch 2 on 32x32 latents takes about 26 ms and the VAE encode+decode of one frame about 19 ms.
"""

from __future__ import annotations

from typing import Any

IMAGE_SIZE = 256
LATENT_SIZE = IMAGE_SIZE // 8
TEXT_HIDDEN = 128  # CLIP hidden size == UNet cross_attention_dim
MAX_TOKENS = 32  # tokenizer model_max_length == text encoder max_position_embeddings


def unet_config() -> dict[str, Any]:
    return {
        "sample_size": LATENT_SIZE,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (32, 64, 128),
        "layers_per_block": 1,
        # attention only at 8x8 (and the mid block): attention at 16x16 doubled the forward time
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "cross_attention_dim": TEXT_HIDDEN,
        "attention_head_dim": 32,  # 4 heads at 128 channels
        "norm_num_groups": 16,
    }


def vae_config() -> dict[str, Any]:
    # 12 channels and no residual blocks at full resolution: 16 channels, or a block at 256x256, costs 30-70 ms
    return {
        "in_channels": 3,
        "out_channels": 3,
        "encoder_block_out_channels": (12, 12, 12, 12),
        "decoder_block_out_channels": (12, 12, 12, 12),
        "num_encoder_blocks": (0, 2, 2, 2),
        "num_decoder_blocks": (2, 2, 2, 0),
        "latent_channels": 4,
        "act_fn": "relu",
        "upsampling_scaling_factor": 2,
    }


def text_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TOKENS,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
    }


def scheduler_config(prediction_type: str = "v_prediction") -> dict[str, Any]:
    # Stable Diffusion's noise schedule, so t_index_list [32, 45] of 50 LCM steps means t = 359, 99 as upstream.
    # v-prediction (as SD 2.x): at t near 999 an epsilon model's x0 = (x - beta*eps)/alpha divides its error by
    # alpha ~ 0.07, which a tiny model cannot afford; x0 = alpha*x - beta*v does not amplify it.
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": prediction_type,
        "original_inference_steps": 50,
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }
