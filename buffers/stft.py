"""Streaming STFT and inverse STFT that give exactly what the offline transforms give over the whole signal.

Audio generators that work on spectrograms (AP-BWE, BinauralFlow) receive audio in chunks of any length. These
classes turn chunks into complete STFT frames as soon as a frame's samples exist, and overlap-add frames back into
samples as soon as no later frame can change them, carrying the samples in between. Nothing is recomputed per chunk,
and the concatenated results equal the offline transform of the concatenated input.

Two framings:

- ``"center"``: torch's ``center=True, pad_mode="reflect"``: frame ``t`` is centred on sample ``t * hop``, and the
  signal is reflect-padded by ``n_fft // 2`` on both sides. Non-causal: the first frame needs the first
  ``n_fft // 2 + 1`` samples (for the reflection), and the last ones wait for the end of the stream.
- ``"causal"``: frame ``t`` covers samples ``[(t + 1) * hop - n_fft, (t + 1) * hop)`` (zeros before the start), so it
  is complete as soon as sample ``(t + 1) * hop - 1`` arrives. At the end a last partial hop is zero-padded.

The window is ``win_length`` long (Hann by default, torch's periodic one) and is zero-padded to ``n_fft`` in the
middle, as torch does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Padding = Literal["center", "causal"]

# torch.istft refuses to divide by a window envelope below this; samples there come out as zeros here.
_ENVELOPE_EPS = 1e-11


def _window(n_fft: int, win_length: int | None, window: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """The analysis window zero-padded to ``n_fft`` (as torch.stft does) and its offset inside the frame."""
    win_length = n_fft if win_length is None else win_length
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length must be in 1..n_fft={n_fft}; got {win_length}")
    w = torch.hann_window(win_length) if window is None else window.detach().to(torch.float32)
    if w.shape != (win_length,):
        raise ValueError(f"window must have win_length={win_length} samples; got {tuple(w.shape)}")
    left = (n_fft - win_length) // 2
    return F.pad(w, (left, n_fft - win_length - left)), left


def _check(n_fft: int, hop: int, padding: str) -> None:
    if padding not in ("center", "causal"):
        raise ValueError(f"padding must be 'center' or 'causal'; got {padding!r}")
    if not 0 < hop <= n_fft:
        raise ValueError(f"hop must be in 1..n_fft={n_fft}; got {hop}")


def _check_causal_window(padding: str, n_fft: int, win_length: int | None) -> None:
    # A window shorter than the frame sits in its middle; causal frames would then never cover the last samples.
    if padding == "causal" and win_length not in (None, n_fft):
        raise ValueError(f"causal framing needs win_length == n_fft ({n_fft}); got {win_length}")


def _frames(padded: torch.Tensor, n_fft: int, hop: int, count: int, window: torch.Tensor) -> torch.Tensor:
    """``count`` frames of an already padded signal (..., S) -> complex (..., n_fft // 2 + 1, count)."""
    if count <= 0:
        return torch.zeros(*padded.shape[:-1], n_fft // 2 + 1, 0, dtype=torch.complex64, device=padded.device)
    chunk = padded[..., : (count - 1) * hop + n_fft]
    spec = torch.fft.rfft(chunk.unfold(-1, n_fft, hop) * window.to(padded), dim=-1)  # (..., T, F)
    return spec.transpose(-1, -2)


def _reflect(x: torch.Tensor, pad: int, side: Literal["left", "right"]) -> torch.Tensor:
    """The ``pad`` samples reflect padding puts on one side (zeros when the signal is too short to reflect)."""
    if x.shape[-1] <= pad:
        # torch.stft refuses to reflect a signal shorter than the padding; zero padding keeps short streams usable
        return x.new_zeros(*x.shape[:-1], pad)
    if side == "left":
        return x[..., 1 : pad + 1].flip(-1)
    return x[..., -pad - 1 : -1].flip(-1)


def stft(
    x: torch.Tensor,
    n_fft: int,
    hop: int,
    win_length: int | None = None,
    *,
    padding: Padding = "center",
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Offline STFT of a whole signal (..., S) -> complex (..., n_fft // 2 + 1, T), the reference the streaming
    class reproduces. ``"center"`` is ``torch.stft(center=True, pad_mode="reflect")``."""
    _check(n_fft, hop, padding)
    _check_causal_window(padding, n_fft, win_length)
    win, _ = _window(n_fft, win_length, window)
    if padding == "center":
        pad = n_fft // 2
        padded = torch.cat([_reflect(x, pad, "left"), x, _reflect(x, pad, "right")], dim=-1)
        count = 1 + x.shape[-1] // hop
    else:
        count = -(-x.shape[-1] // hop)
        padded = F.pad(x, (n_fft - hop, count * hop - x.shape[-1]))
    return _frames(padded, n_fft, hop, count, win)


class StreamingSTFT:
    """Chunks of samples in, complete STFT frames out (see the module docstring for the two framings)."""

    def __init__(
        self,
        n_fft: int,
        hop: int,
        win_length: int | None = None,
        *,
        padding: Padding = "center",
        window: torch.Tensor | None = None,
    ) -> None:
        _check(n_fft, hop, padding)
        _check_causal_window(padding, n_fft, win_length)
        self.n_fft, self.hop, self.padding = n_fft, hop, padding
        self.window, left = _window(n_fft, win_length, window)
        self._raw_window = self.window[left : left + (n_fft if win_length is None else win_length)]
        self._win_end = left + len(self._raw_window)  # a frame needs its samples up to here
        self.reset()

    def reset(self) -> None:
        self.frames_emitted = 0
        self.samples_in = 0
        self._buf: torch.Tensor | None = None  # padded signal from padded index frames_emitted * hop on
        self._head: torch.Tensor | None = None  # center: raw samples held until the left reflection is known
        self._tail: torch.Tensor | None = (
            None  # center: the last n_fft // 2 + 1 raw samples (right reflection)
        )
        self._flushed = False

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        """Add samples (..., S); returns the frames (..., F, T_new) that are complete now."""
        if self._flushed:
            raise RuntimeError("StreamingSTFT: push after flush; call reset() to start a new stream")
        samples = samples.to(torch.float32)
        self.samples_in += samples.shape[-1]
        if self.padding == "causal":
            if self._buf is None:
                self._buf = samples.new_zeros(*samples.shape[:-1], self.n_fft - self.hop)
            self._buf = torch.cat([self._buf, samples], dim=-1)
            return self._emit()
        pad = self.n_fft // 2
        tail = samples if self._tail is None else torch.cat([self._tail, samples], dim=-1)
        self._tail = tail[..., -(pad + 1) :]
        if self._buf is None:
            self._head = samples if self._head is None else torch.cat([self._head, samples], dim=-1)
            if self._head.shape[-1] < pad + 1:
                return self._empty(samples)
            self._buf = torch.cat([_reflect(self._head, pad, "left"), self._head], dim=-1)
            self._head = None
        else:
            self._buf = torch.cat([self._buf, samples], dim=-1)
        return self._emit()

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining frames (center: with the right reflection; causal: a zero-padded last hop)."""
        if self._flushed:
            raise RuntimeError("StreamingSTFT: flushed twice; call reset() to start a new stream")
        self._flushed = True
        pad = self.n_fft // 2
        if self.padding == "causal":
            if self._buf is None:
                return torch.zeros(0, self.n_fft // 2 + 1, 0, dtype=torch.complex64)
            total = -(-self.samples_in // self.hop)
            self._buf = F.pad(self._buf, (0, total * self.hop - self.samples_in))
            return self._emit()
        if self._buf is None:  # shorter than the reflection: the whole (tiny) stream at once
            if self._head is None:
                return torch.zeros(0, self.n_fft // 2 + 1, 0, dtype=torch.complex64)
            head, self._head = self._head, None
            return stft(head, self.n_fft, self.hop, len(self._raw_window), window=self._raw_window)
        assert self._tail is not None
        self._buf = torch.cat([self._buf, _reflect(self._tail, pad, "right")], dim=-1)
        return self._emit(total=1 + self.samples_in // self.hop)

    def _emit(self, total: int | None = None) -> torch.Tensor:
        """Frames whose window (not the whole n_fft frame) lies inside the buffer: a window shorter than n_fft
        sits in the middle of its frame, and the zeros around it need no samples (AP-BWE: 320 of 1024)."""
        assert self._buf is not None
        have, need = self._buf.shape[-1], self._win_end
        count = (have - need) // self.hop + 1 if have >= need else 0
        if total is not None:
            count = min(count, total - self.frames_emitted)
        buf = self._buf
        if count and (short := (count - 1) * self.hop + self.n_fft - have) > 0:
            buf = F.pad(buf, (0, short))  # under the window's zero tail: the values never count
        out = _frames(buf, self.n_fft, self.hop, count, self.window)
        if count:
            self._buf = self._buf[..., count * self.hop :]
            self.frames_emitted += count
        return out

    def _empty(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*like.shape[:-1], self.n_fft // 2 + 1, 0, dtype=torch.complex64)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(..., T, n) windowed frames -> (..., n + hop * (T - 1)) summed at their offsets."""
    *lead, count, n = frames.shape
    flat = frames.reshape(-1, count, n).transpose(1, 2)  # (B, n, T)
    length = n + hop * (count - 1)
    out = F.fold(flat, output_size=(1, length), kernel_size=(1, n), stride=(1, hop))  # (B, 1, 1, L)
    return out.reshape(*lead, length)


class StreamingISTFT:
    """Complete STFT frames in, final samples out: the inverse of ``StreamingSTFT`` with the same framing.

    A sample is final once no later frame's (nonzero) window reaches it. Samples are the window-weighted overlap-add
    divided by the window-square envelope, exactly as ``torch.istft`` computes them.
    """

    def __init__(
        self,
        n_fft: int,
        hop: int,
        win_length: int | None = None,
        *,
        padding: Padding = "center",
        window: torch.Tensor | None = None,
    ) -> None:
        _check(n_fft, hop, padding)
        _check_causal_window(padding, n_fft, win_length)
        self.n_fft, self.hop, self.padding = n_fft, hop, padding
        self.window, self._win_offset = _window(n_fft, win_length, window)
        # where output sample 0 sits in the padded frame coordinates
        self._origin = n_fft // 2 if padding == "center" else n_fft - hop
        self.reset()

    def reset(self) -> None:
        self.frames_in = 0
        self.samples_out = 0
        self._acc: torch.Tensor | None = None  # overlap-add sums from padded index _start on
        self._env: torch.Tensor | None = None
        self._start = 0

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """Add frames (..., F, T); returns the samples (..., S_new) that no later frame can change."""
        self._add(frames)
        # the next frame starts at frames_in * hop; its window is zero before the offset
        return self._take(self.frames_in * self.hop + self._win_offset)

    def flush(self, length: int | None = None) -> torch.Tensor:
        """The remaining samples. ``length``: the total output length (trimmed or zero-padded, as torch.istft's)."""
        if self.padding == "center":
            default = self.hop * (self.frames_in - 1) if self.frames_in else 0
        else:
            default = self.hop * self.frames_in
        total = default if length is None else length
        if total < self.samples_out:
            raise ValueError(f"length {total} is shorter than the {self.samples_out} samples already emitted")
        out = self._take(self._origin + min(total, default + self.n_fft))
        missing = total - self.samples_out
        if missing > 0:  # beyond the last frame: zeros, as torch.istft pads
            out = torch.cat([out, out.new_zeros(*out.shape[:-1], missing)], dim=-1)
            self.samples_out += missing
        elif missing < 0:
            out = out[..., : out.shape[-1] + missing]
            self.samples_out += missing
        return out

    def _add(self, frames: torch.Tensor) -> None:
        count = frames.shape[-1]
        if count == 0:
            return
        win = self.window.to(frames.real)
        time = torch.fft.irfft(frames.transpose(-1, -2), n=self.n_fft, dim=-1) * win  # (..., T, n_fft)
        ola = _overlap_add(time, self.hop)
        env = _overlap_add((win * win).expand(count, self.n_fft), self.hop)
        offset = self.frames_in * self.hop  # padded index of this batch's first frame
        if self._acc is None:
            self._acc = time.new_zeros(*time.shape[:-2], 0)
            self._env = time.new_zeros(0)
            self._start = offset
        assert self._env is not None
        need = offset + ola.shape[-1] - self._start
        if need > self._acc.shape[-1]:
            grow = need - self._acc.shape[-1]
            self._acc = F.pad(self._acc, (0, grow))
            self._env = F.pad(self._env, (0, grow))
        at = offset - self._start
        if at < 0:
            # samples before _start were emitted already: they lie in the zero part of these frames' window
            ola, env, at = ola[..., -at:], env[-at:], 0
        self._acc[..., at : at + ola.shape[-1]] += ola
        self._env[at : at + env.shape[-1]] += env
        self.frames_in += count

    def _take(self, final_end: int) -> torch.Tensor:
        """Emit output samples up to padded index ``final_end`` (exclusive) and drop them from the buffers."""
        begin = self._origin + self.samples_out  # padded index of the next output sample
        if self._acc is None or final_end <= begin:
            lead = () if self._acc is None else self._acc.shape[:-1]
            return torch.zeros(*lead, 0)
        assert self._env is not None
        lo, hi = begin - self._start, final_end - self._start
        hi = min(hi, self._acc.shape[-1])
        acc, env = self._acc[..., lo:hi], self._env[lo:hi]
        out = torch.where(env > _ENVELOPE_EPS, acc / env.clamp_min(_ENVELOPE_EPS), torch.zeros_like(acc))
        self.samples_out += out.shape[-1]
        self._acc, self._env = self._acc[..., hi:], self._env[hi:]
        self._start += hi
        return out


def istft(
    frames: torch.Tensor,
    n_fft: int,
    hop: int,
    win_length: int | None = None,
    *,
    padding: Padding = "center",
    window: torch.Tensor | None = None,
    length: int | None = None,
) -> torch.Tensor:
    """Offline inverse of ``stft`` with the same framing (``"center"`` matches ``torch.istft(center=True)``)."""
    inverse = StreamingISTFT(n_fft, hop, win_length, padding=padding, window=window)
    head = inverse.push(frames)
    return torch.cat([head, inverse.flush(length)], dim=-1)
