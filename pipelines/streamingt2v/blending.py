"""StreamingT2V's randomized blending for the enhancement pass.

The video is cut into chunks of ``chunk`` (24) frames overlapping by ``overlap`` (8); all chunks share ONE noise
tensor over the whole video. At every denoising step each chunk is denoised on its own, and the video is rebuilt from
the chunks: chunk k overwrites the video from ``start_k + r_k`` with ``r_k ~ U{0..O_k-1}`` (O_k its overlap with chunk
k-1) up to where chunk k+1 starts writing. Each frame is written exactly once per step, and the seam between two chunks
moves randomly from step to step, so no fixed seam survives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def chunk_starts(total: int, chunk: int, overlap: int) -> list[int]:
    """Starts of chunks covering ``total`` frames with stride ``chunk - overlap``; the last one ends at ``total``."""
    if total <= chunk:
        return [0]
    stride = chunk - overlap
    if stride < 1:
        raise ValueError(f"overlap ({overlap}) must be smaller than the chunk ({chunk})")
    starts = list(range(0, total - chunk + 1, stride))
    if starts[-1] + chunk < total:
        starts.append(total - chunk)
    return starts


@dataclass
class Write:
    chunk: int
    start: int  # first frame written (video index)
    end: int  # one past the last


def write_plan(starts: list[int], chunk: int, total: int, gen: torch.Generator) -> list[Write]:
    """Which frames each chunk writes in one step: chunk k from start_k + r_k (random inside its overlap with
    chunk k-1) to where chunk k+1 begins writing."""
    begins = [0]
    for k in range(1, len(starts)):
        # the seam lies inside chunk k's overlap with chunk k-1, after chunk k-1's own seam
        low = max(starts[k], begins[-1] + 1)
        high = starts[k - 1] + chunk  # exclusive: chunk k-1 ends there
        begins.append(low + int(torch.randint(max(1, high - low), (1,), generator=gen)))
    ends = begins[1:] + [total]
    return [Write(k, b, e) for k, (b, e) in enumerate(zip(begins, ends, strict=True))]


def blended_denoise(
    x: torch.Tensor,
    timesteps: list[torch.Tensor],
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    chunk: int,
    overlap: int,
    gen: torch.Generator,
    fixed: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    on_write: Callable[[int, list[Write]], None] | None = None,
) -> torch.Tensor:
    """Denoise a long video x (B, C, T, h, w) over ``timesteps`` with randomized blending.

    ``step(x_chunk, t) -> x_prev_chunk`` denoises one chunk by one step. ``fixed(x, i)`` may overwrite frames after
    each step (frames already emitted that the video must keep). ``on_write(step, plan)`` sees each step's plan.
    """
    total = x.shape[2]
    starts = chunk_starts(total, chunk, overlap)
    for i, t in enumerate(timesteps):
        plan = write_plan(starts, min(chunk, total), total, gen)
        new = torch.empty_like(x)
        for w in plan:
            s = starts[w.chunk]
            out = step(x[:, :, s : s + chunk], t)
            new[:, :, w.start : w.end] = out[:, :, w.start - s : w.end - s]
        x = new
        if fixed is not None:
            x = fixed(x, i)
        if on_write is not None:
            on_write(i, plan)
    return x
