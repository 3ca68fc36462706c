"""The real-weights path of Rolling Forcing: Wan2.1's umT5 text encoder and causal 3D VAE from a diffusers Wan folder
(``text_encoder/``, ``tokenizer/``, ``vae/``, ``transformer/``), the transformer then overridden by the official Rolling
Forcing checkpoint (``--checkpoint``, official key layout).

- ``WanText``: umT5 hidden states of the prompt, cut to its real length and zero-padded to 512 tokens (as the official
  code and diffusers' WanPipeline do);
- ``WanStreamingDecoder``: the VAE decoder run latent frame by latent frame with its causal feature cache kept between
  chunks, so decoding block after block equals decoding the whole video at once (1 + 4 (n-1) frames for n latent
  frames: the first latent frame is one picture, every later one four);
- ``diffusers_to_official``: diffusers' Wan transformer names -> the official names ``VideoDiT`` uses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamrt.errors import ModelLoadError
from streamrt.video.dit import DiTConfig

TEXT_LEN = 512

_RENAMES = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".o."),
    (".norm2.", ".norm3."),  # diffusers' norm2 is the affine norm before cross-attention: the official norm3
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    ("proj_out.", "head.head."),
)


def diffusers_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for a, b in _RENAMES:
            key = key.replace(a, b)
        if key == "scale_shift_table":
            key = "head.modulation"
        elif key.endswith(".scale_shift_table"):
            key = key.replace(".scale_shift_table", ".modulation")
        out[key] = value
    return out


def dit_config_from_diffusers(cfg: dict) -> DiTConfig:
    """A diffusers ``WanTransformer3DModel`` config -> ``DiTConfig``."""
    try:
        return DiTConfig(
            in_dim=cfg["in_channels"], out_dim=cfg["out_channels"],
            dim=cfg["num_attention_heads"] * cfg["attention_head_dim"], ffn_dim=cfg["ffn_dim"],
            num_heads=cfg["num_attention_heads"], num_layers=cfg["num_layers"], text_dim=cfg["text_dim"],
            freq_dim=cfg["freq_dim"], patch_size=tuple(cfg["patch_size"]), eps=cfg.get("eps", 1e-6),
            cross_attn_norm=cfg.get("cross_attn_norm", True),
        )  # fmt: skip
    except KeyError as exc:
        raise ModelLoadError(
            f"the transformer config lacks {exc}; is this a Wan2.1 diffusers folder?"
        ) from exc


class WanText:
    """umT5 prompt encoder (``encode(list[str]) -> (B, 512, 4096)``)."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer, UMT5EncoderModel

        self.tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
        self.model = UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder").eval()

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            texts, padding="max_length", max_length=TEXT_LEN, truncation=True, add_special_tokens=True,
            return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        lens = tok.attention_mask.gt(0).sum(dim=1)
        hidden = self.model(tok.input_ids, tok.attention_mask).last_hidden_state.float()
        out = torch.zeros_like(hidden)
        for i, n in enumerate(lens.tolist()):
            out[i, :n] = hidden[i, :n]  # the official model sees zeros beyond the prompt's tokens
        return out

    def eval(self) -> WanText:
        return self


class WanStreamingDecoder:
    """Streaming decode with AutoencoderKLWan's causal cache carried across chunks."""

    def __init__(self, vae) -> None:
        self.vae = vae.eval()
        z = vae.config.z_dim
        self.mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1)
        self.std = torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1)
        self.reset()

    @property
    def scale(self) -> int:
        return int(self.vae.config.scale_factor_spatial or 8)

    def reset(self) -> None:
        self.cache: list = [None] * self.vae._cached_conv_counts["decoder"]
        self.first = True

    def eval(self) -> WanStreamingDecoder:
        return self

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) model latents (the next n latent frames of the stream) -> (frames, 3, H, W) in [0, 1]."""
        std, mean = self.std.to(latents.device), self.mean.to(latents.device)
        z = latents.transpose(0, 1)[None] * std + mean  # the pipeline's de-normalisation
        x = self.vae.post_quant_conv(z)
        outs = []
        for i in range(x.shape[2]):
            outs.append(
                self.vae.decoder(
                    x[:, :, i : i + 1], feat_cache=self.cache, feat_idx=[0], first_chunk=self.first
                )
            )
            self.first = False
        out = torch.cat(outs, 2)
        if self.vae.config.patch_size is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=self.vae.config.patch_size)
        return ((out.clamp(-1, 1) + 1) / 2)[0].transpose(0, 1)
