"""ReferenceNet injection (AnimateAnyone's "reference-only" write/read, as RAIN uses it), with cached K/V.

Write: the ReferenceNet runs once on the reference latent; at every spatial transformer block the input of its
self-attention (the ``norm1`` output) is recorded. Read: the denoiser's self-attention at the same block attends to
``[its own tokens, the reference tokens]``. AnimateAnyone concatenates the reference hidden states to the keys'
input on every call; the keys and values of the reference part are the denoiser's ``to_k`` / ``to_v`` of those
hidden states, which do not change while the reference stays, so they are projected ONCE and cached
(``ReferenceCache``): a denoising pass then only projects its own tokens. The result is the same attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def spatial_self_attentions(unet: nn.Module) -> dict[str, nn.Module]:
    """name -> ``attn1`` of every spatial transformer block (motion modules' temporal attentions excluded)."""
    return {
        name: module
        for name, module in unet.named_modules()
        if name.endswith(".attn1") and ".attentions." in name
    }


@dataclass(frozen=True)
class ReferenceCache:
    """Everything the denoiser needs from one reference image (per batch row of references).

    ``kv[name] = (k, v)``, each (R, L_ref, inner) for the denoiser's block ``name``; ``image_embeds`` (R, 1, D)
    are the cross-attention tokens (RAIN: CLIP image embeddings of the reference)."""

    kv: dict[str, tuple[torch.Tensor, torch.Tensor]]
    image_embeds: torch.Tensor

    @property
    def references(self) -> int:
        return int(self.image_embeds.shape[0])

    def detached(self) -> ReferenceCache:
        return ReferenceCache(
            {k: (a.detach(), b.detach()) for k, (a, b) in self.kv.items()}, self.image_embeds.detach()
        )


def _attention(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of (N, Lq, inner) queries over (N, Lk, inner) keys/values, then the output projection."""
    n, lq, inner = q.shape
    heads = attn.heads
    d = inner // heads

    def split(x: torch.Tensor) -> torch.Tensor:  # (N, L, inner) -> (N, heads, L, d)
        return x.view(n, -1, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    out = out.transpose(1, 2).reshape(n, lq, inner)
    return attn.to_out[1](attn.to_out[0](out))


class _Recorder:
    """ReferenceNet side (write): records the self-attention input, then attends as usual."""

    def __init__(self, bank: dict[str, torch.Tensor], name: str) -> None:
        self.bank, self.name = bank, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        self.bank[self.name] = hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        return _attention(attn, q, k, v)


class ReferenceState:
    """The reference the denoiser currently reads (``None``: plain self-attention, no reference)."""

    def __init__(self) -> None:
        self.cache: ReferenceCache | None = None


class _Reader:
    """Denoiser side (read): keys/values = [own tokens | cached reference tokens]."""

    def __init__(self, state: ReferenceState, name: str) -> None:
        self.state, self.name = state, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        cache = self.state.cache
        if cache is not None:
            k_ref, v_ref = cache.kv[self.name]
            rows, refs = hidden_states.shape[0], k_ref.shape[0]
            if rows != refs:  # every frame of a clip reads its clip's reference: (R, L, C) -> (R*F, L, C)
                k_ref = k_ref.repeat_interleave(rows // refs, dim=0)
                v_ref = v_ref.repeat_interleave(rows // refs, dim=0)
            k, v = torch.cat([k, k_ref], dim=1), torch.cat([v, v_ref], dim=1)
        return _attention(attn, q, k, v)


class ReferenceAttention:
    """Wires a ReferenceNet to a denoiser: recorders on the ReferenceNet, readers on the denoiser (paired by the
    block's name: both UNets have the same 2D blocks), and ``build_cache`` to turn a recorded bank into K/V."""

    def __init__(self, reference_unet: nn.Module, denoising_unet: nn.Module) -> None:
        self.bank: dict[str, torch.Tensor] = {}
        self.state = ReferenceState()
        ref = spatial_self_attentions(reference_unet)
        den = spatial_self_attentions(denoising_unet)
        if set(ref) != set(den):
            raise ValueError(
                "ReferenceNet and denoiser have different spatial attention blocks: "
                f"{sorted(set(ref) ^ set(den))}"
            )
        self.targets = den
        for name, attn in ref.items():
            attn.set_processor(_Recorder(self.bank, name))
        for name, attn in den.items():
            attn.set_processor(_Reader(self.state, name))

    def build_cache(self, image_embeds: torch.Tensor) -> ReferenceCache:
        """K/V of the recorded bank through each paired denoiser block's projections (after a ReferenceNet run)."""
        missing = set(self.targets) - set(self.bank)
        if missing:
            raise RuntimeError(f"the ReferenceNet did not record blocks {sorted(missing)}: run it first")
        kv = {
            name: (attn.to_k(self.bank[name]), attn.to_v(self.bank[name]))
            for name, attn in self.targets.items()
        }
        self.bank.clear()
        return ReferenceCache(kv, image_embeds)
