"""Stream Batch equals sequential denoising.

For a fixed seed, frame i out of the staggered window (one UNet batch over all levels per call) must equal frame i
denoised alone through the same N steps with the same noise — for every guidance mode, any number of steps N and any
frame buffer size F (the reference implementation breaks for N > 1 with F > 1).

The sequential reference below is written from the formulas in shared/reference/streamdiffusion.md, independently
of streamrt's window and guidance code: one UNet call per frame per step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_sd import make_tiny_sd

from pipelines.streamdiffusion.components import load_components
from pipelines.streamdiffusion.pipeline import StreamDiffusion

T_INDEX = {1: [35], 2: [32, 45], 4: [0, 16, 32, 45]}
GAMMA, DELTA, SEED = 1.4, 0.9, 7


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> StreamDiffusion:
    folder = make_tiny_sd(tmp_path_factory.mktemp("sd") / "model")
    torch.set_num_threads(1)  # identical reductions for batched and single rows keep the comparison tight
    return StreamDiffusion(load_components(folder))


def sequential(
    engine: StreamDiffusion, latents: torch.Tensor, t_index: list[int], frames_per_slot: int, cfg: str
) -> torch.Tensor:
    """Each frame alone through its N steps (the reference's math, row by row)."""
    sch = engine.c.scheduler
    sch.set_timesteps(50)
    ts = [int(sch.timesteps[i]) for i in t_index]
    abar = [float(sch.alphas_cumprod[t]) for t in ts]
    alpha = [a**0.5 for a in abar]
    beta = [(1 - a) ** 0.5 for a in abar]
    scal = [sch.get_scalings_for_boundary_condition_discrete(t) for t in ts]
    c_skip = [float(s[0]) for s in scal]
    c_out = [float(s[1]) for s in scal]
    n = len(t_index)
    gen = torch.Generator().manual_seed(SEED)
    noise = torch.randn((n * frames_per_slot, *latents.shape[1:]), generator=gen).view(
        n, frames_per_slot, *latents.shape[1:]
    )
    cond = engine.encode_prompt("a prompt")
    uncond = engine.encode_prompt("")
    guided = GAMMA > 1 and cfg != "none"
    carry: dict[int, torch.Tensor] = {}  # N = 1 RCFG: stock left by the previous frame of the same row
    outs = []
    for i, z in enumerate(latents):
        f = i % frames_per_slot
        x = alpha[0] * z[None] + beta[0] * noise[0, f][None]
        stock = noise[0, f][None] if n > 1 else carry.get(f, torch.zeros_like(x))
        x0 = x
        for k in range(n):
            t = torch.tensor([ts[k]])
            with torch.no_grad():
                eps_c = engine.unet(x, t, encoder_hidden_states=cond).sample
                if guided and cfg == "full":
                    eps_u = engine.unet(x, t, encoder_hidden_states=uncond).sample
                elif guided and cfg in ("self", "initialize"):
                    if cfg == "initialize" and k == 0:
                        stock = engine.unet(x, t, encoder_hidden_states=uncond).sample
                    eps_u = DELTA * stock
            eps = eps_u + GAMMA * (eps_c - eps_u) if guided else eps_c
            x0 = c_out[k] * (x - beta[k] * eps) / alpha[k] + c_skip[k] * x
            if guided and cfg in ("self", "initialize"):
                a_next = alpha[k + 1] if k + 1 < n else 1.0
                b_next = beta[k + 1] if k + 1 < n else 1.0
                s = beta[k] * stock
                d = c_out[k] * (s - beta[k] * eps) / alpha[k] + c_skip[k] * s
                stock = noise[(k + 1) % n, f][None] + d * a_next / b_next
                if n == 1:
                    carry[f] = stock
            if k + 1 < n:
                x = alpha[k + 1] * x0 + beta[k + 1] * noise[k + 1, f][None]
        outs.append(x0[0])
    return torch.stack(outs)


def stream_batch(
    engine: StreamDiffusion, latents: torch.Tensor, t_index: list[int], frames_per_slot: int, cfg: str
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Through the window: returns outputs in emission order, their frame ids, and outputs-per-call counts."""
    engine.configure(
        t_index_list=t_index,
        frame_buffer_size=frames_per_slot,
        size=(64, 64),
        seed=SEED,
        cfg_type=cfg,
        guidance_scale=GAMMA,
        delta=DELTA,
        prompt="a prompt",
    )
    window = engine.window
    assert window is not None
    outs, ids, per_call = [], [], []
    with torch.no_grad():
        for start in range(0, len(latents), frames_per_slot):
            chunk = latents[start : start + frames_per_slot]
            slot = window.enter_clean(chunk, list(range(start, start + len(chunk))))
            done = window.step(slot)
            per_call.append(sum(s.rows for s in done))
            for s in done:
                outs.append(s.latent)
                ids.extend(s.payload)
        for s in window.drain():
            outs.append(s.latent)
            ids.extend(s.payload)
    return torch.cat(outs), ids, per_call


@pytest.mark.parametrize("cfg", ["none", "full", "self", "initialize"])
@pytest.mark.parametrize("frames_per_slot", [1, 2])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_stream_batch_equals_sequential(
    engine: StreamDiffusion, steps: int, frames_per_slot: int, cfg: str
) -> None:
    t_index = T_INDEX[steps]
    latents = torch.randn((3 * frames_per_slot + 1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    got, ids, per_call = stream_batch(engine, latents, t_index, frames_per_slot, cfg)
    want = sequential(engine, latents, t_index, frames_per_slot, cfg)
    assert ids == list(range(len(latents))), "every frame comes out once, in order"
    # The first output appears after exactly N-1 calls: no blank warm-up frames, no extra lag.
    assert per_call[: steps - 1] == [0] * (steps - 1)
    if len(per_call) >= steps:
        assert per_call[steps - 1] == frames_per_slot
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_guidance_changes_the_result(engine: StreamDiffusion) -> None:
    """Guards the equality test: the four modes must not all collapse to the same computation."""
    latents = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(2))
    results = {cfg: stream_batch(engine, latents, T_INDEX[2], 1, cfg)[0] for cfg in ("none", "full", "self")}
    assert not torch.allclose(results["none"], results["full"], atol=1e-4)
    assert not torch.allclose(results["none"], results["self"], atol=1e-4)
    assert not torch.allclose(results["full"], results["self"], atol=1e-4)


def test_unet_rows_per_mode(engine: StreamDiffusion) -> None:
    """UNet batch: N*F (none/self), 2*N*F (full), (N+1)*F (initialize) in the steady state."""
    rows: list[int] = []
    original = engine.unet.forward

    def spy(x, *args, **kwargs):
        rows.append(int(x.shape[0]))
        return original(x, *args, **kwargs)

    engine.unet.forward = spy  # type: ignore[method-assign]
    try:
        for cfg, expected in (("none", 4), ("self", 4), ("full", 8), ("initialize", 6)):
            rows.clear()
            stream_batch(engine, torch.randn((8, 4, 8, 8)), T_INDEX[2], 2, cfg)
            assert max(rows) == expected, cfg
    finally:
        del engine.unet.forward


@pytest.mark.parametrize(("vae", "cls"), [("kl", "AutoencoderKL"), ("tiny", "AutoencoderTiny")])
def test_folder_written_with_save_pretrained_loads(tmp_path: Path, vae: str, cls: str) -> None:
    folder = make_tiny_sd(tmp_path / vae, vae=vae)
    components = load_components(folder)
    assert type(components.vae).__name__ == cls
    engine = StreamDiffusion(components)
    engine.configure(t_index_list=[32, 45], size=(64, 64), prompt="x")
    images = torch.rand(1, 3, 64, 64)
    out = engine.step_images(images, ["a"]) + engine.drain()
    assert [p for _, p in out] == ["a"]
    assert out[0][0].shape == (3, 64, 64)
