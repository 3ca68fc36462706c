"""Sample-rate conversion for audio generators, through libsoxr (the ``soxr`` package).

soxr's "HQ" quality is a well-tested polyphase resampler with a steep anti-aliasing filter: what a bandwidth-extension
model expects as its "plain resampling" input (and baseline). Tensors in, tensors out, shape (channels, samples).
"""

from __future__ import annotations

import numpy as np
import soxr
import torch

QUALITY = "HQ"


def resampled_length(samples: int, orig_sr: int, target_sr: int) -> int:
    return round(samples * target_sr / orig_sr)


def resample(x: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample a whole signal (C, S) -> (C, round(S * target / orig)), float32."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive; got {orig_sr} -> {target_sr}")
    x = x.detach().to(torch.float32).cpu()
    if orig_sr == target_sr:
        return x.clone()
    if x.shape[-1] == 0:
        return x.new_zeros(x.shape[0], 0)
    y = soxr.resample(np.ascontiguousarray(x.numpy().T), orig_sr, target_sr, quality=QUALITY)
    out = torch.from_numpy(np.ascontiguousarray(y.T)).to(torch.float32)
    want = resampled_length(x.shape[-1], orig_sr, target_sr)
    if out.shape[-1] < want:
        out = torch.nn.functional.pad(out, (0, want - out.shape[-1]))
    return out[..., :want]


class StreamResampler:
    """Chunk-by-chunk resampling with the filter state carried; the total length is exact after ``flush``."""

    def __init__(self, orig_sr: int, target_sr: int, channels: int) -> None:
        self.orig_sr, self.target_sr, self.channels = orig_sr, target_sr, channels
        self._identity = orig_sr == target_sr
        self.reset()

    def reset(self) -> None:
        self.samples_in = 0
        self.samples_out = 0
        self._stream = (
            None
            if self._identity
            else soxr.ResampleStream(
                self.orig_sr, self.target_sr, self.channels, dtype="float32", quality=QUALITY
            )
        )

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, last=False)

    def flush(self) -> torch.Tensor:
        out = self._run(torch.zeros(self.channels, 0), last=True)
        want = resampled_length(self.samples_in, self.orig_sr, self.target_sr)
        have = self.samples_out
        if have < want:  # soxr can come up a sample short of the exact ratio: pad with silence
            out = torch.cat([out, out.new_zeros(self.channels, want - have)], dim=-1)
        elif have > want:
            out = out[..., : out.shape[-1] - (have - want)]
        self.samples_out = want
        return out

    def _run(self, x: torch.Tensor, *, last: bool) -> torch.Tensor:
        if x.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels; got {x.shape[0]}")
        x = x.detach().to(torch.float32).cpu()
        self.samples_in += x.shape[-1]
        if self._stream is None:
            self.samples_out += x.shape[-1]
            return x.clone()
        y = self._stream.resample_chunk(np.ascontiguousarray(x.numpy().T), last=last)
        out = torch.from_numpy(np.ascontiguousarray(y.T)).to(torch.float32).reshape(self.channels, -1)
        self.samples_out += out.shape[-1]
        return out
