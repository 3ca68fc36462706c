"""Binaural training pairs simulated offline, and the plain DSP renderer used as the baseline.

A pair is (mono speech x, binaural y) for a source at position p in the listener's frame (facing +x, +y left, +z up):

- direct path: the HRIR pair of p's direction (nearest measured direction of the OpenAL Soft set, with its onset
  delays, which carry the interaural time difference; the level difference is in the responses themselves), scaled by
  1 / r for the distance r (1 at 1 m). The common propagation delay r / c is left out: time zero is the arrival at
  the head, so the model never has to delay the whole signal by a distance-dependent amount.
- a simple room (one fixed shoebox, as the paper's recordings come from one room): the six first-order image
  sources, each through the HRIR of its own direction, delayed by its extra path, scaled by a wall reflection
  coefficient and 1 / distance; plus a late tail, exponentially decaying noise (fixed per room and per ear, so the
  room is the same for every pair), whose level is set by a direct-to-reverberant ratio at 1 m in front.

``dsp_render`` is the plain renderer: the direct path only (HRTF x distance), no room and nothing learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.signal import fftconvolve

from pipelines.binauralflow.hrtf import HrtfSet

SPEED_OF_SOUND = 343.0
# Utterances are normalised to this level (-20 dBFS) for training (then scaled by a random gain) and evaluation. The
# level sets how strong speech is against the flow's fixed start noise (sigma 0.5 on the STFT): at -26 dBFS only ~5 %
# of the bins rose above it, and the gradient was nearly all denoising.
SPEECH_RMS = 0.1
MIN_DISTANCE = 0.25  # metres: the 1 / r law is capped closer than this (the head itself is ~0.09 m in radius)


@dataclass(frozen=True)
class Room:
    """A shoebox with the listener inside (identity orientation: the room's axes are the listener's)."""

    size: tuple[float, float, float] = (7.0, 5.5, 3.0)
    listener: tuple[float, float, float] = (3.2, 2.4, 1.5)
    reflection: float = 0.6  # amplitude factor of a wall bounce
    rt60: float = 0.3  # seconds, of the late tail
    tail_start: float = 0.012  # seconds after the direct sound
    tail_drr_db: float = 8.0  # direct-to-tail energy ratio for a source 1 m in front
    seed: int = 1234

    def contains(self, p: np.ndarray, margin: float = 0.2) -> bool:
        s = np.asarray(self.listener) + p
        return bool(np.all(s >= margin) and np.all(s <= np.asarray(self.size) - margin))


ROOM = Room()


def distance_gain(r: float) -> float:
    return 1.0 / max(r, MIN_DISTANCE)


def direct_ir(position: np.ndarray, hrtf: HrtfSet) -> np.ndarray:
    """(2, L) direct-path impulse response: HRIR of the direction x 1 / r."""
    r = float(np.linalg.norm(position))
    return hrtf.hrir_towards(position).numpy() * distance_gain(r)


@lru_cache(maxsize=8)
def _tail(room: Room, sample_rate: int, level: float) -> np.ndarray:
    """(2, L) late reverberation: decorrelated noise per ear with an exponential decay of rt60."""
    n = int(room.rt60 * 1.2 * sample_rate)
    rng = np.random.default_rng(room.seed)
    t = np.arange(n) / sample_rate
    env = np.exp(-6.91 * t / room.rt60)
    noise = rng.standard_normal((2, n)) * env
    noise *= math.sqrt(level / float((noise**2).sum(-1).mean()))
    return noise.astype(np.float32)


def room_ir(position: np.ndarray, hrtf: HrtfSet, room: Room = ROOM) -> np.ndarray:
    """(2, L) impulse response of the room for a source at ``position`` (listener frame): direct + early + tail."""
    sr = hrtf.sample_rate
    position = np.asarray(position, dtype=np.float64)
    r = float(np.linalg.norm(position))
    listener = np.asarray(room.listener)
    size = np.asarray(room.size)
    source = listener + position
    images = []
    for axis in range(3):
        for wall in (0.0, size[axis]):
            image = source.copy()
            image[axis] = 2 * wall - source[axis]
            images.append(image - listener)
    front = direct_ir(np.array([1.0, 0.0, 0.0]), hrtf)
    tail_level = float((front**2).sum(-1).mean()) / 10 ** (room.tail_drr_db / 10)
    tail = _tail(room, sr, tail_level)
    tail_at = int(room.tail_start * sr)
    extra = [int(round((np.linalg.norm(im) - r) / SPEED_OF_SOUND * sr)) for im in images]
    length = max(max(extra) + hrtf.ir_size + hrtf.max_delay, tail_at + tail.shape[1])
    ir = np.zeros((2, length), dtype=np.float32)
    d = direct_ir(position, hrtf)
    ir[:, : d.shape[1]] += d
    for im, delay in zip(images, extra, strict=True):
        h = hrtf.hrir_towards(im).numpy() * room.reflection * distance_gain(float(np.linalg.norm(im)))
        ir[:, delay : delay + h.shape[1]] += h
    ir[:, tail_at : tail_at + tail.shape[1]] += tail
    return ir


def convolve(mono: torch.Tensor, ir: np.ndarray) -> torch.Tensor:
    """(1, S) mono through a (2, L) response -> (2, S), causal (the first S samples of the full convolution)."""
    x = mono.detach().to(torch.float32).cpu().numpy()[0]
    out = np.stack([fftconvolve(x, ir[c])[: x.shape[0]] for c in range(2)])
    return torch.from_numpy(out.astype(np.float32))


def render(mono: torch.Tensor, position: np.ndarray, hrtf: HrtfSet, room: Room | None = ROOM) -> torch.Tensor:
    """The simulated binaural recording (the training target): (1, S) -> (2, S)."""
    ir = room_ir(position, hrtf, room) if room is not None else direct_ir(np.asarray(position), hrtf)
    return convolve(mono, ir)


def dsp_render(mono: torch.Tensor, position: np.ndarray, hrtf: HrtfSet) -> torch.Tensor:
    """The plain DSP renderer (the card's baseline): HRTF and distance only, no room."""
    return render(mono, position, hrtf, room=None)


def sample_position(
    rng: np.random.Generator,
    room: Room = ROOM,
    distance: tuple[float, float] = (0.5, 3.0),
    elevation_deg: tuple[float, float] = (-30.0, 50.0),
) -> np.ndarray:
    """A random source position in the listener's frame, inside the room."""
    while True:
        r = rng.uniform(*distance)
        az = rng.uniform(-math.pi, math.pi)
        el = math.radians(rng.uniform(*elevation_deg))
        p = r * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        if room.contains(p):
            return p


def speaker_pose(position: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """A 7-DoF speaker pose at ``position`` with a random yaw (the simulated source is omnidirectional)."""
    yaw = rng.uniform(-math.pi, math.pi)
    q = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    return torch.tensor([*position, *q], dtype=torch.float32)


LISTENER = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
