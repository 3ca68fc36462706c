"""A small streaming speech codec: 16 kHz mono <-> 50 Hz steps of 4 FSQ codes (1000 each), X-Streamer's audio tokens.

X-Streamer's Actor emits discrete audio tokens interleaved with its text tokens and video latents; this codec makes
those tokens from speech (to build training targets) and turns them back into a waveform on the session clock.

- **Encoder** (offline, non-causal): strided convs (strides 2, 4, 5, 8 = hop 320) with residual units, then
  ``groups x len(levels)`` latent dims per step. It sees a few steps of future audio, which is harmless: encoding only
  runs on recorded speech when data is prepared.
- **Quantiser**: Finite Scalar Quantisation (Mentzer et al. 2023). Each latent dim is bounded with tanh to its level
  count and rounded with a straight-through gradient; a group's code is the mixed-radix number of its rounded digits.
  No codebook to learn or collapse, and every one of the 8*5*5*5 = 1000 codes decodes to something.
- **Decoder** (causal): the encoder mirrored with left padding only; each upsampler is a transposed conv trimmed
  causally (written as a kernel-2 causal conv + pixel shuffle, the same function but faster), so output block ``i``
  depends on input steps ``<= i``. Samples of step ``s`` therefore depend on codes ``<= s`` only,
  and ``CodecStreamDecoder`` decodes any split of a code sequence to the same samples as ``decode`` of the whole,
  carrying each layer's left context between pushes (``buffers.conv_state.StateBank``).

Training losses: multi-resolution STFT (log-magnitude L1 + spectral convergence) + log-mel L1 + a small waveform L1,
plus a penalty on latents outside tanh's live range (see ``train_codec``).
No adversarial loss (its cost does not fit this machine's training budget); the output is therefore smoother than a
GAN codec's, which is acceptable for an intelligibility-level talking-head stream.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from buffers.conv_state import StateBank
from streamrt.errors import InputError, ParamError

log = logging.getLogger(__name__)

CONFIG, WEIGHTS = "config.json", "model.safetensors"
KIND = "audio-codec"


# ------------------------------------------------------------------------------------------------------ config
@dataclass
class AudioCodecConfig:
    sample_rate: int = 16000
    hop: int = 320  # samples per token step: 20 ms, 2 steps per 25 fps video frame
    groups: int = 4  # FSQ codes per step
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels per latent dim of a group: 1000 codes
    channels: int = (
        12  # width at the sample rate; doubles after each stride, capped at max_channels (12: >= 20x RT)
    )
    max_channels: int = (
        128  # caps the low-rate stages, where most parameters live (keeps the codec < 3 M params)
    )
    strides: tuple[int, ...] = (2, 4, 5, 8)  # encoder order; product == hop; the decoder upsamples in reverse
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation after each resampling
    kernel: int = 7  # residual-unit kernel

    def __post_init__(self) -> None:
        self.levels = tuple(int(v) for v in self.levels)
        self.strides = tuple(int(v) for v in self.strides)
        self.dilations = tuple(int(v) for v in self.dilations)
        if math.prod(self.strides) != self.hop:
            raise ParamError(
                f"strides {self.strides} multiply to {math.prod(self.strides)}, not hop={self.hop}"
            )
        if any(v < 2 for v in self.levels):
            raise ParamError(f"FSQ levels must all be >= 2; got {self.levels}")
        if self.groups < 1 or self.channels < 1 or self.kernel < 1:
            raise ParamError("groups, channels and kernel must be positive")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def latent_dim(self) -> int:
        return self.groups * len(self.levels)

    def widths(self) -> list[int]:
        """Channels at the sample rate and after each encoder stride: [c0, c1, ..., c_len(strides)]."""
        return [min(self.channels * 2**i, self.max_channels) for i in range(len(self.strides) + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioCodecConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ParamError(f"unknown audio codec config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ------------------------------------------------------------------------------------------------------- FSQ
class FSQ(nn.Module):
    """Finite Scalar Quantisation of (..., len(levels)) vectors into one code in [0, prod(levels))."""

    def __init__(self, levels: Sequence[int], eps: float = 1e-3) -> None:
        super().__init__()
        lv = torch.tensor(list(levels), dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        # Mixed-radix place values: digit d has weight prod(levels[:d]).
        self.register_buffer(
            "basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False
        )
        self.eps = eps

    @property
    def codebook_size(self) -> int:
        return int(self.levels.prod())

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """tanh-bound each dim so that rounding gives exactly L values (for even L the grid is offset by 1/2)."""
        lv = self.levels.to(z.dtype)
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., D) -> (z_q in [-1, 1] (..., D) with a straight-through gradient, indices (...) long)."""
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through estimator
        half_width = (self.levels // 2).to(z.dtype)
        digits = (rounded.detach() + half_width).round().long()  # (..., D) in [0, L)
        indices = (digits * self.basis).sum(-1)
        return rounded / half_width, indices

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) long -> (..., D) float in [-1, 1]: the z_q that ``quantize`` gives for these indices."""
        if indices.dtype not in (torch.int32, torch.int64):
            raise InputError(f"FSQ indices must be integer; got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise InputError(f"FSQ indices must lie in [0, {self.codebook_size}); got {int(indices.max())}")
        digits = (indices.long()[..., None] // self.basis) % self.levels
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()


# ---------------------------------------------------------------------------------------- causal conv layers
# GELU rather than ELU/SiLU: as smooth, but ~10x cheaper than ELU and ~4x cheaper than SiLU on one CPU thread (measured
# on 32 x 80k tensors), and activations at 8-16 kHz are a large share of the decoder's real-time budget.
_act = F.gelu


class CausalConv(nn.Conv1d):
    """A Conv1d padded on the left only: output t sees inputs <= t. With a StateBank it streams (the carried context
    replaces the zero padding)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, dilation=dilation)
        self.context = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor, state: StateBank | None = None) -> torch.Tensor:  # (B, C, T)
        x = F.pad(x, (self.context, 0)) if state is None else state.carry(self, self.context)(x)
        return super().forward(x)


class CausalUpsample(nn.Module):
    """x s upsampling whose output block i (s samples) depends on input steps i-1 and i only.

    This is a transposed conv (kernel 2s, stride s) trimmed causally, written as a causal kernel-2 conv at the low rate
    to ``c_out * s`` channels followed by a 1-D pixel shuffle: the same function, but a plain convolution, which runs
    several times faster than ConvTranspose1d on CPU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride, self.c_out = stride, c_out
        self.conv = CausalConv(c_in, c_out * stride, 2)

    def forward(
        self, x: torch.Tensor, state: StateBank | None = None
    ) -> torch.Tensor:  # (B, C, T) -> (B, C', T*s)
        y = self.conv(x, state)  # (B, C' * s, T)
        b, _, t = y.shape
        return y.view(b, self.c_out, self.stride, t).transpose(2, 3).reshape(b, self.c_out, t * self.stride)


class CausalResUnit(nn.Module):
    def __init__(self, c: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv(c, c, kernel, dilation)
        self.proj = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor, state: StateBank | None = None) -> torch.Tensor:
        return x + self.proj(_act(self.conv(_act(x), state)))


class ResUnit(nn.Module):
    """Encoder residual unit: symmetric ('same') padding, the encoder runs offline."""

    def __init__(self, c: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel, dilation=dilation, padding=(kernel - 1) * dilation // 2)
        self.proj = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(_act(self.conv(_act(x))))


class Downsample(nn.Module):
    """Conv (kernel 2s, stride s) padded by s in total: T -> T / s steps."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.pad = (stride // 2, stride - stride // 2)
        self.conv = nn.Conv1d(c_in, c_out, 2 * stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(_act(x), self.pad))


# --------------------------------------------------------------------------------------------------- model
class Encoder(nn.Module):
    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        w = cfg.widths()
        self.conv_in = nn.Conv1d(1, w[0], cfg.kernel, padding=cfg.kernel // 2)
        blocks = []
        for i, s in enumerate(cfg.strides):
            units = [ResUnit(w[i + 1], cfg.kernel, d) for d in cfg.dilations]
            blocks.append(nn.Sequential(Downsample(w[i], w[i + 1], s), *units))
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv1d(w[-1], cfg.latent_dim, 3, padding=1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, latent, T // hop)
        return self.conv_out(_act(self.blocks(self.conv_in(wav[:, None]))))


class Decoder(nn.Module):
    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        w = cfg.widths()
        self.conv_in = CausalConv(cfg.latent_dim, w[-1], 3)
        self.units_in = nn.ModuleList([CausalResUnit(w[-1], cfg.kernel, d) for d in cfg.dilations])
        self.ups = nn.ModuleList()
        self.units = nn.ModuleList()
        for i in reversed(range(len(cfg.strides))):  # 50 Hz -> 400 -> 2000 -> 8000 -> 16000
            self.ups.append(CausalUpsample(w[i + 1], w[i], cfg.strides[i]))
            # No residual units at the sample rate: the most expensive place, and the upsampler's taps suffice there.
            units = [CausalResUnit(w[i], cfg.kernel, d) for d in cfg.dilations] if i > 0 else []
            self.units.append(nn.ModuleList(units))
        self.conv_out = CausalConv(w[0], 1, cfg.kernel)

    def forward(self, z: torch.Tensor, state: StateBank | None = None) -> torch.Tensor:
        # z: (B, latent, S) -> (B, S * hop)
        x = self.conv_in(z, state)
        for unit in self.units_in:
            x = unit(x, state)
        for up, units in zip(self.ups, self.units, strict=True):
            x = up(_act(x), state)
            for unit in units:
                x = unit(x, state)
        return self.conv_out(_act(x), state)[:, 0]


class AudioCodec(nn.Module):
    """16 kHz mono <-> (steps, groups) FSQ codes at 50 steps/s. Encoder offline, decoder causal and streamable."""

    def __init__(self, cfg: AudioCodecConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AudioCodecConfig()
        self.encoder = Encoder(self.cfg)
        self.fsq = FSQ(self.cfg.levels)
        self.decoder = Decoder(self.cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs with zero biases, the decoder's last layer scaled down.

        PyTorch's default conv init shrinks the signal at every layer: at init the latents then barely depend on
        the input (std 0.002 on speech), the decoder learns the mean spectrum, and the encoder drifts into tanh
        saturation with one code per group (measured). With He init the latents vary with std ~0.3 on speech, across
        FSQ's first rounding thresholds, so codes carry information from step one; the small last layer makes the
        initial output quiet instead of rms ~8."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.decoder.conv_out.weight.mul_(0.01)

    # ----- training path (differentiable through the straight-through quantiser)
    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) with T a multiple of hop -> (reconstruction (B, T), codes (B, S, groups), latents (B, S, G, D)).

        The latents are returned before the tanh bound so that training can keep them in its live range."""
        z = self.encoder(wav)  # (B, G*D, S)
        b, _, s = z.shape
        z = z.transpose(1, 2).reshape(b, s, self.cfg.groups, len(self.cfg.levels))  # (B, S, G, D)
        zq, codes = self.fsq.quantize(z)
        return self.decoder(self._latent(zq)), codes, z

    def _latent(self, zq: torch.Tensor) -> torch.Tensor:  # (B, S, G, D) -> (B, G*D, S)
        return zq.flatten(2).transpose(1, 2)

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.ndim != 3 or codes.shape[-1] != self.cfg.groups:
            raise InputError(f"codes must be (B, steps, {self.cfg.groups}); got {tuple(codes.shape)}")

    # ----- inference
    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) float in [-1, 1] -> codes (B, T // hop, groups) long; a trailing partial step is dropped."""
        if wav.ndim != 2:
            raise InputError(
                f"encode takes mono audio (B, T); got {tuple(wav.shape)} (mix channels down first)"
            )
        steps = wav.shape[-1] // self.cfg.hop
        if steps == 0:
            return torch.zeros(wav.shape[0], 0, self.cfg.groups, dtype=torch.long)
        z = self.encoder(wav[:, : steps * self.cfg.hop].float())
        z = z.transpose(1, 2).reshape(wav.shape[0], steps, self.cfg.groups, len(self.cfg.levels))
        return self.fsq.quantize(z)[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, S, groups) long -> (B, S * hop) float in [-1, 1]."""
        self._check_codes(codes)
        return self.decoder(self._latent(self.fsq.indices_to_codes(codes))).clamp(-1, 1)

    def stream_decoder(self) -> CodecStreamDecoder:
        return CodecStreamDecoder(self)

    @torch.no_grad()
    def silence_codes(self) -> torch.Tensor:
        """(groups,) the codes of digital silence (all steps of encoded zeros are equal: zero input, zero padding)."""
        return self.encode(torch.zeros(1, 8 * self.cfg.hop))[0, 4]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CodecStreamDecoder:
    """Decodes a code stream push by push; the concatenated output equals ``AudioCodec.decode`` of all codes.

    Each causal layer keeps its left context in a ``StateBank``, so a push costs only its own steps and output for a
    step is final as soon as that step's codes arrive (no lookahead, no delay)."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self.state = StateBank()

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, s, groups) long -> (B, s * hop) samples, continuing the stream."""
        self.codec._check_codes(codes)
        if codes.shape[1] == 0:
            return torch.zeros(codes.shape[0], 0)
        z = self.codec._latent(self.codec.fsq.indices_to_codes(codes))
        return self.codec.decoder(z, self.state).clamp(-1, 1)

    def reset(self) -> None:
        self.state.reset()

    def nbytes(self) -> int:
        return self.state.nbytes()


# ---------------------------------------------------------------------------------------------------- losses
def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters (Slaney-normalised areas not needed for an L1 of logs)."""
    f_max = f_max or sample_rate / 2

    def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    mels = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))), n_mels + 2
    )
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:  # (B, T) -> (B, F, frames)
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, return_complex=True)
    return spec.abs().clamp_min(1e-7)


@dataclass
class CodecLoss:
    """Multi-resolution STFT + log-mel + waveform L1; each term's reason is in the module docstring."""

    sample_rate: int = 16000
    resolutions: tuple[int, ...] = (256, 512, 1024)
    n_mels: int = 64
    mel_weight: float = 1.0
    wave_weight: float = (
        1.0  # waveform L1 is small in absolute terms (speech rms ~0.1): a phase hint, not a driver
    )
    _fb: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._fb = mel_filterbank(1024, self.n_mels, self.sample_rate)

    def __call__(self, out: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        sc = logmag = 0.0
        for n_fft in self.resolutions:
            m_out, m_ref = _magnitude(out, n_fft), _magnitude(ref, n_fft)
            sc = sc + torch.linalg.norm(m_ref - m_out) / torch.linalg.norm(m_ref).clamp_min(1e-7)
            logmag = logmag + (m_ref.log() - m_out.log()).abs().mean()
        n = len(self.resolutions)
        mel = (
            (
                (self._fb @ _magnitude(out, 1024)).clamp_min(1e-5).log()
                - (self._fb @ _magnitude(ref, 1024)).clamp_min(1e-5).log()
            )
            .abs()
            .mean()
        )
        wave = (out - ref).abs().mean()
        total = sc / n + logmag / n + self.mel_weight * mel + self.wave_weight * wave
        parts = {
            k: float(v.detach())
            for k, v in {"sc": sc / n, "logmag": logmag / n, "mel": mel, "wave": wave}.items()
        }
        return total, parts


# ---------------------------------------------------------------------------------------------------- metrics
def compare(ref: torch.Tensor, out: torch.Tensor, sample_rate: int = 16000) -> dict[str, float]:
    """Mel L1 (80 log-mels, n_fft 1024), log-spectral distance (dB, n_fft 512) and SNR (dB) of 1-D signals."""
    n = min(ref.shape[-1], out.shape[-1])
    ref, out = ref[..., :n].reshape(1, n).float(), out[..., :n].reshape(1, n).float()
    fb = mel_filterbank(1024, 80, sample_rate)
    mel = (
        (
            (fb @ _magnitude(out, 1024)).clamp_min(1e-5).log()
            - (fb @ _magnitude(ref, 1024)).clamp_min(1e-5).log()
        )
        .abs()
        .mean()
    )
    p_ref, p_out = _magnitude(ref, 512).pow(2), _magnitude(out, 512).pow(2)
    lsd = (
        ((10 * (p_ref.clamp_min(1e-10).log10() - p_out.clamp_min(1e-10).log10())) ** 2).mean(-2).sqrt().mean()
    )
    snr = 10 * math.log10(float(ref.pow(2).sum()) / max(float((ref - out).pow(2).sum()), 1e-12))
    return {"mel_l1": float(mel), "lsd_db": float(lsd), "snr_db": snr}


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    if not rows:
        raise InputError("no utterances to evaluate")
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def _mono(wav: torch.Tensor) -> torch.Tensor:
    """(T,), (1, T) or (C, T) -> (T,) (channels averaged)."""
    if wav.ndim == 1:
        return wav.float()
    if wav.ndim == 2:
        return wav.float().mean(0)
    raise InputError(f"audio must be (T,) or (C, T); got {tuple(wav.shape)}")


@torch.no_grad()
def evaluate_codec(codec: AudioCodec, wavs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Mean mel L1, LSD (dB) and SNR (dB) of encode -> decode over utterances (each cut to whole steps)."""
    was_training = codec.training
    codec.eval()
    rows = []
    for w in wavs:
        x = _mono(w)
        x = x[: x.shape[-1] // codec.cfg.hop * codec.cfg.hop][None]
        if x.shape[-1] == 0:
            continue
        rows.append(compare(x[0], codec.decode(codec.encode(x))[0], codec.cfg.sample_rate))
    codec.train(was_training)
    return mean_metrics(rows)


# ---------------------------------------------------------------------------------------------------- training
def _segments(
    wavs: Sequence[torch.Tensor], n: int, length: int, rng: random.Random, silence_p: float
) -> torch.Tensor:
    """(n, length) random crops (zero-padded when short), a few replaced by digital silence so that the codec learns
    to keep silence silent (the Actor emits silence codes between turns)."""
    out = torch.zeros(n, length)
    for i in range(n):
        if rng.random() < silence_p:
            continue
        w = wavs[rng.randrange(len(wavs))]
        if w.shape[0] > length:
            start = rng.randrange(w.shape[0] - length + 1)
            out[i] = w[start : start + length]
        else:
            start = rng.randrange(length - w.shape[0] + 1)
            out[i, start : start + w.shape[0]] = w
        out[i] *= 10 ** (rng.uniform(-6, 3) / 20)  # +-dB gain: speech arrives at different levels
    return out.clamp(-1, 1)


def train_codec(
    wavs: Sequence[torch.Tensor],
    cfg: AudioCodecConfig | None = None,
    *,
    steps: int,
    batch: int = 8,
    segment_s: float = 1.0,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
    codec: AudioCodec | None = None,
    silence_p: float = 0.05,
    latent_range: float = 2.0,
    latent_weight: float = 1.0,
) -> tuple[AudioCodec, dict[str, Any]]:
    """Train a codec on mono utterances at ``cfg.sample_rate``; returns (codec in eval mode, info).

    ``info``: ``losses`` (per step), ``parts`` (the loss terms of the last step), ``step_s`` (mean seconds per step),
    ``parameters``. AdamW with a one-cycle schedule. Pass ``codec`` to continue training one."""
    from tqdm.auto import tqdm

    if steps < 1:
        raise ParamError(f"steps must be >= 1; got {steps}")
    if codec is not None and cfg is not None and cfg != codec.cfg:
        raise ParamError("pass either cfg (a new codec) or codec (continue training it), not both")
    data = [_mono(w) for w in wavs]
    data = [w for w in data if w.shape[0] > 0]
    if not data:
        raise InputError("train_codec needs at least one non-empty utterance")
    torch.manual_seed(seed)
    model = codec if codec is not None else AudioCodec(cfg)
    cfg = model.cfg
    length = max(1, round(segment_s * cfg.sample_rate / cfg.hop)) * cfg.hop
    rng = random.Random(seed)
    loss_fn = CodecLoss(cfg.sample_rate)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=min(0.1, 50 / steps))
    losses: list[float] = []
    parts: dict[str, float] = {}
    model.train()
    started = time.perf_counter()
    for step in tqdm(range(steps), desc="audio codec", disable=not progress):
        x = _segments(data, batch, length, rng, silence_p)
        out, _, z = model(x)
        loss, parts = loss_fn(out, x)
        # Keep the latents where tanh still has a gradient: without this the encoder drifts into saturation within a
        # few hundred steps and every step quantises to the same code (measured: 1 code per group on held-out speech).
        overflow = F.relu(z.abs() - latent_range).pow(2).mean()
        loss = loss + latent_weight * overflow
        parts["overflow"] = float(overflow.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0:
            log.info("codec step %d loss %.4f %s", step, losses[-1], parts)
    model.eval()
    info = {
        "losses": losses,
        "parts": parts,
        "step_s": (time.perf_counter() - started) / steps,
        "parameters": model.num_parameters(),
        "segment_samples": length,
        "batch": batch,
    }
    return model, info


# --------------------------------------------------------------------------------------------------- save/load
def save_codec(codec: AudioCodec, folder: str | Path) -> None:
    """``model.safetensors`` (fp16) + ``config.json`` in ``folder``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in codec.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS))
    (out / CONFIG).write_text(json.dumps({"kind": KIND, **codec.cfg.to_dict()}, indent=2) + "\n")


def load_codec(folder: str | Path) -> AudioCodec:
    """The codec saved by ``save_codec``; an InputError naming the fix when the folder is missing or corrupt."""
    from safetensors.torch import load_file

    src = Path(folder)
    cfg_path, w_path = src / CONFIG, src / WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise InputError(
            f"{src} is not an audio codec folder (needs {CONFIG} and {WEIGHTS}); write one with "
            "streamrt.audio_codec.save_codec (or train one with train_codec)"
        )
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{cfg_path} is not valid JSON ({exc}); re-save the codec with save_codec") from exc
    if not isinstance(raw, dict) or raw.pop("kind", None) != KIND:
        raise InputError(
            f"{cfg_path} does not describe an audio codec; point at a folder written by save_codec"
        )
    try:
        cfg = AudioCodecConfig.from_dict(raw)
    except (ParamError, TypeError) as exc:
        raise InputError(f"{cfg_path} holds an invalid codec config: {exc}") from exc
    try:
        state = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"cannot read {w_path} ({exc}); re-save the codec with save_codec") from exc
    codec = AudioCodec(cfg)
    try:
        codec.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{w_path} does not match {cfg_path}: {exc}") from exc
    return codec.eval()


# ------------------------------------------------------------------------------------------------------ recipe
ASSET = Path(__file__).resolve().parents[1] / "assets" / "audio-codec"


def add_arguments(parser: Any) -> None:
    """Recipe arguments (``streamrt train``-style): the defaults are the recipe."""
    parser.add_argument("--out", type=Path, default=ASSET, help="codec folder to write")
    parser.add_argument("--data", type=Path, default=Path("/tmp/streamrt-speech"), help="speech cache folder")
    parser.add_argument("--utterances", type=int, default=400, help="espeak-ng training utterances")
    parser.add_argument("--held-out", type=int, default=24, help="held-out utterances for the metrics")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--segment", type=float, default=0.5, help="seconds per training crop")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--channels", type=int, default=AudioCodecConfig.channels)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: a few steps on tiny data")


def run(args: Any) -> int:
    """Synthesise espeak-ng speech, train, evaluate on held-out utterances, write the folder + eval_metrics.json."""
    from streamrt.speech import corpus

    if args.quick:
        args.utterances, args.held_out, args.steps, args.batch, args.segment = 4, 2, 3, 2, 0.2
    torch.set_num_threads(args.threads)
    train = [w[0] for w in corpus(args.data / "train", args.utterances, seed=args.seed)]
    held = [w[0] for w in corpus(args.data / "held", args.held_out, seed=args.seed + 10_000)]
    cfg = AudioCodecConfig(channels=args.channels)
    codec, info = train_codec(
        train,
        cfg,
        steps=args.steps,
        batch=args.batch,
        segment_s=args.segment,
        lr=args.lr,
        seed=args.seed,
        progress=True,
    )
    metrics = {
        **evaluate_codec(codec, held),
        "steps": args.steps,
        "step_s": round(info["step_s"], 3),
        "parameters": info["parameters"],
        "final_loss": sum(info["losses"][-50:]) / len(info["losses"][-50:]),
    }
    save_codec(codec, args.out)
    (Path(args.out) / "eval_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("audio codec held-out %s", metrics)
    return 0
