"""Rolling Forcing's real-weights path on tiny random Wan components in the diffusers layout (umT5, the causal VAE,
the transformer), with the official checkpoint layout loaded over the transformer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from pipelines.rolling_forcing import RollingForcingGenerator
from pipelines.rolling_forcing.wan import WanStreamingDecoder, diffusers_to_official

TB = Fraction(1, 30)


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory) -> Path:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("wan")
    WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    ).save_pretrained(root / "transformer")  # fmt: skip
    AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
        latents_mean=[0.1, 0.2, -0.1, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0],
    ).save_pretrained(root / "vae")  # fmt: skip
    words = ["<pad>", "</s>", "<unk>", "a", "red", "circle", "moving", "left", "blue", "square"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(root / "tokenizer")
    cfg = UMT5Config(
        vocab_size=len(words),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    UMT5EncoderModel(cfg).save_pretrained(root / "text_encoder")
    return root


def test_wan_folder_streams(wan_folder):
    gen = RollingForcingGenerator.load(model=str(wan_folder))
    gen.prepare({"prompt": "a red circle moving left", "width": 16, "height": 16})
    frames = [gen.pull(i, TB)[0] for i in range(12)]
    assert frames[0].data.shape == (16, 16, 3)
    # the tiny VAE's temporal factor is 2: block 0 (3 latent frames) = 1 + 2 + 2 pictures, later blocks 6
    assert gen.decoded is not None and gen.decoded.shape[0] == 6


def test_text_is_zero_padded_to_512(wan_folder):
    gen = RollingForcingGenerator.load(model=str(wan_folder))
    ctx = gen.encode_prompt("a blue square")
    assert ctx.shape == (1, 512, 16)
    assert ctx[0, :4].abs().sum() > 0 and ctx[0, 4:].abs().sum() == 0, "3 words + </s>, zeros after"


def test_official_checkpoint_over_a_wan_folder(wan_folder, tmp_path):
    from safetensors.torch import load_file

    state = diffusers_to_official(
        load_file(str(wan_folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    )
    official = {f"model.{k}": v + 1 for k, v in state.items()}  # different weights, official layout
    torch.save({"generator_ema": official}, tmp_path / "rolling_forcing_dmd.pt")
    gen = RollingForcingGenerator.load(
        model=str(wan_folder), checkpoint=str(tmp_path / "rolling_forcing_dmd.pt")
    )
    loaded = gen.engine.dit.state_dict()
    assert all(torch.equal(loaded[k.removeprefix("model.")], v) for k, v in official.items())


def test_streaming_vae_decode_equals_whole_video_decode(wan_folder):
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(wan_folder, subfolder="vae")
    dec = WanStreamingDecoder(vae)
    lat = torch.randn(7, 4, 4, 4)
    with torch.no_grad():
        whole = vae.decode(lat.transpose(0, 1)[None] * dec.std + dec.mean).sample
        parts = torch.cat([dec.decode(lat[:3]), dec.decode(lat[3:6]), dec.decode(lat[6:])])
    expected = ((whole.clamp(-1, 1) + 1) / 2)[0].transpose(0, 1)
    assert parts.shape == expected.shape and torch.allclose(parts, expected, atol=1e-6)
    dec.reset()
    with torch.no_grad():
        assert torch.allclose(dec.decode(lat[:3]), expected[:5], atol=1e-6), (
            "reset starts a new causal stream"
        )
