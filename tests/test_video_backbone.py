"""The shared video backbone: flow levels with shift, RoPE, masks, and the Wan-layout DiT (numerically equal to
diffusers' WanTransformer3DModel once the official parameter names are mapped)."""

from __future__ import annotations

import pytest
import torch

from streamrt.video.attention import Rope, block_causal_mask, window_mask
from streamrt.video.dit import AttentionPlan, DiTConfig, VideoDiT
from streamrt.video.flow import BufferedFlowLevels, FlowLevels, KeyedFreshNoise, shift_time, shifted_sigmas
from streamrt.window import Slot

torch.set_num_threads(1)


def test_shift_matches_the_reference_levels():
    sig = shifted_sigmas([1000, 800, 600, 400, 200], 5.0)
    assert [round(s * 1000) for s in sig] == [1000, 952, 882, 769, 556]
    assert shift_time(0.0, 5.0) == 0.0 and shift_time(1.0, 3.0) == 1.0
    sf = shifted_sigmas([1000, 750, 500, 250], 5.0)
    assert all(a > b for a, b in zip(sf, sf[1:], strict=False))


def test_flow_levels_roundtrip():
    lv = FlowLevels([1.0, 0.7, 0.3])
    x0, n = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    xt = lv.add_noise(x0, n, 1)
    v = n - x0
    assert torch.allclose(FlowLevels.x0_from_velocity(xt, v, torch.tensor([0.7, 0.7])), x0, atol=1e-6)
    with pytest.raises(ValueError):
        FlowLevels([0.3, 0.7])


def test_buffered_flow_formula_and_euler_equivalence():
    """X_tau = tau X1 + (1 - (1 - sigma_min) tau) X0, and re-noising the predicted X1 with the predicted X0 at
    tau + dtau is exactly the Euler step X + u dtau."""
    lv = BufferedFlowLevels(num_chunks=4, micro_steps=2, sigma_min=0.01)
    assert lv.num_levels == 8 and lv.dtau == pytest.approx(1 / 8)
    x1, x0 = torch.randn(3, 5), torch.randn(3, 5)
    tau = 0.375
    xt = lv.mix(x1, x0, tau)
    assert torch.allclose(xt, tau * x1 + (1 - 0.99 * tau) * x0)
    u = torch.randn(3, 5)
    x1h, x0h = lv.split(xt, u, torch.full((3,), tau))
    assert torch.allclose(lv.add_noise(x1h, x0h, 4), xt + u * (4 / 8 - tau), atol=1e-6)


def test_keyed_fresh_noise_is_fresh_and_keyed():
    src = KeyedFreshNoise(3)
    slot = Slot(latent=torch.zeros(2, 4), payload=[0, 0], state={"index": torch.tensor(7)})
    a = src.sample_for(slot, 1, torch.zeros(2, 4))
    b = src.sample_for(slot, 2, torch.zeros(2, 4))
    assert not torch.equal(a, b), "each re-noising draws new noise"
    assert torch.equal(a, src.sample_for(slot, 1, torch.zeros(2, 4))), "keyed by (seed, slot, level)"
    src.reseed(4)
    assert not torch.equal(a, src.sample_for(slot, 1, torch.zeros(2, 4)))


def test_rope_is_relative():
    """Rotated q.k depends only on the frame distance: the property that lets the sink be re-rotated anywhere."""
    rope = Rope(12)
    q, k = torch.randn(1, 4, 1, 12), torch.randn(1, 4, 1, 12)

    def score(pq, pk):
        qr = rope.rotate(q, torch.tensor([pq]), 2, 2)
        kr = rope.rotate(k, torch.tensor([pk]), 2, 2)
        return (qr * kr).sum(-1)

    assert torch.allclose(score(5, 3), score(1005, 1003), atol=1e-4)
    assert not torch.allclose(score(5, 3), score(5, 4), atol=1e-4)


def test_block_causal_mask():
    m = block_causal_mask(torch.tensor([0, 0, 1, 1, 2]), tokens_per_frame=2)
    assert m.shape == (10, 10)
    assert m[0, 1] and m[1, 0] and m[2, 0] and m[0, 2]  # frames 0 and 1 share block 0
    assert not m[0, 4] and m[4, 0]  # block 0 does not see block 1; block 1 sees block 0
    assert not m[5, 8] and m[9, 0]


def test_window_mask_shifts_every_other_layer():
    grid = (2, 4, 4)
    plain, shifted = window_mask(grid, (2, 2, 2), False), window_mask(grid, (2, 2, 2), True)
    assert plain.sum(1).eq(8).all(), "every token has a full 2x2x2 window without shift"
    assert not torch.equal(plain, shifted)
    # token (f=0, y=1, x=1) and (f=0, y=2, x=2) are in different windows unshifted, the same window shifted
    a, b = 0 * 16 + 1 * 4 + 1, 0 * 16 + 2 * 4 + 2
    assert not plain[a, b] and shifted[a, b]
    assert torch.equal(plain, plain.T) and torch.equal(shifted, shifted.T)


def _official_from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers WanTransformer3DModel names -> the official Wan2.1 names (written out by hand, independently of the
    model code, from the official layout)."""
    renames = [
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
        (".norm2.", ".norm3."),
        (".ffn.net.0.proj.", ".ffn.0."),
        (".ffn.net.2.", ".ffn.2."),
        ("proj_out.", "head.head."),
    ]
    out = {}
    for k, v in state.items():
        for a, b in renames:
            k = k.replace(a, b)
        if k == "scale_shift_table":
            k = "head.modulation"
        elif k.endswith(".scale_shift_table"):
            k = k.replace(".scale_shift_table", ".modulation")
        out[k] = v
    return out


def test_dit_equals_diffusers_wan():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    ref = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6,
    ).eval()  # fmt: skip
    with (
        torch.no_grad()
    ):  # non-trivial modulation tables (diffusers initialises them randomly too, but make sure)
        for name, p in ref.named_parameters():
            if "scale_shift_table" in name or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    cfg = DiTConfig(
        in_dim=4, out_dim=4, dim=24, ffn_dim=48, num_heads=2, num_layers=2, text_dim=16, freq_dim=32
    )
    ours = VideoDiT(cfg).eval()
    ours.load_state_dict(_official_from_diffusers(ref.state_dict()), strict=True)
    from pipelines.rolling_forcing.wan import diffusers_to_official

    assert diffusers_to_official(ref.state_dict()).keys() == _official_from_diffusers(ref.state_dict()).keys()
    x = torch.randn(1, 4, 3, 4, 6)
    ctx = torch.randn(1, 5, 16)
    t = torch.tensor([637.0])
    with torch.no_grad():
        expected = ref(x, t, ctx, return_dict=False)[0]
        got = ours(x, t, ctx, plan=AttentionPlan())
        per_frame = ours(x, t[:, None].expand(1, 3), ctx)
    assert got.shape == expected.shape == x.shape
    assert torch.allclose(got, expected, atol=2e-4), (got - expected).abs().max()
    assert torch.allclose(per_frame, got, atol=1e-5)


def test_per_frame_time_embedding_is_per_frame():
    torch.manual_seed(1)
    cfg = DiTConfig(
        in_dim=4, out_dim=4, dim=24, ffn_dim=48, num_heads=2, num_layers=1, text_dim=8, freq_dim=16
    )
    m = VideoDiT(cfg).eval()
    x, ctx = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 3, 8)

    class Isolated(
        AttentionPlan
    ):  # frames do not see each other: only the time embedding couples t to a frame
        def mask(self, layer, grid):
            f = torch.arange(grid.frames).repeat_interleave(grid.h * grid.w)
            return f[:, None] == f[None, :]

    with torch.no_grad():
        a = m(x, torch.tensor([[100.0, 900.0]]), ctx, plan=Isolated())
        b = m(x, torch.tensor([[100.0, 300.0]]), ctx, plan=Isolated())
    assert torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-6), "frame 0 keeps its own time"
    assert not torch.allclose(a[:, :, 1], b[:, :, 1], atol=1e-4)
