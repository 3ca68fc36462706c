"""RCFG formulas against cases computed by hand, and prompt transitions."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import LCMScheduler

from streamrt.guidance import FullCFG, NoGuidance, OnetimeNegativeRCFG, SelfNegativeRCFG, make_guidance
from streamrt.prompts import PromptTransition, slerp
from streamrt.schedules import LCMSchedule, strength_to_t_index
from streamrt.window import FixedNoise, Slot, WindowPass


def scalar(v: float) -> torch.Tensor:
    return torch.full((1, 1, 1, 1), v)


def one_slot_pass(
    latent: float, level: int, schedule: LCMSchedule, noise: FixedNoise, entered: bool
) -> WindowPass:
    slot = Slot(latent=scalar(latent), payload=[0], level=level)
    levels = torch.tensor([level])
    return WindowPass(scalar(latent), levels, schedule.timesteps(levels), [slot], entered, schedule, noise)


@pytest.fixture
def schedule() -> LCMSchedule:
    sch = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return LCMSchedule(sch, [32, 45])


def test_full_cfg_by_hand(schedule: LCMSchedule) -> None:
    g = FullCFG(guidance_scale=1.5)
    batch = one_slot_pass(0.0, 0, schedule, FixedNoise(2, 1, (1, 1, 1), 0), True)
    mb = g.model_batch(batch)
    assert mb.latents.shape[0] == 2 and mb.cond_rows.tolist() == [False, True]
    out = torch.cat([scalar(0.2), scalar(0.6)])  # eps_u, eps_c
    # 0.2 + 1.5 * (0.6 - 0.2) = 0.8
    assert g.combine(out, batch).item() == pytest.approx(0.8)


def test_guidance_inactive_at_scale_one(schedule: LCMSchedule) -> None:
    batch = one_slot_pass(0.0, 0, schedule, FixedNoise(2, 1, (1, 1, 1), 0), True)
    for mode in ("full", "self", "initialize"):
        g = make_guidance(mode, 1.0, 1.0)
        assert g.model_batch(batch).latents.shape[0] == 1
        assert g.combine(scalar(0.6), batch).item() == pytest.approx(0.6)


def test_self_negative_by_hand(schedule: LCMSchedule) -> None:
    noise = FixedNoise(2, 1, (1, 1, 1), 0)
    noise.noise = torch.tensor([0.3, -0.5]).view(2, 1, 1, 1, 1)  # level 0 noise 0.3, level 1 noise -0.5
    g = SelfNegativeRCFG(guidance_scale=1.2, delta=0.5)
    batch = one_slot_pass(1.0, 0, schedule, noise, True)
    assert g.model_batch(batch).latents.shape[0] == 1, "self-negative adds no UNet rows"
    eps_c = 0.6
    eps = g.combine(scalar(eps_c), batch).item()
    # entering stock = level-0 noise = 0.3; eps_u = delta * stock = 0.15; eps = 0.15 + 1.2 * (0.6 - 0.15) = 0.69
    assert eps == pytest.approx(0.69)
    g.after_step(scalar(eps), batch, schedule)
    a, b = schedule.alpha[0].item(), schedule.beta[0].item()
    a1, b1 = schedule.alpha[1].item(), schedule.beta[1].item()
    cs, co = schedule.c_skip[0].item(), schedule.c_out[0].item()
    s = b * 0.3
    d = co * (s - b * eps) / a + cs * s
    want = -0.5 + d * a1 / b1  # next level's noise + D * alpha_next / beta_next
    assert batch.slots[0].state["stock"].item() == pytest.approx(want, rel=1e-5)


def test_self_negative_last_level_uses_unit_next_coefficients(schedule: LCMSchedule) -> None:
    noise = FixedNoise(2, 1, (1, 1, 1), 0)
    noise.noise = torch.tensor([0.3, -0.5]).view(2, 1, 1, 1, 1)
    g = SelfNegativeRCFG(guidance_scale=2.0, delta=1.0)
    batch = one_slot_pass(0.4, 1, schedule, noise, False)
    batch.slots[0].state["stock"] = scalar(0.1)
    eps = g.combine(scalar(0.2), batch).item()
    assert eps == pytest.approx(0.1 + 2.0 * (0.2 - 0.1))
    g.after_step(scalar(eps), batch, schedule)
    b, a = schedule.beta[1].item(), schedule.alpha[1].item()
    cs, co = schedule.c_skip[1].item(), schedule.c_out[1].item()
    s = b * 0.1
    d = co * (s - b * eps) / a + cs * s
    # past the last level alpha_next = beta_next = 1, and the noise wraps to level 0 (the reference's roll)
    assert batch.slots[0].state["stock"].item() == pytest.approx(0.3 + d, rel=1e-5)


def test_onetime_negative_seeds_stock_from_uncond_row(schedule: LCMSchedule) -> None:
    noise = FixedNoise(2, 1, (1, 1, 1), 0)
    g = OnetimeNegativeRCFG(guidance_scale=1.2, delta=1.0)
    entering = one_slot_pass(0.0, 0, schedule, noise, True)
    mb = g.model_batch(entering)
    assert mb.latents.shape[0] == 2 and mb.cond_rows.tolist() == [False, True]
    eps = g.combine(torch.cat([scalar(0.25), scalar(0.75)]), entering).item()
    assert eps == pytest.approx(0.25 + 1.2 * (0.75 - 0.25))
    assert entering.slots[0].state["stock"].item() == pytest.approx(0.25)
    draining = one_slot_pass(0.0, 1, schedule, noise, False)
    assert g.model_batch(draining).latents.shape[0] == 1, "no uncond row when no slot enters"


def test_no_guidance_is_identity(schedule: LCMSchedule) -> None:
    batch = one_slot_pass(0.0, 0, schedule, FixedNoise(2, 1, (1, 1, 1), 0), True)
    assert NoGuidance(5.0).combine(scalar(0.3), batch).item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown guidance mode"):
        make_guidance("bogus", 1.2, 1.0)


def test_lcm_schedule_matches_scheduler(schedule: LCMSchedule) -> None:
    sch = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    sch.set_timesteps(50)
    assert schedule.sub_timesteps.tolist() == [int(sch.timesteps[32]), int(sch.timesteps[45])]
    t = int(sch.timesteps[32])
    assert schedule.alpha[0].item() == pytest.approx(math.sqrt(float(sch.alphas_cumprod[t])), rel=1e-6)
    x, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    a, b = schedule.alpha[0], schedule.beta[0]
    want = schedule.c_out[0] * (x - b * eps) / a + schedule.c_skip[0] * x
    torch.testing.assert_close(schedule.denoise(x, eps, torch.tensor([0])), want)
    with pytest.raises(ValueError, match="increasing"):
        LCMSchedule(sch, [45, 32])


@pytest.mark.parametrize(
    ("strength", "steps", "want"),
    [
        (1.0, 4, [0, 12, 25, 37]),
        (0.0, 1, [49]),
        (0.0, 2, [48, 49]),
        (0.35, 2, [32, 41]),
        (0.5, 3, [24, 32, 41]),
    ],
)
def test_strength_maps_onto_t_index(strength: float, steps: int, want: list[int]) -> None:
    assert strength_to_t_index(strength, steps) == want


def test_strength_is_monotonic() -> None:
    starts = [strength_to_t_index(s / 20, 2)[0] for s in range(21)]
    assert starts == sorted(starts, reverse=True)
    with pytest.raises(ValueError):
        strength_to_t_index(1.5, 2)


def test_prompt_transition_linear_and_slerp() -> None:
    a, b = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    tr = PromptTransition(a)
    tr.set_target(b, frames=4, method="linear")
    seen = []
    for _ in range(5):
        seen.append(tr.current())
        tr.advance()
    torch.testing.assert_close(seen[0], a)
    torch.testing.assert_close(seen[2], torch.tensor([[[0.5, 0.5]]]))
    torch.testing.assert_close(seen[4], b)
    mid = slerp(a, b, 0.5)
    assert mid.norm().item() == pytest.approx(1.0, rel=1e-5), "slerp keeps the norm"
    torch.testing.assert_close(mid, torch.tensor([[[math.sqrt(0.5), math.sqrt(0.5)]]]))


def test_interrupted_transition_starts_where_it_was() -> None:
    a, b, c = (torch.tensor([[[v, 0.0]]]) for v in (0.0, 1.0, 3.0))
    tr = PromptTransition(a)
    tr.set_target(b, frames=2, method="linear")
    tr.advance()
    here = tr.current().clone()
    tr.set_target(c, frames=2, method="linear")
    torch.testing.assert_close(tr.current(), here)
    with pytest.raises(ValueError, match="unknown prompt blend"):
        tr.set_target(c, frames=2, method="cubic")
