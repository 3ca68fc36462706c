"""Key/value caches for streaming attention: an attention sink plus a rolling window, per layer.

``SinkKVCache`` keeps, for one attention layer:

- the **sink**: K/V of the first block written to it, stored *without* rotary position embedding and frozen from then
  on; whoever attends re-rotates it to the positions it should occupy (Rolling Forcing puts it just before the
  rolling part, so its distance to the queries stays bounded however long the stream runs);
- the **rolling part**: K/V of the most recent clean frames (keys already rotated at their absolute positions), at
  most ``capacity_frames - sink_frames`` frames; writing more evicts the oldest, never the sink.

Memory is bounded by construction: ``capacity_frames * tokens_per_frame`` tokens per layer, whatever the stream
length. Caches hold tensors shaped (B, tokens, heads, head_dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CachedContext:
    """What a query block may attend to from the cache."""

    sink_k: torch.Tensor | None  # unrotated
    sink_v: torch.Tensor | None
    k: torch.Tensor | None  # rotated at absolute positions
    v: torch.Tensor | None
    first_frame: int  # absolute frame index of the first rolling frame returned
    frames: int  # rolling frames returned


class SinkKVCache:
    """One layer's sink + rolling K/V cache."""

    def __init__(self, tokens_per_frame: int, *, sink_frames: int, capacity_frames: int) -> None:
        if capacity_frames <= sink_frames:
            raise ValueError(f"capacity_frames ({capacity_frames}) must exceed sink_frames ({sink_frames})")
        self.tokens_per_frame = tokens_per_frame
        self.sink_frames = sink_frames
        self.capacity_frames = capacity_frames
        self.reset()

    def reset(self) -> None:
        self.sink_k: torch.Tensor | None = None
        self.sink_v: torch.Tensor | None = None
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.first_frame = 0  # absolute frame index of self.k[:, 0]
        self.frames = 0

    @property
    def rolling_capacity(self) -> int:
        return self.capacity_frames - self.sink_frames

    @property
    def has_sink(self) -> bool:
        return self.sink_k is not None

    @property
    def cached_frames(self) -> int:
        return (self.sink_frames if self.has_sink else 0) + self.frames

    def write_sink(self, k_unrotated: torch.Tensor, v: torch.Tensor) -> None:
        """Store the sink once; later calls are refused (the sink is frozen)."""
        if self.has_sink:
            raise RuntimeError("the attention sink is frozen: it was written already")
        expected = self.sink_frames * self.tokens_per_frame
        if k_unrotated.shape[1] != expected:
            raise ValueError(
                f"the sink holds {self.sink_frames} frames ({expected} tokens); got {k_unrotated.shape[1]}"
            )
        self.sink_k = k_unrotated.detach().clone()
        self.sink_v = v.detach().clone()

    def write(self, k_rotated: torch.Tensor, v: torch.Tensor, first_frame: int) -> None:
        """Append clean frames (contiguous after what is cached) and evict the oldest beyond the capacity."""
        n = k_rotated.shape[1] // self.tokens_per_frame
        if self.k is None:
            self.k, self.v, self.first_frame, self.frames = k_rotated.detach(), v.detach(), first_frame, n
        else:
            if first_frame != self.first_frame + self.frames:
                raise ValueError(
                    f"cache writes must be contiguous: expected frame {self.first_frame + self.frames}, got {first_frame}"
                )
            assert self.v is not None
            self.k = torch.cat([self.k, k_rotated.detach()], dim=1)
            self.v = torch.cat([self.v, v.detach()], dim=1)
            self.frames += n
        extra = self.frames - self.rolling_capacity
        if extra > 0:
            cut = extra * self.tokens_per_frame
            assert self.v is not None
            self.k, self.v = self.k[:, cut:].clone(), self.v[:, cut:].clone()
            self.first_frame += extra
            self.frames -= extra

    def context(self, max_rolling_frames: int) -> CachedContext:
        """The sink and the last ``max_rolling_frames`` rolling frames."""
        take = max(0, min(self.frames, max_rolling_frames))
        if take == 0 or self.k is None:
            return CachedContext(self.sink_k, self.sink_v, None, None, self.first_frame + self.frames, 0)
        assert self.v is not None
        cut = (self.frames - take) * self.tokens_per_frame
        return CachedContext(
            self.sink_k,
            self.sink_v,
            self.k[:, cut:],
            self.v[:, cut:],
            self.first_frame + self.frames - take,
            take,
        )

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.sink_k, self.sink_v, self.k, self.v) if t is not None
        )


class LayerCaches:
    """One ``SinkKVCache`` per attention layer."""

    def __init__(
        self, num_layers: int, tokens_per_frame: int, *, sink_frames: int, capacity_frames: int
    ) -> None:
        self.layers = [
            SinkKVCache(tokens_per_frame, sink_frames=sink_frames, capacity_frames=capacity_frames)
            for _ in range(num_layers)
        ]

    def __getitem__(self, i: int) -> SinkKVCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def reset(self) -> None:
        for c in self.layers:
            c.reset()

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self.layers)
