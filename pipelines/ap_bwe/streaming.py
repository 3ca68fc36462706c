"""Exact streaming AP-BWE: the published non-causal network run chunk by chunk with its convolution state carried.

The network is symmetric in time: every k7 convolution (the front conv and the 8 depthwise convs of each stream) sees
3 frames on each side, everything else is per frame, so an output frame depends on +/-27 STFT frames. Streaming runs
each convolution over the frames that arrived plus the 6 frames of input it kept from before (``ContextCarry``):
output frame t of a layer is produced as soon as that layer's input frame t + 3 exists, and nothing is recomputed.
The zeros a carry starts with are exactly the zero padding of the offline convolution, and at the end of the stream
each layer gets the 3 zero frames of its right padding, so the frames equal offline processing of the whole signal.
Around the network, the streaming STFT/ISTFT of ``buffers.stft`` (centred, reflect padding at both ends, as
``torch.stft(center=True)``) turn samples into frames and back.

For speed the weights are rearranged once (``PackedAPBWE``): activations are time-major with both streams side by
side, so LayerNorm, the interaction and the depthwise convs act on both streams at once; LayerNorm affines and layer
scales are folded into the adjacent linear layers (exact up to float rounding). Offline enhancement is the same
engine fed with large blocks of frames. In small chunks the cost is the weights' memory traffic (every chunk reads
all of them), which ``precision=bfloat16`` halves.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from buffers.conv_state import ContextCarry
from buffers.stft import StreamingISTFT, StreamingSTFT
from pipelines.ap_bwe.model import APBWE, LN_EPS, LOG_EPS, APBWEConfig


@dataclass
class PackedAPBWE:
    """The generator's weights rearranged for inference: both streams side by side (index 0 amplitude, 1 phase).

    Activations are time-major, (T, 2, C): LayerNorm and the interaction act on both streams at once, a depthwise
    conv is 7 multiply-adds over (T, 2C) rows, and each stream's linear layers are one ``addmm`` on its strided half.
    """

    config: APBWEConfig
    pre_w: list[torch.Tensor]  # per stream (bins * k, C): the front conv as a matmul over unfolded windows
    pre_b: list[torch.Tensor]  # per stream (C,)
    pre_ln_w: torch.Tensor  # (2, C)
    pre_ln_b: torch.Tensor  # (2, C)
    dw_w: list[torch.Tensor]  # per block (k, 2C): tap k of both streams' depthwise convs
    dw_b: list[torch.Tensor]  # per block (2C,)
    w1: list[list[torch.Tensor]]  # per block, per stream (C, 3C), LayerNorm scale folded in
    b1: list[list[torch.Tensor]]  # per block, per stream (3C,), LayerNorm shift folded in
    w2: list[list[torch.Tensor]]  # per block, per stream (3C, C), layer scale folded in
    b2: list[list[torch.Tensor]]  # per block, per stream (C,), layer scale folded in
    mag_w: torch.Tensor  # (C, bins), post LayerNorm folded in
    mag_b: torch.Tensor  # (bins,)
    pha_w: torch.Tensor  # (C, 2*bins): [real | imaginary] projections side by side
    pha_b: torch.Tensor  # (2*bins,)

    @classmethod
    @torch.no_grad()
    def from_module(cls, model: APBWE) -> PackedAPBWE:
        cfg = model.config
        c = cfg.channels

        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(torch.float32)

        def folded(norm: torch.nn.LayerNorm, lin: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
            # (xhat * g + s) @ W^T + b = xhat @ (g[:, None] * W^T) + (s @ W^T + b)
            wt = f32(lin.weight).t()
            return (f32(norm.weight)[:, None] * wt).contiguous(), (
                f32(norm.bias) @ wt + f32(lin.bias)
            ).contiguous()

        w1, b1, w2, b2, dw_w, dw_b = [], [], [], [], [], []
        for bm, bp in zip(model.convnext_mag, model.convnext_pha, strict=True):
            taps = torch.cat([f32(bm.dwconv.weight), f32(bp.dwconv.weight)])[:, 0, :]  # (2C, k)
            dw_w.append(taps.t().contiguous())
            dw_b.append(torch.cat([f32(bm.dwconv.bias), f32(bp.dwconv.bias)]))
            pair = [folded(bm.norm, bm.pwconv1), folded(bp.norm, bp.pwconv1)]
            w1.append([w for w, _ in pair])
            b1.append([b for _, b in pair])
            w2.append([(f32(b.pwconv2.weight).t() * f32(b.gamma)).contiguous() for b in (bm, bp)])
            b2.append([(f32(b.pwconv2.bias) * f32(b.gamma)).contiguous() for b in (bm, bp)])
        mag_w, mag_b = folded(model.norm_post_mag, model.linear_post_mag)
        pr_w, pr_b = folded(model.norm_post_pha, model.linear_post_pha_r)
        pi_w, pi_b = folded(model.norm_post_pha, model.linear_post_pha_i)
        return cls(
            config=cfg,
            # conv weight (C, bins, k) flattened as (C, bins * k) matches an unfolded window's [bin, tap] order
            pre_w=[
                f32(conv.weight).reshape(c, -1).t().contiguous()
                for conv in (model.conv_pre_mag, model.conv_pre_pha)
            ],
            pre_b=[f32(model.conv_pre_mag.bias), f32(model.conv_pre_pha.bias)],
            pre_ln_w=torch.stack([f32(model.norm_pre_mag.weight), f32(model.norm_pre_pha.weight)]),
            pre_ln_b=torch.stack([f32(model.norm_pre_mag.bias), f32(model.norm_pre_pha.bias)]),
            dw_w=dw_w,
            dw_b=dw_b,
            w1=w1,
            b1=b1,
            w2=w2,
            b2=b2,
            mag_w=mag_w,
            mag_b=mag_b,
            pha_w=torch.cat([pr_w, pi_w], dim=1).contiguous(),
            pha_b=torch.cat([pr_b, pi_b]).contiguous(),
        )

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def matmul_dtype(self) -> torch.dtype:
        w = self.w1[0][0]
        return torch.int8 if isinstance(w, Int8Linear) else w.dtype

    def with_matmul_dtype(self, dtype: torch.dtype) -> PackedAPBWE:
        """A copy whose linear layers (weights and biases) are stored and multiplied in ``dtype``.

        bfloat16 halves the weight traffic and uses the CPU's bf16 dot products (AVX512-BF16, AMX): about twice as
        fast, at ~3 significant digits per product instead of float32's. Convolutions, LayerNorms and the residual
        stream stay float32. float32 is the official model's arithmetic.
        """

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype).contiguous()

        return replace(
            self,
            pre_w=[cast(w) for w in self.pre_w],
            pre_b=[cast(b) for b in self.pre_b],
            w1=[[cast(w) for w in ws] for ws in self.w1],
            b1=[[cast(b) for b in bs] for bs in self.b1],
            w2=[[cast(w) for w in ws] for ws in self.w2],
            b2=[[cast(b) for b in bs] for bs in self.b2],
            mag_w=cast(self.mag_w),
            mag_b=cast(self.mag_b),
            pha_w=cast(self.pha_w),
            pha_b=cast(self.pha_b),
        )

    def with_precision(self, precision: str) -> PackedAPBWE:
        """The engine for a ``precision`` parameter: "float32" (this one, the official arithmetic), "bfloat16" or
        "int8"."""
        if precision == "float32":
            return self
        if precision == "int8":
            return self.with_int8()
        if precision == "bfloat16":
            return self.with_matmul_dtype(torch.bfloat16)
        raise ValueError(f"unknown precision {precision!r}; use float32, bfloat16 or int8")

    def with_int8(self) -> PackedAPBWE:
        """A copy whose linear layers run as int8 matmuls (``Int8Linear``): the weights take a quarter of the
        memory, and in small chunks, where every chunk reads all of them, that is what the time goes to."""
        q = Int8Linear
        return replace(
            self,
            pre_w=[q(w, b) for w, b in zip(self.pre_w, self.pre_b, strict=True)],
            w1=[
                [q(w, b) for w, b in zip(ws, bs, strict=True)]
                for ws, bs in zip(self.w1, self.b1, strict=True)
            ],
            w2=[
                [q(w, b) for w, b in zip(ws, bs, strict=True)]
                for ws, bs in zip(self.w2, self.b2, strict=True)
            ],
            mag_w=q(self.mag_w, self.mag_b),
            pha_w=q(self.pha_w, self.pha_b),
        )


class Int8Linear:
    """x @ w + b with w quantised to int8 per output channel and x to 8 bits per call (dynamic quantisation),
    accumulated in int32 by fbgemm (x86, AVX2) or the platform's quantised engine.

    Why: streamed in 20 ms chunks the full-size model reads its 119 MB of float32 weights once per chunk; that does
    not fit in the cache, so streaming is bound by memory traffic. In int8 they are 30 MB. Not the official
    arithmetic: outputs move by about 1e-2 (relative), like ``bfloat16``'s, which is no faster on CPUs without bf16
    dot products. The bias stays float32 inside the packed weight.
    """

    def __init__(self, w: torch.Tensor, bias: torch.Tensor) -> None:
        wt = w.detach().to(torch.float32).t().contiguous()  # (out, in)
        scale = (wt.abs().amax(dim=1) / 127).clamp_min(1e-12).to(torch.float64)
        zero = torch.zeros(wt.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            # quantised tensors are marked for removal in a future torch; the pinned 2.13 has them, and the packed
            # weight is all that is kept
            warnings.simplefilter("ignore", UserWarning)
            qw = torch.quantize_per_channel(wt, scale, zero, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(qw, bias.detach().to(torch.float32).contiguous())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range: 7-bit activations, so that AVX2's 16-bit pairwise sums of u8 x s8 products cannot saturate
        return torch.ops.quantized.linear_dynamic(x.to(torch.float32).contiguous(), self.packed, True)


def _linear(bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor | Int8Linear) -> torch.Tensor:
    """x @ w + bias in the weights' dtype (float32, or bfloat16 with ``with_matmul_dtype``), or as an int8 matmul
    (``with_int8``: the bias is inside the packed weight)."""
    if isinstance(w, Int8Linear):
        return w(x)
    if x.dtype != w.dtype:
        x = x.to(w.dtype)
    return torch.addmm(bias, x, w)


class _SymmetricConv:
    """The streamed input of one zero-padded symmetric convolution along time (dim 0 of a time-major tensor).

    The carry holds the last ``2 * pad`` input frames, starting as zeros: the offline left padding. A valid
    convolution over carry + new frames yields as many frames as arrived, ``pad`` frames late; the first ``pad`` of
    them would be frames -pad..-1, which the offline layer never computes (its next layer sees zero padding there),
    so they are dropped.
    """

    def __init__(self, pad: int) -> None:
        self.pad = pad
        self.carry = ContextCarry(2 * pad, dim=0)
        self.to_drop = pad

    def reset(self) -> None:
        self.carry.reset()
        self.to_drop = self.pad

    def window(self, x: torch.Tensor, *, final: bool) -> torch.Tensor:
        """x with its left context (and, at the end of the stream, the right zero padding)."""
        if final:
            x = torch.cat([x, x.new_zeros(self.pad, *x.shape[1:])])
        return self.carry(x)

    def trim(self, y: torch.Tensor) -> torch.Tensor:
        if self.to_drop:
            n = min(self.to_drop, y.shape[0])
            self.to_drop -= n
            y = y[n:]
        return y


class FrameStream:
    """The network over STFT frames, streamed: push (log amplitude, phase) frames, get wideband frames back once
    their receptive field is complete; ``flush`` applies the right-hand zero padding and returns the rest."""

    def __init__(self, packed: PackedAPBWE) -> None:
        self.p = packed
        cfg = packed.config
        pad = cfg.kernel // 2
        self.pre = _SymmetricConv(pad)
        self.blocks = [_SymmetricConv(pad) for _ in range(cfg.layers)]
        self.reset()

    def reset(self) -> None:
        self.pre.reset()
        for b in self.blocks:
            b.reset()
        # Narrowband log amplitudes waiting for their output frame (the residual of the amplitude stream).
        self.pending_mag = torch.zeros(0, self.p.config.bins)
        self.frames_in = 0
        self.frames_out = 0

    @property
    def delay(self) -> int:
        """Frames pushed but not yet output (the receptive field's lookahead once the stream runs)."""
        return self.frames_in - self.frames_out

    @torch.inference_mode()
    def push(self, mag: torch.Tensor, pha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mag, pha: (T, bins) narrowband frames -> (T', bins) wideband log amplitude and phase frames."""
        return self._run(mag, pha, final=False)

    @torch.inference_mode()
    def flush(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The remaining frames (zero padding on the right, as offline); the stream starts afresh afterwards."""
        empty = torch.zeros(0, self.p.config.bins)
        out = self._run(empty, empty, final=True)
        self.reset()
        return out

    def _run(self, mag: torch.Tensor, pha: torch.Tensor, *, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        p, cfg = self.p, self.p.config
        c, bins = cfg.channels, cfg.bins
        self.frames_in += mag.shape[0]
        if mag.shape[0]:
            self.pending_mag = torch.cat([self.pending_mag, mag])
        x = self._front(torch.stack([mag, pha], dim=1), final=final)  # (T, 2, C)
        for i, conv in enumerate(self.blocks):
            if x.shape[0]:
                # interaction: amplitude += phase, then phase += the updated amplitude
                x[:, 0] += x[:, 1]
                x[:, 1] += x[:, 0]
            x = self._block(i, conv, x, final=final)
        t = x.shape[0]
        if t == 0:
            return torch.zeros(0, bins), torch.zeros(0, bins)
        h = F.layer_norm(x, (c,), eps=LN_EPS)
        mag_nb, self.pending_mag = self.pending_mag[:t], self.pending_mag[t:]
        mag_wb = _linear(p.mag_b, h[:, 0], p.mag_w).float().add_(mag_nb)
        ri = _linear(p.pha_b, h[:, 1], p.pha_w).float()
        pha_wb = torch.atan2(ri[:, bins:], ri[:, :bins])
        self.frames_out += t
        return mag_wb, pha_wb

    def _front(self, x: torch.Tensor, *, final: bool) -> torch.Tensor:
        """(T, 2, bins) narrowband frames -> (T', 2, C): front conv (as a matmul over unfolded windows) + LayerNorm."""
        p, cfg = self.p, self.p.config
        k, c = cfg.kernel, cfg.channels
        win = self.pre.window(x, final=final)  # (L, 2, bins)
        n = win.shape[0] - (k - 1)
        if n <= 0:
            return x.new_zeros(0, 2, c)
        cols = win.unfold(0, k, 1)  # (n, 2, bins, k)
        y = torch.empty(n, 2, c)
        for s in range(2):
            y[:, s] = _linear(p.pre_b[s], cols[:, s].reshape(n, -1), p.pre_w[s])
        y = F.layer_norm(y, (c,), eps=LN_EPS).mul_(p.pre_ln_w).add_(p.pre_ln_b)
        return self.pre.trim(y)

    def _block(self, i: int, conv: _SymmetricConv, x: torch.Tensor, *, final: bool) -> torch.Tensor:
        """One ConvNeXt block of both streams on (T, 2, C) input -> (T', 2, C)."""
        p = self.p
        c, k = p.channels, p.config.kernel
        win = conv.window(x, final=final)  # (L, 2, C)
        n = win.shape[0] - (k - 1)
        if n <= 0:
            return x.new_zeros(0, 2, c)
        flat = win.reshape(win.shape[0], 2 * c)
        taps = p.dw_w[i]
        h = torch.addcmul(p.dw_b[i], flat[0:n], taps[0])
        for j in range(1, k):
            h.addcmul_(flat[j : j + n], taps[j])
        h = F.layer_norm(h.view(n, 2, c), (c,), eps=LN_EPS)
        y = win[conv.pad : conv.pad + n].clone()  # the residual
        for s in range(2):
            a = F.gelu(_linear(p.b1[i][s], h[:, s], p.w1[i][s]))
            y[:, s] += _linear(p.b2[i][s], a, p.w2[i][s])
        return conv.trim(y)


class AudioStream:
    """Samples in, samples out: streaming STFT -> ``FrameStream`` -> streaming ISTFT.

    ``push`` returns the output samples that are final; ``flush`` returns the rest, so that the total equals the
    number of samples pushed (the offline ISTFT's ``length``).
    """

    def __init__(self, packed: PackedAPBWE) -> None:
        cfg = packed.config
        self.config = cfg
        self.frames = FrameStream(packed)
        self.stft = StreamingSTFT(cfg.n_fft, cfg.hop, cfg.win, padding="center")
        self.istft = StreamingISTFT(cfg.n_fft, cfg.hop, cfg.win, padding="center")
        self.samples_in = 0

    def reset(self) -> None:
        self.frames.reset()
        self.stft.reset()
        self.istft.reset()
        self.samples_in = 0

    # no_grad, not inference_mode, here: the samples returned are ordinary tensors that callers may modify in place
    @torch.no_grad()
    def push(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (S,) float32 at the target rate -> (S',) output samples that are final now."""
        self.samples_in += audio.shape[-1]
        spec = self.stft.push(audio)
        return self._frames_to_audio(spec, final=False)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        length = self.samples_in
        if length == 0:
            self.reset()
            return torch.zeros(0)
        spec = self.stft.flush()
        out = self._frames_to_audio(spec, final=True, length=length)
        self.reset()
        return out

    def _frames_to_audio(self, spec: torch.Tensor, *, final: bool, length: int | None = None) -> torch.Tensor:
        parts = []
        if spec.shape[-1]:
            mag = torch.log(spec.abs() + LOG_EPS).T  # (T, bins)
            pha = torch.angle(spec).T
            mag_wb, pha_wb = self.frames.push(mag, pha)
            if mag_wb.shape[0]:
                parts.append(self.istft.push(torch.polar(torch.exp(mag_wb), pha_wb).T))
        if final:
            mag_wb, pha_wb = self.frames.flush()
            if mag_wb.shape[0]:
                parts.append(self.istft.push(torch.polar(torch.exp(mag_wb), pha_wb).T))
            parts.append(self.istft.flush(length=length))
        if not parts:
            return torch.zeros(0)
        return torch.cat(parts) if len(parts) > 1 else parts[0]


@torch.no_grad()
def enhance(packed: PackedAPBWE, audio: torch.Tensor, block_frames: int = 1024) -> torch.Tensor:
    """Offline bandwidth extension of a whole (S,) signal: the streaming engine fed in blocks of frames.

    The blocks keep the working set of each layer in cache; the result is the offline network's (carried state
    makes block boundaries invisible).
    """
    stream = AudioStream(packed)
    hop = packed.config.hop
    step = block_frames * hop
    parts = [stream.push(audio[i : i + step]) for i in range(0, audio.shape[-1], step)]
    parts.append(stream.flush())
    return torch.cat(parts)
