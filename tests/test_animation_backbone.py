"""The shared animation backbone: the motion UNet with per-frame timesteps, ReferenceNet injection with cached K/V,
the zero-initialised guider, RAIN's published key layout."""

from __future__ import annotations

import math

import pytest
import torch
from _animation import SIZE, tiny_backbone, tiny_config

from streamrt.animation.backbone import AnimationBackbone, group_schedule
from streamrt.animation.checkpoint import load_rain_files
from streamrt.animation.reference import spatial_self_attentions
from streamrt.animation.unet import denoising_forward, reference_forward
from streamrt.errors import ModelLoadError

torch.set_num_threads(1)
F = 16  # frames per clip


def _inputs(seed: int = 0, frames: int = F):
    g = torch.Generator().manual_seed(seed)
    h = SIZE // 8
    return (
        torch.randn(frames, 4, h, h, generator=g),
        torch.rand(frames, 3, SIZE, SIZE, generator=g),
        torch.rand(1, 3, SIZE, SIZE, generator=g),
    )


def test_group_schedule_is_raines_levels() -> None:
    s = group_schedule()
    assert s.sub_timesteps.tolist() == [999, 749, 499, 249]


def test_forward_with_one_timestep_equals_diffusers_unet_motion_model() -> None:
    """Our per-frame forward walks diffusers' blocks: with one timestep for all frames (and no reference, no
    condition) it is diffusers' own UNetMotionModel.forward."""
    b = tiny_backbone()
    x, _, _ = _inputs()
    emb = torch.randn(1, 1, b.cfg.unet.cross_attention_dim)
    t = torch.full((F,), 499)
    ours = denoising_forward(b.denoising_unet, x, t, emb.expand(F, -1, -1), F)
    # diffusers takes (B, C, F, h, w), returns the same layout, and wants the text tokens once per frame
    theirs = b.denoising_unet(x.permute(1, 0, 2, 3)[None], torch.tensor([499]), emb.expand(F, -1, -1)).sample
    theirs = theirs[0].permute(1, 0, 2, 3)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_per_frame_timesteps_reach_each_frame() -> None:
    b = tiny_backbone()
    x, cond, ref = _inputs()
    cache = b.encode_reference(ref)
    feats = b.guide(cond)
    t = torch.tensor([249] * 4 + [499] * 4 + [749] * 4 + [999] * 4)
    base = b.predict(x, t, feats, cache, F)
    t2 = t.clone()
    t2[0] = 999
    changed = b.predict(x, t2, feats, cache, F)
    assert not torch.allclose(base[0], changed[0]), "frame 0's timestep does not reach frame 0"


def test_temporal_attention_spans_all_16_frames_across_levels() -> None:
    b = tiny_backbone()
    x, cond, ref = _inputs()
    cache = b.encode_reference(ref)
    feats = b.guide(cond)
    t = torch.tensor([249] * 4 + [499] * 4 + [749] * 4 + [999] * 4)
    base = b.predict(x, t, feats, cache, F)
    x2 = x.clone()
    x2[0] += 1.0  # the oldest frame (t = 249) changes ...
    changed = b.predict(x2, t, feats, cache, F)
    assert not torch.allclose(base[15], changed[15], atol=1e-6), "... and the newest (t = 999) must see it"
    # without the motion modules, frames are independent: the mechanism above is temporal attention
    for name, p in b.denoising_unet.named_parameters():
        if ".motion_modules." in name and "proj_out" in name:
            p.zero_()
    base = b.predict(x, t, feats, cache, F)
    changed = b.predict(x2, t, feats, cache, F)
    assert torch.allclose(base[15], changed[15], atol=1e-6)


def test_zero_initialised_guider_leaves_the_denoiser_unchanged() -> None:
    b = tiny_backbone(live_guider=False)
    x, cond, ref = _inputs()
    assert b.guide(cond).abs().max() == 0
    cache = b.encode_reference(ref)
    t = torch.full((F,), 749)
    with_guider = b.predict(x, t, b.guide(cond), cache, F)
    b.reference_attention.state.cache = cache
    without = denoising_forward(b.denoising_unet, x, t, cache.image_embeds.expand(F, -1, -1), F, None)
    b.reference_attention.state.cache = None
    assert torch.allclose(with_guider, without, atol=1e-6)


def test_cached_reference_kv_equals_animateanyone_concatenation() -> None:
    """AnimateAnyone's read: the denoiser's self-attention keys/values come from [own hidden | reference hidden];
    ours projects the reference part once (the cache). Same attention, so the same output."""
    b = tiny_backbone()
    x, cond, ref = _inputs()
    t = torch.tensor([249] * 4 + [499] * 4 + [749] * 4 + [999] * 4)
    cache = b.encode_reference(ref)
    ours = b.predict(x, t, b.guide(cond), cache, F)

    # the reference hidden states, recorded by a fresh ReferenceNet pass (the bank)
    reference_forward(b.reference_unet, b.codec.encode(ref), cache.image_embeds)
    bank = dict(b.reference_attention.bank)
    b.reference_attention.bank.clear()
    from diffusers.models.attention_processor import AttnProcessor2_0

    class Concat:
        def __init__(self, hidden: torch.Tensor) -> None:
            self.hidden, self.plain = hidden, AttnProcessor2_0()

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
            ref_h = self.hidden.expand(hidden_states.shape[0], -1, -1)
            return self.plain(attn, hidden_states, torch.cat([hidden_states, ref_h], dim=1))

    for name, attn in spatial_self_attentions(b.denoising_unet).items():
        attn.set_processor(Concat(bank[name]))
    emb = cache.image_embeds.expand(F, -1, -1)
    theirs = denoising_forward(b.denoising_unet, x, t, emb, F, b.guide(cond))
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_reference_changes_the_output() -> None:
    b = tiny_backbone()
    x, cond, ref = _inputs()
    t = torch.full((F,), 499)
    feats = b.guide(cond)
    a = b.predict(x, t, feats, b.encode_reference(ref), F)
    other = b.predict(x, t, feats, b.encode_reference(torch.rand(1, 3, SIZE, SIZE)), F)
    assert not torch.allclose(a, other)


def test_batched_clips_read_their_own_reference() -> None:
    b = tiny_backbone()
    x, cond, ref = _inputs()
    ref2 = torch.rand(1, 3, SIZE, SIZE)
    t = torch.full((F,), 499)
    feats = b.guide(cond)
    single = b.predict(x, t, feats, b.encode_reference(ref2), F)
    both = b.predict(
        torch.cat([x, x]),
        torch.cat([t, t]),
        torch.cat([feats, feats]),
        b.encode_reference(torch.cat([ref, ref2])),
        F,
    )
    assert torch.allclose(both[F:], single, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- RAIN layout
def _sinusoid(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding table (1, length, dim)."""
    pos = torch.arange(length).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(pos * div)
    pe[0, :, 1::2] = torch.cos(pos * div)
    return pe


def _animatediff_motion_keys(prefix: str) -> list[str]:
    """The keys of one AnimateDiff VanillaTemporalModule as RAIN / AnimateAnyone save them (one block, 2 attns)."""
    tt = f"{prefix}.temporal_transformer"
    keys = [f"{tt}.norm.weight", f"{tt}.norm.bias", f"{tt}.proj_in.weight", f"{tt}.proj_in.bias"]
    blk = f"{tt}.transformer_blocks.0"
    for a in (0, 1):
        att = f"{blk}.attention_blocks.{a}"
        keys += [f"{att}.to_q.weight", f"{att}.to_k.weight", f"{att}.to_v.weight", f"{att}.to_out.0.weight",
                 f"{att}.to_out.0.bias", f"{att}.pos_encoder.pe", f"{blk}.norms.{a}.weight", f"{blk}.norms.{a}.bias"]  # fmt: skip
    keys += [f"{blk}.ff.net.0.proj.weight", f"{blk}.ff.net.0.proj.bias", f"{blk}.ff.net.2.weight",
             f"{blk}.ff.net.2.bias", f"{blk}.ff_norm.weight", f"{blk}.ff_norm.bias",
             f"{tt}.proj_out.weight", f"{tt}.proj_out.bias"]  # fmt: skip
    return keys


def _rain_checkpoint(b: AnimationBackbone, seed: int = 3) -> dict[str, dict[str, torch.Tensor]]:
    """A tiny checkpoint in RAIN's layout: the 2D parts under SD / AnimateAnyone names, the motion modules under
    AnimateDiff's (built from the names above, not from our model's), random values of the right shapes."""
    g = torch.Generator().manual_seed(seed)
    ours = b.denoising_unet.state_dict()
    motion_prefixes = sorted({k.split(".motion_modules.")[0] + ".motion_modules." + k.split(".motion_modules.")[1].split(".")[0]
                              for k in ours if ".motion_modules." in k})  # fmt: skip
    den: dict[str, torch.Tensor] = {}
    for k, v in ours.items():
        if ".motion_modules." not in k:
            den[k] = torch.randn(v.shape, generator=g)
    motion: dict[str, torch.Tensor] = {}
    for prefix in motion_prefixes:
        for k in _animatediff_motion_keys(prefix):
            if k.endswith("pos_encoder.pe"):
                dim = ours[f"{prefix}.proj_in.weight"].shape[0]
                motion[k] = _sinusoid(b.cfg.unet.motion_max_seq_length, dim)
                continue
            # shapes from the AnimateDiff module definition: all linears are (dim, dim) except the GEGLU FF
            dim = ours[f"{prefix}.proj_in.weight"].shape[0]
            ch = ours[f"{prefix}.norm.weight"].shape[0]
            shape = {
                "proj_in.weight": (dim, ch), "proj_in.bias": (dim,), "norm.weight": (ch,), "norm.bias": (ch,),
                "proj_out.weight": (ch, dim), "proj_out.bias": (ch,), "ff.net.0.proj.weight": (8 * dim, dim),
                "ff.net.0.proj.bias": (8 * dim,), "ff.net.2.weight": (dim, 4 * dim), "ff.net.2.bias": (dim,),
            }  # fmt: skip
            tail = k.split("temporal_transformer.")[1]
            short = tail.split("transformer_blocks.0.")[-1]
            if short in shape:
                s = shape[short]
            elif short.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")):
                s = (dim, dim)
            else:  # to_out bias, norms
                s = (dim,)
            motion[k] = torch.randn(s, generator=g)
    ref = {k: torch.randn(v.shape, generator=g) for k, v in b.reference_unet.state_dict().items()}
    guider = {k: torch.randn(v.shape, generator=g) for k, v in b.pose_guider.state_dict().items()}
    return {"denoising_unet": den, "motion_module": motion, "reference_unet": ref, "pose_guider": guider}


def test_rain_layout_loads_strictly(tmp_path) -> None:
    from safetensors.torch import save_file

    b = AnimationBackbone(tiny_config())
    ckpt = _rain_checkpoint(b)
    # SD / AnimateAnyone names the 2D parts as diffusers does: spot-check names a real checkpoint has
    for key in ("conv_in.weight", "time_embedding.linear_1.weight", "down_blocks.0.resnets.0.time_emb_proj.weight",
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", "mid_block.attentions.0.proj_in.weight",
                "up_blocks.0.upsamplers.0.conv.weight", "conv_norm_out.weight"):  # fmt: skip
        assert key in ckpt["denoising_unet"] and key in ckpt["reference_unet"]
    assert {"conv_in.weight", "blocks.0.weight", "conv_out.weight"} <= set(ckpt["pose_guider"])
    files = {}
    for name, state in ckpt.items():
        ext = ".pth" if name == "motion_module" else ".safetensors"
        path = tmp_path / f"{name}{ext}"
        if ext == ".pth":
            torch.save(state, path)
        else:
            save_file(state, str(path))
        files[name] = path
    load_rain_files(b, files)
    den = b.denoising_unet.state_dict()
    for k, v in ckpt["motion_module"].items():
        new = (k.replace(".temporal_transformer.", ".").replace(".attention_blocks.0.pos_encoder.pe", ".pos_embed.pe")
               .replace(".attention_blocks.0.", ".attn1.").replace(".attention_blocks.1.", ".attn2.")
               .replace(".norms.0.", ".norm1.").replace(".norms.1.", ".norm2.").replace(".ff_norm.", ".norm3."))  # fmt: skip
        if ".attention_blocks.1.pos_encoder" in k:
            continue
        assert torch.equal(den[new], v), k
    for k, v in ckpt["denoising_unet"].items():
        assert torch.equal(den[k], v), k
    for k, v in ckpt["reference_unet"].items():
        assert torch.equal(b.reference_unet.state_dict()[k], v), k
    # and it runs
    x, cond, ref = _inputs()
    out = b.predict(x, torch.full((F,), 999), b.guide(cond), b.encode_reference(ref), F)
    assert torch.isfinite(out).all()


def test_rain_layout_rejects_a_missing_key(tmp_path) -> None:
    b = AnimationBackbone(tiny_config())
    ckpt = _rain_checkpoint(b)
    from streamrt.animation.checkpoint import load_rain_weights

    parts = {**ckpt}
    parts["denoising_unet"] = {**ckpt["denoising_unet"], **parts.pop("motion_module")}
    parts["denoising_unet"].pop("down_blocks.0.resnets.0.conv1.weight")
    with pytest.raises(ModelLoadError, match="conv1"):
        load_rain_weights(b, parts)
    bad = {**ckpt["motion_module"]}
    key = next(k for k in bad if ".attention_blocks.1.pos_encoder.pe" in k)
    bad[key] = bad[key] + 1
    parts = {**ckpt, "denoising_unet": {**ckpt["denoising_unet"], **bad}}
    parts.pop("motion_module")
    with pytest.raises(ModelLoadError, match="positional"):
        load_rain_weights(b, parts)
