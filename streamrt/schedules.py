"""Noise schedules for the staggered window.

``LCMSchedule`` is StreamDiffusion's: an LCM scheduler set to 50 timesteps, a ``t_index_list`` picking the levels,
epsilon prediction turned into x0 with LCM's boundary-condition scalings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from streamrt.window import NoiseSchedule

# LCM's discretisation used by StreamDiffusion: t_index_list indexes into these 50 timesteps.
LCM_STEPS = 50


def strength_to_t_index(strength: float, steps: int, total: int = LCM_STEPS) -> list[int]:
    """Map a denoising strength (0..1) onto ``steps`` timestep indices.

    strength 1 starts from index 0 (t = 999, the input is all but erased); strength 0 starts from the last index
    (the input comes back nearly unchanged). The remaining range is split evenly, so the steps stay ordered and
    distinct: strength 0.35 (the default) with 2 steps gives [32, 41], close to the reference's default [32, 45].
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1]; got {strength}")
    if steps < 1 or steps > total:
        raise ValueError(f"steps must be in [1, {total}]; got {steps}")
    start = min(round((1.0 - strength) * (total - 1)), total - steps)
    span = total - start
    return [start + (k * span) // steps for k in range(steps)]


class LCMSchedule(NoiseSchedule):
    """Levels = ``t_index_list`` into an LCM scheduler's timesteps; epsilon parameterisation."""

    def __init__(
        self,
        scheduler,
        t_index_list: Sequence[int],
        *,
        num_inference_steps: int = LCM_STEPS,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        t_index_list = list(t_index_list)
        if not t_index_list:
            raise ValueError("t_index_list must not be empty")
        if any(b <= a for a, b in zip(t_index_list, t_index_list[1:], strict=False)):
            raise ValueError(f"t_index_list must be strictly increasing; got {t_index_list}")
        if t_index_list[0] < 0 or t_index_list[-1] >= num_inference_steps:
            raise ValueError(
                f"t_index_list entries must be in [0, {num_inference_steps - 1}]; got {t_index_list}"
            )
        scheduler.set_timesteps(num_inference_steps)
        self.t_index_list = t_index_list
        self.sub_timesteps = torch.stack([scheduler.timesteps[i] for i in t_index_list]).long()
        abar = scheduler.alphas_cumprod.to(torch.float64)[self.sub_timesteps]
        scalings = [
            scheduler.get_scalings_for_boundary_condition_discrete(int(t)) for t in self.sub_timesteps
        ]

        def col(values) -> torch.Tensor:  # (N, 1, 1, 1) for broadcasting over (rows, C, h, w)
            return torch.as_tensor(values, dtype=torch.float64).view(-1, 1, 1, 1).to(device, dtype)

        self.alpha = col(abar.sqrt())
        self.beta = col((1 - abar).sqrt())
        self.c_skip = col([float(s[0]) for s in scalings])
        self.c_out = col([float(s[1]) for s in scalings])
        # "next" coefficients for RCFG's stock-noise update: level k+1, and 1 past the last level.
        one = torch.ones_like(self.alpha[:1])
        self.alpha_next = torch.cat([self.alpha[1:], one])
        self.beta_next = torch.cat([self.beta[1:], one])
        self._timesteps = self.sub_timesteps.to(device)

    @property
    def num_levels(self) -> int:
        return len(self.t_index_list)

    def timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        return self._timesteps[levels.to(self._timesteps.device)]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, level: int) -> torch.Tensor:
        return self.alpha[level] * x0 + self.beta[level] * noise

    def denoise(self, x_t: torch.Tensor, eps: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """x0_hat = c_out * (x_t - beta * eps) / alpha + c_skip * x_t, per row."""
        idx = levels.to(self.alpha.device)
        alpha, beta = self.alpha[idx], self.beta[idx]
        return self.c_out[idx] * (x_t - beta * eps) / alpha + self.c_skip[idx] * x_t
