"""Carried convolution state: how a convolution over a chunk sees exactly what it would see over the whole stream.

A convolution with kernel ``k`` and dilation ``d`` along time needs the ``(k - 1) * d`` steps before each output. In a
stream those steps were in earlier chunks: ``ContextCarry`` keeps them and prepends them to the next chunk, so the
layer runs on ``context + chunk`` steps and produces one output per new step, with no context window recomputed.
At the start of a stream the carried state is zeros: exactly the zero padding an offline convolution applies on the
past side. (A symmetric, non-causal convolution streams the same way, with its outputs delayed by the right-hand half
of the kernel; the caller feeds the right-hand zero padding at the end of the stream.)

``StateBank`` holds one carry per layer (and, for an ODE solver, per solver step): BinauralFlow's "buffer bank".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import torch


class ContextCarry:
    """The last ``context`` steps of a stream along ``dim``, carried from one chunk to the next."""

    def __init__(self, context: int, dim: int = -1) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0; got {context}")
        self.context = context
        self.dim = dim
        self.state: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the carried context in front of it (along ``dim``); the carry becomes the last steps."""
        if self.context == 0:
            return x
        if self.state is None:
            shape = list(x.shape)
            shape[self.dim] = self.context
            self.state = x.new_zeros(shape)
        elif self.state.shape[: self.dim % x.ndim] != x.shape[: self.dim % x.ndim]:
            raise ValueError(
                f"chunk shape {tuple(x.shape)} does not continue the stream (state {tuple(self.state.shape)})"
            )
        joined = torch.cat([self.state, x], dim=self.dim)
        self.state = joined.narrow(self.dim, joined.shape[self.dim] - self.context, self.context).clone()
        return joined

    def reset(self) -> None:
        self.state = None

    def nbytes(self) -> int:
        return 0 if self.state is None else self.state.numel() * self.state.element_size()


class StateBank:
    """Named ``ContextCarry`` states, created on first use: one per causal layer (per solver step where needed)."""

    def __init__(self) -> None:
        self._carries: dict[Hashable, ContextCarry] = {}

    def carry(self, key: Hashable, context: int, dim: int = -1) -> ContextCarry:
        found = self._carries.get(key)
        if found is None:
            found = self._carries[key] = ContextCarry(context, dim)
        elif found.context != context or found.dim != dim:
            raise ValueError(f"state {key!r} was created with context {found.context}, dim {found.dim}")
        return found

    def reset(self) -> None:
        for c in self._carries.values():
            c.reset()

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self._carries.values())

    def __len__(self) -> int:
        return len(self._carries)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._carries)
