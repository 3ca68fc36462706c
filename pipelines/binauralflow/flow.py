"""Conditional flow matching as BinauralFlow publishes it, and its midpoint solver with the early-skip schedule.

Training (one pair: mono x duplicated to left/right, binaural target y, both complex spectrograms)::

    z = x + sigma * eps                      sigma = 0.5, eps ~ N(0, I) (complex: real and imaginary parts)
    phi_t = t * y + (1 - t) * z              t ~ U(0, 1)
    loss = | net(phi_t, x, t, poses) - (y - z) |_1

Inference integrates d phi / dt = net(phi, x, t, poses) from the start to t = 1 with the explicit midpoint rule
(second order, two network evaluations per step). The full schedule has ``steps`` evaluations (``steps / 2`` midpoint
steps of size 2 / steps on [0, 1]). Early skip spends only the last ``nfe`` of them: the solver starts at
t0 = 1 - nfe / steps (0.5 for 6 of 12). The state there should be phi_t0 = t0 * y + (1 - t0) * z; y is what is being
generated, so it is replaced by its condition, the mono x (the paper's observation behind early skip is that the
early part of the path only moves the start towards the target, and the mono signal is already close to it)::

    phi_t0 = t0 * x + (1 - t0) * (x + sigma * eps) = x + (1 - t0) * sigma * eps

which is exactly the interpolant's noise level at t0 around the mono signal. With nfe == steps this is the plain
start z.

Spectrogram features: a complex (..., 2, T, F) pair (left, right) is laid out as real channels
(left re, left im, right re, right im); the mono condition as (re, im).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from streamrt.errors import ParamError

if TYPE_CHECKING:
    from pipelines.binauralflow.model import Condition

SIGMA = 0.5


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """Complex (B, K, T, F) -> real (B, 2K, T, F): re and im of each of the K channels, interleaved."""
    b, k, t, f = spec.shape
    return torch.view_as_real(spec).permute(0, 1, 4, 2, 3).reshape(b, 2 * k, t, f)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Real (B, 2K, T, F) -> complex (B, K, T, F); inverse of ``complex_to_channels``."""
    b, c, t, f = x.shape
    return torch.view_as_complex(x.reshape(b, c // 2, 2, t, f).permute(0, 1, 3, 4, 2).contiguous())


def compress(spec: torch.Tensor, exponent: float, scale: float) -> torch.Tensor:
    """The network's spectral representation of a complex STFT: scale * |X| ** exponent with X's phase.

    Per bin and frame (so it streams), and a complex per-bin gain H stays a complex per-bin gain
    (|H| ** exponent with H's phase): interaural level and time differences keep their form. Exponent 1 and scale 1
    leave the STFT as it is."""
    if exponent == 1.0 and scale == 1.0:
        return spec
    mag = spec.abs()
    gain = torch.where(mag > 0, scale * mag.clamp_min(1e-12) ** (exponent - 1), torch.zeros_like(mag))
    return spec * gain


def decompress(spec: torch.Tensor, exponent: float, scale: float) -> torch.Tensor:
    """The inverse of ``compress``."""
    if exponent == 1.0 and scale == 1.0:
        return spec
    mag = spec.abs()
    gain = torch.where(
        mag > 0,
        (mag.clamp_min(1e-12) / scale) ** (1 / exponent) / mag.clamp_min(1e-12),
        torch.zeros_like(mag),
    )
    return spec * gain


def flow_start(x2: torch.Tensor, eps: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """z = x + sigma * eps (x2: the mono condition duplicated to both ears, as 4 real channels)."""
    return x2 + sigma * eps


def interpolate(y: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """phi_t = t * y + (1 - t) * z, with t (B,) broadcast over the other dims."""
    t = t.reshape(-1, *([1] * (y.ndim - 1)))
    return t * y + (1 - t) * z


def duplicate_mono(x: torch.Tensor) -> torch.Tensor:
    """Mono features (B, 2, T, F) -> the same signal in both ears (B, 4, T, F)."""
    return torch.cat([x, x], dim=1)


Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def flow_matching_loss(
    net: Velocity,
    y: torch.Tensor,
    x: torch.Tensor,
    poses: torch.Tensor,
    gen: torch.Generator | None = None,
    sigma: float = SIGMA,
    cond: Condition | None = None,
) -> torch.Tensor:
    """L1 between net(phi_t, x, t, poses) and v = y - z. y (B, 4, T, F), x (B, 2, T, F), poses (B, T, 14).

    The start is drawn around a condition pair, z = pair + sigma eps (B, 4, T, F): by default the mono x duplicated
    to both ears (the paper); with ``cond`` (``CausalUNet.condition(x, poses)``) the network's own pair (e.g.
    geometrically warped), and ``cond`` goes to the network too, which then does not compute it again."""
    b = y.shape[0]
    # drawn on the CPU generator, then moved: a run draws the same numbers on any device
    t = torch.rand(b, generator=gen).to(y.device)
    eps = torch.randn(y.shape, generator=gen).to(y.device)
    z = flow_start(duplicate_mono(x) if cond is None else cond.pair, eps, sigma)
    phi = interpolate(y, z, t)
    v = net(phi, x, t, poses) if cond is None else net(phi, x, t, poses, cond=cond)
    return F.l1_loss(v, y - z)


@dataclass(frozen=True)
class Schedule:
    """The midpoint solver's grid with early skip: ``nfe`` of ``steps`` evaluations, both even."""

    steps: int = 12
    nfe: int = 6

    def __post_init__(self) -> None:
        if self.steps < 2 or self.steps % 2:
            raise ParamError(
                f"steps must be an even number >= 2 (two evaluations per midpoint step); got {self.steps}"
            )
        if self.nfe < 2 or self.nfe % 2 or self.nfe > self.steps:
            raise ParamError(f"nfe must be even, >= 2 and <= steps={self.steps}; got {self.nfe}")

    @property
    def t0(self) -> float:
        """Where the solver starts (early skip)."""
        return 1.0 - self.nfe / self.steps

    @property
    def dt(self) -> float:
        return 2.0 / self.steps

    def intervals(self) -> list[tuple[float, float]]:
        """(t, dt) of each midpoint step, t0 to 1."""
        n = self.nfe // 2
        first = self.steps // 2 - n
        return [((first + i) * self.dt, self.dt) for i in range(n)]

    def eval_times(self) -> list[float]:
        """The time of every network evaluation, in order (2 per step: t and t + dt / 2)."""
        return [s for t, dt in self.intervals() for s in (t, t + dt / 2)]


def early_skip_start(x2: torch.Tensor, eps: torch.Tensor, t0: float, sigma: float = SIGMA) -> torch.Tensor:
    """phi_t0 with y replaced by the mono condition: x + (1 - t0) * sigma * eps (see the module docstring)."""
    return x2 + (1.0 - t0) * sigma * eps


# velocity(phi, t, k): the k-th evaluation of the schedule (k selects its own streaming state) at time t
IndexedVelocity = Callable[[torch.Tensor, float, int], torch.Tensor]


def midpoint_solve(velocity: IndexedVelocity, phi: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Integrate from schedule.t0 to 1 with the explicit midpoint rule; ``schedule.nfe`` calls of ``velocity``."""
    k = 0
    for t, dt in schedule.intervals():
        v1 = velocity(phi, t, k)
        mid = phi + 0.5 * dt * v1
        v2 = velocity(mid, t + 0.5 * dt, k + 1)
        phi = phi + dt * v2
        k += 2
    return phi
