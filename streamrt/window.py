"""The staggered denoising window: the computation that Stream Batch, StreamDiT's moving buffer, Rolling Forcing's
rolling window and RAIN's noise groups share.

W slots sit at staggered noise levels 0 (noisiest) .. W-1 (cleanest). One ``step``:

1. a fresh slot (if any) enters at level 0;
2. ONE batched model pass over every slot in the window (rows ordered by level, ``rows`` rows per slot) predicts
   each row's clean sample ``x0_hat``;
3. the slot at the last level leaves with its ``x0_hat``;
4. every other slot is re-noised to its next level: ``schedule.add_noise(x0_hat, noise(level + 1), level + 1)``.

So frame i leaves W-1 steps after it entered, having been denoised through every level once, exactly as if it had
been denoised alone — but the model ran one batch of W slots per step instead of W calls per frame.

Unlike the reference implementation, the window never runs on placeholder zeros: while it fills (and while it
drains at the end of a stream) the batch simply has fewer slots. No blank warm-up frames come out, and ``drain``
emits every slot still in flight, which makes offline rendering lossless.

The differences between methods are strategies: the ``NoiseSchedule`` (what a level means and how a prediction
becomes ``x0_hat``), the ``NoiseSource`` (fixed per-session noise, as Stream Batch uses, or fresh noise per step),
and the ``Denoiser`` callable (the model, its guidance and any cross-slot attention or caches).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


class NoiseSchedule(abc.ABC):
    """Noise levels of the window and their parameterisation."""

    @property
    @abc.abstractmethod
    def num_levels(self) -> int: ...

    @abc.abstractmethod
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, level: int) -> torch.Tensor:
        """A sample of q(x_level | x0) with the given noise."""

    @abc.abstractmethod
    def timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        """The model's timestep (or time) input for each row's level."""


class NoiseSource(abc.ABC):
    """Where re-noising noise comes from."""

    @abc.abstractmethod
    def sample(self, level: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        """Noise for ``rows`` rows entering ``level``, shaped like ``like`` (rows, ...)."""

    def reseed(self, seed: int) -> None:
        """Draw new noise from ``seed`` (live seed changes)."""

    def sample_for(self, slot: Slot, level: int, x0: torch.Tensor) -> torch.Tensor:
        """Noise re-noising ``slot`` (whose clean estimate is ``x0``) to ``level``. Sources that depend on the slot
        (noise keyed by the slot's identity, or the noise a flow model predicted for it) override this."""
        return self.sample(level, slot.rows, x0)


class FixedNoise(NoiseSource):
    """Stream Batch's noise: one tensor of (levels, rows, ...) drawn once from the seed and reused every step, so
    a static input gives a static output (no flicker from fresh noise)."""

    def __init__(
        self,
        levels: int,
        rows: int,
        shape: tuple[int, ...],
        seed: int,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.levels, self.rows, self.shape = levels, rows, shape
        self.device, self.dtype = device, dtype
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # Drawn on the CPU so that the same seed gives the same noise on every device.
        noise = torch.randn((self.levels * self.rows, *self.shape), generator=gen)
        self.noise = noise.view(self.levels, self.rows, *self.shape).to(self.device, self.dtype)

    def sample(self, level: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        return self.noise[level, :rows]

    def flat(self) -> torch.Tensor:
        """(levels * rows, ...) in the reference's row order: level-major."""
        return self.noise.reshape(self.levels * self.rows, *self.shape)


class FreshNoise(NoiseSource):
    """Fresh Gaussian noise at every re-noising (seeded, so a stream is reproducible)."""

    def __init__(self, seed: int, device: str = "cpu") -> None:
        self.device = device
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def sample(self, level: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        shape = (rows, *like.shape[1:])
        return torch.randn(shape, generator=self.gen).to(like.device, like.dtype)


@dataclass
class Slot:
    """One entry of the window: ``rows`` samples at the same level, travelling together."""

    latent: torch.Tensor  # (rows, C, h, w) noisy sample at ``level``; x0_hat once it has left
    payload: list[Any]  # one per row: what the caller needs back (e.g. the input frame, for its pts)
    level: int = 0
    # Per-slot strategy state that must travel with the slot (e.g. RCFG's stock noise).
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.latent.shape[0])


@dataclass
class WindowPass:
    """Everything the denoiser sees for one batched model pass."""

    latents: torch.Tensor  # (B, C, h, w) rows ordered by level
    levels: torch.Tensor  # (B,) level of each row
    timesteps: torch.Tensor  # (B,) model time input of each row
    slots: list[Slot]  # in the same order as the rows
    entered: bool  # whether slots[0] entered in this pass
    schedule: NoiseSchedule
    noise: NoiseSource

    def slot_rows(self) -> list[slice]:
        out, start = [], 0
        for slot in self.slots:
            out.append(slice(start, start + slot.rows))
            start += slot.rows
        return out


Denoiser = Callable[[WindowPass], torch.Tensor]


class StaggeredWindow:
    """W slots at staggered noise levels; one batched model pass per step."""

    def __init__(self, schedule: NoiseSchedule, noise: NoiseSource, denoiser: Denoiser) -> None:
        self.schedule = schedule
        self.noise = noise
        self.denoiser = denoiser
        self.slots: list[Slot] = []  # ordered by level, noisiest first
        self.passes = 0

    @property
    def num_levels(self) -> int:
        return self.schedule.num_levels

    @property
    def in_flight(self) -> int:
        """Samples (rows) currently in the window."""
        return sum(s.rows for s in self.slots)

    def reset(self) -> None:
        self.slots.clear()

    def enter_clean(self, x0: torch.Tensor, payload: list[Any]) -> Slot:
        """A slot made from clean samples (e.g. encoded input frames) noised to level 0."""
        noise = self.noise.sample(0, x0.shape[0], x0)
        return Slot(latent=self.schedule.add_noise(x0, noise, 0), payload=payload)

    def enter_noisy(self, x_t: torch.Tensor, payload: list[Any]) -> Slot:
        """A slot that is already at level 0 (e.g. pure noise for txt2img)."""
        return Slot(latent=x_t, payload=payload)

    def step(self, entering: Slot | None = None) -> list[Slot]:
        """One batched pass. Returns the slots that left the window (their ``latent`` is now x0_hat)."""
        if entering is not None:
            if self.slots and self.slots[0].level == 0:
                raise RuntimeError("two slots at level 0: step() must run between entries")
            entering.level = 0
            self.slots.insert(0, entering)
        if not self.slots:
            return []
        levels = torch.cat([torch.full((s.rows,), s.level, dtype=torch.long) for s in self.slots])
        latents = self.slots[0].latent if len(self.slots) == 1 else torch.cat([s.latent for s in self.slots])
        batch = WindowPass(
            latents=latents,
            levels=levels,
            timesteps=self.schedule.timesteps(levels),
            slots=list(self.slots),
            entered=entering is not None,
            schedule=self.schedule,
            noise=self.noise,
        )
        x0_hat = self.denoiser(batch)
        self.passes += 1
        finished: list[Slot] = []
        staying: list[Slot] = []
        last = self.num_levels - 1
        for slot, rows in zip(self.slots, batch.slot_rows(), strict=True):
            x0 = x0_hat[rows]
            if slot.level >= last:
                slot.latent = x0
                finished.append(slot)
            else:
                nxt = slot.level + 1
                slot.latent = self.schedule.add_noise(x0, self.noise.sample_for(slot, nxt, x0), nxt)
                slot.level = nxt
                staying.append(slot)
        self.slots = staying
        return finished

    def drain(self) -> list[Slot]:
        """Run passes without new entries until every slot has left (end of stream, schedule changes)."""
        out: list[Slot] = []
        while self.slots:
            out.extend(self.step())
        return out
