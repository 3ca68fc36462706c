"""Streaming inference exactly as BinauralFlow describes it, and the offline path it must equal.

    mono samples -> StreamingSTFT (causal framing, n_fft 512, hop 128, Hann)
                 -> per chunk of complete frames: start phi_t0 (per-frame seeded noise), midpoint solver over the
                    early-skip schedule; network evaluation k of the schedule runs its causal layers with state
                    (k, layer) of the buffer bank (a ``StateBank``), so each evaluation continues its own stream
                 -> StreamingISTFT (causal) -> stereo samples as soon as no later frame can change them

Everything that differs between a stream cut into chunks and the whole signal at once is made identical: the noise
of frame f is drawn from a generator seeded by (seed, f), poses are evaluated per frame at the frame's time, and the
convolutions see the carried past. The offline path (``render_offline``) runs the same network over all frames
with zero past padding, which is what a fresh buffer bank holds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from buffers.conv_state import StateBank
from buffers.stft import StreamingISTFT, StreamingSTFT, istft, stft
from pipelines.binauralflow.flow import (
    Schedule,
    channels_to_complex,
    complex_to_channels,
    compress,
    decompress,
    early_skip_start,
    midpoint_solve,
)
from pipelines.binauralflow.model import N_BINS, N_FFT, SAMPLE_RATE, CausalUNet

HOP = 128
# A sample is final once the last frame that covers it is complete: n_fft - 1 samples after it arrived.
LATENCY_SAMPLES = N_FFT - 1
# Zeros after the last input sample, so that causal frames cover the end with the whole window as everywhere else:
# without them the last hop lies only under the tail of one frame's window, and the ISTFT's division by that tiny
# window envelope blew the network's residual noise up to values of ~500 in the last samples.
TAIL_PADDING = N_FFT - HOP

# frame indices (T,) -> poses (T, 14) at those frames' times
PoseFn = Callable[[torch.Tensor], torch.Tensor]


def frame_times(frames: torch.Tensor) -> torch.Tensor:
    """Time in seconds of each frame: when its newest sample arrives (the pose a causal renderer can know)."""
    return (frames.to(torch.float64) + 1) * HOP / SAMPLE_RATE


def frame_noise(seed: int, first: int, count: int) -> torch.Tensor:
    """eps for frames first..first+count-1: (1, 4, count, N_BINS), frame f's drawn from its own seed (seed, f), so
    the noise does not depend on how the stream was cut into chunks."""
    out = torch.empty(1, 4, count, N_BINS)
    gen = torch.Generator()
    for i in range(count):
        gen.manual_seed((seed * 1_000_003 + first + i) % (2**63))
        out[0, :, i] = torch.randn(4, N_BINS, generator=gen)
    return out


def mono_features(spec: torch.Tensor) -> torch.Tensor:
    """Complex STFT (1, N_FFT // 2 + 1, T) -> the network's mono condition (1, 2, T, N_BINS)."""
    return complex_to_channels(spec[:, :N_BINS, :].transpose(-1, -2)[:, None])


def stereo_spectrum(features: torch.Tensor) -> torch.Tensor:
    """(1, 4, T, N_BINS) solver output -> complex (2, N_FFT // 2 + 1, T); the Nyquist bin is zero."""
    spec = channels_to_complex(features)[0].transpose(-1, -2)  # (2, N_BINS, T)
    return F.pad(spec, (0, 0, 0, N_FFT // 2 + 1 - N_BINS))


class FrameRenderer:
    """The per-frame part: mono STFT frames in, binaural STFT frames out, with the buffer bank."""

    def __init__(self, net: CausalUNet, schedule: Schedule, seed: int, poses: PoseFn) -> None:
        self.net = net
        self.schedule = schedule
        self.seed = seed
        self.poses = poses
        self.bank = StateBank()
        self.frames_done = 0
        self.evaluations = 0  # network calls so far (the NFE count, summed over chunks)

    def reset(self) -> None:
        self.bank.reset()
        self.frames_done = 0
        self.evaluations = 0

    @torch.inference_mode()
    def __call__(self, spec: torch.Tensor, *, stateful: bool = True) -> torch.Tensor:
        """Complex mono frames (1, 257, T) -> complex binaural frames (2, 257, T)."""
        count = spec.shape[-1]
        if count == 0:
            return torch.zeros(2, N_FFT // 2 + 1, 0, dtype=torch.complex64)
        first = self.frames_done
        cfg = self.net.config
        x = mono_features(compress(spec, cfg.spec_exponent, cfg.spec_scale))
        poses = self.poses(torch.arange(first, first + count))[None].to(torch.float32)
        eps = frame_noise(self.seed, first, count)
        cond = self.net.condition(x, poses)  # the same for every evaluation of this chunk
        phi = early_skip_start(cond.pair, eps, self.schedule.t0)

        def velocity(phi: torch.Tensor, t: float, k: int) -> torch.Tensor:
            self.evaluations += 1
            state = (lambda name, context: self.bank.carry((k, name), context, dim=-2)) if stateful else None
            return self.net(phi, x, torch.full((1,), t), poses, state, cond)

        out = midpoint_solve(velocity, phi, self.schedule)
        self.frames_done += count
        return decompress(stereo_spectrum(out), cfg.spec_exponent, cfg.spec_scale)


class BinauralStreamer:
    """Mono chunks of any length in, stereo samples out as soon as they are final; ``flush`` gives the rest."""

    def __init__(self, net: CausalUNet, schedule: Schedule, seed: int, poses: PoseFn) -> None:
        self.renderer = FrameRenderer(net, schedule, seed, poses)
        self.stft = StreamingSTFT(N_FFT, HOP, padding="causal")
        self.istft = StreamingISTFT(N_FFT, HOP, padding="causal")
        self.samples_in = 0
        self.samples_out = 0

    def reset(self) -> None:
        self.renderer.reset()
        self.stft.reset()
        self.istft.reset()
        self.samples_in = 0
        self.samples_out = 0

    def push(self, mono: torch.Tensor) -> torch.Tensor:
        """(1, S) -> (2, S_final)."""
        self.samples_in += mono.shape[-1]
        # reshape: before the first frame the ISTFT has no channel layout yet and returns a bare (0,) tensor
        out = self.istft.push(self.renderer(self.stft.push(mono))).reshape(2, -1)
        self.samples_out += out.shape[-1]
        return out

    def flush(self) -> torch.Tensor:
        """The remaining samples; the total output equals the input length."""
        frames = torch.cat([self.stft.push(torch.zeros(1, TAIL_PADDING)), self.stft.flush()], dim=-1)
        out = self.istft.push(self.renderer(frames)) if frames.shape[-1] else torch.zeros(2, 0)
        rest = self.istft.flush(self.samples_in + TAIL_PADDING)
        out = torch.cat([out.reshape(2, -1), rest.reshape(2, -1)], dim=-1)[
            :, : self.samples_in - self.samples_out
        ]
        self.samples_out += out.shape[-1]
        return out


def render_offline(
    net: CausalUNet, mono: torch.Tensor, schedule: Schedule, seed: int, poses: PoseFn
) -> torch.Tensor:
    """The whole signal at once: (1, S) -> (2, S). The reference the stream must reproduce."""
    return frames_offline(mono, lambda spec: FrameRenderer(net, schedule, seed, poses)(spec, stateful=False))


def frames_offline(mono: torch.Tensor, frames: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(1, S) -> (2, S) through the causal STFT (tail padding included), ``frames`` (complex mono (1, 257, T) ->
    complex binaural (2, 257, T)) and the ISTFT, trimmed to the input's length."""
    spec = stft(F.pad(mono, (0, TAIL_PADDING)), N_FFT, HOP, padding="causal")
    n = mono.shape[-1]
    return istft(frames(spec), N_FFT, HOP, padding="causal", length=n + TAIL_PADDING)[..., :n]
