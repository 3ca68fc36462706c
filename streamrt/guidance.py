"""Classifier-free guidance strategies, including StreamDiffusion's residual CFG (RCFG).

One class per mode (the reference tests a ``cfg_type`` string seven times inside its UNet step):

- ``NoGuidance`` (``none``): eps_hat = eps_c.
- ``FullCFG`` (``full``): the batch is doubled to [uncond; cond]; eps_hat = eps_u + g (eps_c - eps_u).
- ``SelfNegativeRCFG`` (``self``): eps_u = delta * stock_noise, no extra rows.
- ``OnetimeNegativeRCFG`` (``initialize``): one uncond row per sample of the entering slot seeds its stock noise,
  then eps_u = delta * stock_noise.

Guidance applies only when ``guidance_scale > 1`` (as in the reference); below that every mode is ``none``.

Stock noise is per-slot state (``Slot.state["stock"]``) that travels with its slot through the window, so that the
update in ``update_stock`` reads exactly as the reference's batched formulas:

    D = c_out (beta*stock - beta*eps_hat) / alpha + c_skip * beta*stock
    D *= alpha_next / beta_next
    stock <- noise(level + 1) + D

A slot enters with the level-0 noise as its stock, as the reference's shift ``cat(init_noise[0:1], stock[:-1])``
gives it. With a single level (N = 1) the reference has no shift and the entering frame inherits the stock the
previous frame left behind (zeros for the first); ``update_stock`` keeps that carry to stay faithful.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from streamrt.schedules import LCMSchedule
from streamrt.window import Slot, WindowPass


@dataclass(frozen=True)
class UNetBatch:
    """Inputs of one model call: latents, timesteps and, per row, whether it is conditional."""

    latents: torch.Tensor
    timesteps: torch.Tensor
    cond_rows: torch.Tensor  # (rows,) bool: True -> prompt embedding, False -> unconditional embedding


def _expand_embeds(cond: torch.Tensor, uncond: torch.Tensor, cond_rows: torch.Tensor) -> torch.Tensor:
    """(rows, L, D) embeddings: cond where ``cond_rows`` else uncond."""
    if bool(cond_rows.all()):
        return cond.expand(cond_rows.shape[0], *cond.shape[1:])
    mask = cond_rows.to(cond.device).view(-1, 1, 1)
    return torch.where(mask, cond, uncond)


class Guidance(abc.ABC):
    """A guidance mode: which rows the model sees, and how its outputs combine into eps_hat."""

    name: str
    uses_stock = False

    def __init__(self, guidance_scale: float = 1.2, delta: float = 1.0) -> None:
        self.guidance_scale = float(guidance_scale)
        self.delta = float(delta)

    @property
    def active(self) -> bool:
        return self.guidance_scale > 1.0

    def model_batch(self, batch: WindowPass) -> UNetBatch:
        n = batch.latents.shape[0]
        return UNetBatch(batch.latents, batch.timesteps, torch.ones(n, dtype=torch.bool))

    @abc.abstractmethod
    def combine(self, out: torch.Tensor, batch: WindowPass) -> torch.Tensor:
        """Model output rows -> eps_hat for the window's rows."""

    def embeddings(self, unet_batch: UNetBatch, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        return _expand_embeds(cond, uncond, unet_batch.cond_rows)

    def after_step(self, eps_hat: torch.Tensor, batch: WindowPass, schedule: LCMSchedule) -> None:
        """Update per-slot state after the pass (RCFG's stock noise)."""


class NoGuidance(Guidance):
    name = "none"

    def combine(self, out: torch.Tensor, batch: WindowPass) -> torch.Tensor:
        return out


class FullCFG(Guidance):
    name = "full"

    def model_batch(self, batch: WindowPass) -> UNetBatch:
        if not self.active:
            return super().model_batch(batch)
        n = batch.latents.shape[0]
        return UNetBatch(
            torch.cat([batch.latents, batch.latents]),
            torch.cat([batch.timesteps, batch.timesteps]),
            torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
        )

    def combine(self, out: torch.Tensor, batch: WindowPass) -> torch.Tensor:
        if not self.active:
            return out
        eps_u, eps_c = out.chunk(2)
        return eps_u + self.guidance_scale * (eps_c - eps_u)


class _StockRCFG(Guidance):
    """Shared machinery of the two residual modes."""

    uses_stock = True

    def __init__(self, guidance_scale: float = 1.2, delta: float = 1.0) -> None:
        super().__init__(guidance_scale, delta)
        self._carry: torch.Tensor | None = None  # N = 1 only: the stock the last frame left behind

    def reset(self) -> None:
        self._carry = None

    def _entering_stock(self, slot: Slot, batch: WindowPass) -> torch.Tensor:
        if batch.schedule.num_levels == 1:
            carry = self._carry
            if carry is None or carry.shape[1:] != slot.latent.shape[1:] or carry.shape[0] < slot.rows:
                return torch.zeros_like(slot.latent)
            return carry[: slot.rows]  # a short final slot takes the carry of its own rows
        return batch.noise.sample(0, slot.rows, slot.latent)

    def stock(self, batch: WindowPass) -> torch.Tensor:
        """(B, ...) stock noise for every row, initialising entering slots."""
        parts = []
        for slot in batch.slots:
            if "stock" not in slot.state:
                slot.state["stock"] = self._entering_stock(slot, batch)
            parts.append(slot.state["stock"])
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def combine_with_stock(self, eps_c: torch.Tensor, stock: torch.Tensor) -> torch.Tensor:
        eps_u = self.delta * stock
        return eps_u + self.guidance_scale * (eps_c - eps_u)

    def after_step(self, eps_hat: torch.Tensor, batch: WindowPass, schedule: LCMSchedule) -> None:
        if not self.active:
            return
        stock = self.stock(batch)
        lv = batch.levels.to(schedule.alpha.device)
        beta = schedule.beta[lv]
        scaled = beta * stock
        d = schedule.denoise(scaled, eps_hat, batch.levels)
        d = d * schedule.alpha_next[lv] / schedule.beta_next[lv]
        for slot, rows in zip(batch.slots, batch.slot_rows(), strict=True):
            nxt = slot.level + 1
            # The reference rolls init_noise by one slot: level k takes level k+1's noise, the last level wraps
            # around to level 0's.
            noise_next = batch.noise.sample(nxt % schedule.num_levels, slot.rows, slot.latent)
            slot.state["stock"] = noise_next + d[rows]
            if schedule.num_levels == 1:
                self._carry = slot.state["stock"]


class SelfNegativeRCFG(_StockRCFG):
    name = "self"

    def combine(self, out: torch.Tensor, batch: WindowPass) -> torch.Tensor:
        if not self.active:
            return out
        return self.combine_with_stock(out, self.stock(batch))


class OnetimeNegativeRCFG(_StockRCFG):
    name = "initialize"

    def model_batch(self, batch: WindowPass) -> UNetBatch:
        if not self.active or not batch.entered:
            return super().model_batch(batch)
        k = batch.slots[0].rows  # one uncond row per sample of the entering slot
        n = batch.latents.shape[0]
        return UNetBatch(
            torch.cat([batch.latents[:k], batch.latents]),
            torch.cat([batch.timesteps[:k], batch.timesteps]),
            torch.cat([torch.zeros(k, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
        )

    def combine(self, out: torch.Tensor, batch: WindowPass) -> torch.Tensor:
        if not self.active:
            return out
        if batch.entered:
            k = batch.slots[0].rows
            batch.slots[0].state["stock"] = out[:k]  # the real uncond prediction seeds this slot's stock
            out = out[k:]
        return self.combine_with_stock(out, self.stock(batch))


GUIDANCE_MODES: dict[str, type[Guidance]] = {
    cls.name: cls for cls in (NoGuidance, FullCFG, SelfNegativeRCFG, OnetimeNegativeRCFG)
}


def make_guidance(mode: str, guidance_scale: float, delta: float) -> Guidance:
    try:
        return GUIDANCE_MODES[mode](guidance_scale, delta)
    except KeyError:
        raise ValueError(
            f"unknown guidance mode {mode!r}; choose one of {', '.join(GUIDANCE_MODES)}"
        ) from None


__all__ = [
    "FullCFG",
    "Guidance",
    "NoGuidance",
    "OnetimeNegativeRCFG",
    "SelfNegativeRCFG",
    "UNetBatch",
    "make_guidance",
]
