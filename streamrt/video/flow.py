"""Flow-matching noise levels as strategies of the runtime's staggered window (``streamrt.window``).

Convention (Wan / Rolling Forcing): ``x_sigma = (1 - sigma) * x0 + sigma * noise``, sigma = 1 pure noise, and the
model predicts the velocity ``v = noise - x0``, so ``x0 = x_sigma - sigma * v``. The model's timestep input is
``1000 * sigma``. StreamDiT writes the same path with ``tau = 1 - sigma`` (tau = 1 clean) and an optional
``sigma_min``: ``X_tau = tau * X1 + (1 - (1 - sigma_min) * tau) * X0``, X1 data, X0 noise; ``BufferedFlowLevels``
implements that formula exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from streamrt.window import NoiseSchedule, NoiseSource, Slot


def shift_time(t: float | torch.Tensor, shift: float) -> float | torch.Tensor:
    """The flow-matching timestep shift t' = shift*t / (1 + (shift - 1)*t), t in [0, 1] (t = 1 pure noise)."""
    return shift * t / (1 + (shift - 1) * t)


def shifted_sigmas(timesteps: Sequence[float], shift: float, num_train_timesteps: int = 1000) -> list[float]:
    """Denoising steps given on the 0..1000 scale (e.g. Self-Forcing's [1000, 750, 500, 250]) warped by ``shift``."""
    return [float(shift_time(t / num_train_timesteps, shift)) for t in timesteps]


class FlowLevels(NoiseSchedule):
    """Window levels at explicit sigmas (level 0 = noisiest); x0 parameterisation of a velocity model."""

    def __init__(self, sigmas: Sequence[float], *, num_train_timesteps: int = 1000) -> None:
        sigmas = [float(s) for s in sigmas]
        if not sigmas or any(not 0.0 <= s <= 1.0 for s in sigmas):
            raise ValueError(f"sigmas must be in [0, 1]; got {sigmas}")
        if any(b >= a for a, b in zip(sigmas, sigmas[1:], strict=False)):
            raise ValueError(f"sigmas must decrease from the noisiest level; got {sigmas}")
        self.sigmas = torch.tensor(sigmas, dtype=torch.float32)
        self.num_train_timesteps = num_train_timesteps

    @property
    def num_levels(self) -> int:
        return len(self.sigmas)

    def sigma(self, levels: torch.Tensor | int) -> torch.Tensor:
        return self.sigmas[levels]

    def timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        return self.sigmas[levels] * self.num_train_timesteps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, level: int) -> torch.Tensor:
        s = float(self.sigmas[level])
        return (1 - s) * x0 + s * noise

    @staticmethod
    def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 = x_sigma - sigma * v; ``sigma`` broadcasts from the left (one per row or per frame)."""
        while sigma.ndim < x_t.ndim:
            sigma = sigma.unsqueeze(-1)
        return x_t - sigma.to(x_t.dtype) * v


class BufferedFlowLevels(NoiseSchedule):
    """StreamDiT's moving buffer: ``levels`` = s*N equally spaced tau values 0, 1/(sN), ..., (sN-1)/(sN).

    A slot at level l holds ``X_tau`` with tau = l / (sN); each pass moves it by dtau = 1/(sN), so a chunk receives
    s*N updates that sum to 1 and leaves at tau = 1. Re-noising with the *predicted* noise (``PredictedNoise``) makes
    the window's "x0, then re-noise to the next level" exactly the Euler step ``X_{tau+dtau} = X_tau + u*dtau``.
    """

    def __init__(self, num_chunks: int, micro_steps: int, *, sigma_min: float = 0.0) -> None:
        if num_chunks < 1 or micro_steps < 1:
            raise ValueError("num_chunks and micro_steps must be at least 1")
        self.num_chunks, self.micro_steps, self.sigma_min = num_chunks, micro_steps, sigma_min
        total = num_chunks * micro_steps
        self.taus = torch.arange(total, dtype=torch.float32) / total

    @property
    def num_levels(self) -> int:
        return len(self.taus)

    @property
    def dtau(self) -> float:
        return 1.0 / self.num_levels

    def tau(self, levels: torch.Tensor | int) -> torch.Tensor:
        return self.taus[levels]

    def timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        """The backbone's time input: 1000 * sigma with sigma = 1 - tau (0 = clean)."""
        return (1 - self.taus[levels]) * 1000

    def mix(self, x1: torch.Tensor, x0: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
        """X_tau = tau*X1 + (1 - (1 - sigma_min)*tau)*X0 (X1 data, X0 noise)."""
        return tau * x1 + (1 - (1 - self.sigma_min) * tau) * x0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, level: int) -> torch.Tensor:
        # The window's "x0" is StreamDiT's X1 (data); ``noise`` is X0.
        return self.mix(x0, noise, float(self.taus[level]))

    def split(
        self, x_tau: torch.Tensor, u: torch.Tensor, tau: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(X1_hat, X0_hat) from X_tau and the velocity u = X1 - (1 - sigma_min)*X0 (exact inversion)."""
        while tau.ndim < x_tau.ndim:
            tau = tau.unsqueeze(-1)
        a = 1 - self.sigma_min
        x0 = x_tau - tau * u
        x1 = a * x_tau + (1 - a * tau) * u
        return x1, x0


class KeyedFreshNoise(NoiseSource):
    """Fresh Gaussian noise at every re-noising, drawn from (seed, slot key, level): independent each time, yet a
    slot's noise does not depend on how many other slots drew before it. That makes "output k does not depend on the
    noise of later blocks" checkable, and a stream reproducible under a seed."""

    def __init__(self, seed: int, key: str = "index") -> None:
        self.seed = seed
        self.key = key

    def reseed(self, seed: int) -> None:
        self.seed = seed

    def draw(self, index: int, level: int, shape: tuple[int, ...]) -> torch.Tensor:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 131 + level)
        return torch.randn(shape, generator=gen)

    def sample_for(self, slot: Slot, level: int, x0: torch.Tensor) -> torch.Tensor:
        index = int(slot.state[self.key]) if self.key in slot.state else 0
        return self.draw(index, level, tuple(x0.shape)).to(x0.device, x0.dtype)

    def sample(self, level: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        return self.draw(-1, level, (rows, *like.shape[1:])).to(like.device, like.dtype)


class PredictedNoise(NoiseSource):
    """Re-noise with the noise the model predicted for the slot (deterministic ODE/Euler stepping): the denoiser
    stores ``slot.state["noise_hat"]`` during its pass."""

    def sample_for(self, slot: Slot, level: int, x0: torch.Tensor) -> torch.Tensor:
        if "noise_hat" not in slot.state:
            raise RuntimeError("PredictedNoise: the denoiser did not store the slot's noise_hat")
        return slot.state.pop("noise_hat")

    def sample(self, level: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("PredictedNoise needs the slot; the window calls sample_for")
