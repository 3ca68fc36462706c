"""BinauralFlow's geometric warp of the condition: the far ear gets the spherical head's time difference, the near ear
none; the head shadow makes the near ear louder at high frequencies; all per frame (so it streams)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from pipelines.binauralflow.model import CausalUNet
from pipelines.binauralflow.poses import make_pose
from pipelines.binauralflow.streaming import HOP, N_FFT, SAMPLE_RATE, mono_features
from pipelines.binauralflow.train import TINY
from pipelines.binauralflow.warp import (
    HEAD_RADIUS_M,
    SPEED_OF_SOUND,
    ear_delays,
    ear_gains,
    warp_pair,
    woodworth_itd,
)

LISTENER = make_pose((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), "listener")


def poses_at(*positions: tuple[float, float, float]) -> torch.Tensor:
    """(T, 14) speaker + listener poses, the listener at the origin facing +x (+y is the left)."""
    return torch.stack(
        [torch.cat([make_pose(p, (1.0, 0.0, 0.0, 0.0), "speaker"), LISTENER]) for p in positions]
    )


def test_woodworth_itd_at_the_side_and_in_front():
    assert float(woodworth_itd(torch.tensor(0.0))) == 0.0
    side = float(woodworth_itd(torch.tensor(1.0)))
    assert math.isclose(side, HEAD_RADIUS_M / SPEED_OF_SOUND * (math.pi / 2 + 1), rel_tol=1e-6)
    assert 0.6e-3 < side < 0.7e-3  # the textbook ~0.66 ms
    # symmetric in the side, growing with the lateral angle
    s = torch.linspace(-1, 1, 21)
    itd = woodworth_itd(s)
    assert torch.allclose(itd, itd.flip(0))
    assert bool((itd[10:].diff() > 0).all())


def test_the_far_ear_is_delayed_and_the_near_ear_is_not():
    d = ear_delays(poses_at((0.0, 1.5, 0.0), (0.0, -1.5, 0.0), (1.5, 0.0, 0.0)), SAMPLE_RATE)
    side = float(woodworth_itd(torch.tensor(1.0))) * SAMPLE_RATE  # ~31.5 samples
    left_source, right_source, front = d
    assert left_source[0] == 0 and math.isclose(float(left_source[1]), side, rel_tol=1e-4)
    assert right_source[1] == 0 and math.isclose(float(right_source[0]), side, rel_tol=1e-4)
    assert front.abs().max() < 1e-3
    # the listener turning to face the source removes the difference: the warp is in the head's frame
    facing_left = make_pose(
        (0.0, 0.0, 0.0), (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)), "listener"
    )
    turned = torch.cat([make_pose((0.0, 1.5, 0.0), (1.0, 0.0, 0.0, 0.0), "speaker"), facing_left])
    assert ear_delays(turned, SAMPLE_RATE).abs().max() < 1e-3


def lag(a: np.ndarray, b: np.ndarray, max_lag: int = 60) -> int:
    """Samples by which b trails a (cross-correlation peak)."""
    lags = range(-max_lag, max_lag + 1)
    scores = [
        float(np.dot(a[max_lag : len(a) - max_lag], np.roll(b, -k)[max_lag : len(a) - max_lag])) for k in lags
    ]
    return list(lags)[int(np.argmax(scores))]


def test_warped_pair_resynthesises_to_the_delayed_signal():
    # a source 1.5 m to the left: the right ear's copy of a noise burst comes out ~31 samples late, the left one on time
    rng = np.random.default_rng(0)
    mono = torch.from_numpy(rng.standard_normal(SAMPLE_RATE // 4).astype(np.float32))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(mono[None], N_FFT, HOP, window=window, center=True, return_complex=True)  # (1, 257, T)
    x = mono_features(spec)
    n = x.shape[2]
    delays = ear_delays(poses_at(*[(0.0, 1.5, 0.0)] * n), SAMPLE_RATE)[None]
    pair = warp_pair(x, delays, N_FFT)
    ears = []
    for ear in range(2):
        re, im = pair[0, 2 * ear], pair[0, 2 * ear + 1]
        half = torch.complex(re, im).T  # (256, T)
        full = torch.cat([half, torch.zeros(1, n, dtype=half.dtype)])
        ears.append(
            torch.istft(full[None], N_FFT, HOP, window=window, center=True, length=len(mono))[0].numpy()
        )
    left, right = ears
    ref = mono.numpy()
    expected = round(float(delays[0, 0, 1]))
    assert lag(ref, left) == 0
    assert abs(lag(ref, right) - expected) <= 1
    # the same (fractional) delay applied exactly to the whole signal, by the phase ramp of its own spectrum
    tau = float(delays[0, 0, 1])
    whole = np.fft.rfft(ref)
    shifted = np.fft.irfft(whole * np.exp(-2j * np.pi * np.fft.rfftfreq(len(ref)) * tau), len(ref))
    core = slice(N_FFT, len(ref) - N_FFT)
    shifted = shifted[core]
    # close to a true delay: the residual of the per-frame phase ramp (circular within each window) is small
    assert np.sqrt(np.mean((right[core] - shifted) ** 2)) < 0.1 * np.sqrt(np.mean(shifted**2))


def test_head_shadow_makes_the_near_ear_louder_at_high_frequencies_only():
    gains = ear_gains(poses_at((0.0, 1.5, 0.0), (1.5, 0.0, 0.0), (0.0, 0.75, 0.0)), SAMPLE_RATE, N_FFT, 256)
    db = 20 * torch.log10(gains)
    left, front, near = db
    ild = left[0] - left[1]  # source on the left: left ear minus right ear, per bin
    assert abs(float(ild[1])) < 1.0  # ~90 Hz: the head is small against the wavelength
    assert 3.0 < float(ild[11]) < 8.0  # ~1 kHz
    assert float(ild[86]) > 12.0  # ~8 kHz
    assert bool((ild[1:].diff() > -1e-4).all())  # grows with frequency
    assert torch.allclose(front[0], front[1])  # a frontal source: no level difference
    # 1/distance: half the distance, +6 dB in both ears, the shadow unchanged
    assert torch.allclose(near - left, torch.full_like(near, 20 * math.log10(2)), atol=1e-3)


def test_warp_is_per_frame_and_leaves_a_frontal_source_equal_in_both_ears():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 256, generator=g)
    front = poses_at(*[(1.0, 0.0, 0.0)] * 6)[None]
    pair = warp_pair(x, ear_delays(front, SAMPLE_RATE), N_FFT)
    assert torch.allclose(pair, torch.cat([x, x], dim=1), atol=1e-5)
    shaded = warp_pair(x, ear_delays(front, SAMPLE_RATE), N_FFT, ear_gains(front, SAMPLE_RATE, N_FFT, 256))
    assert torch.allclose(shaded[:, :2], shaded[:, 2:], atol=1e-5)
    # moving the source in frame 3 changes frame 3 of the pair only (causal, streams frame by frame)
    moved = front.clone()
    moved[0, 3, 1] = 1.5
    other = warp_pair(x, ear_delays(moved, SAMPLE_RATE), N_FFT)
    changed = (other - pair).abs().amax(dim=(0, 1, 3)) > 1e-4
    assert changed.tolist() == [False, False, False, True, False, False]


def test_network_condition_is_the_warped_pair_only_when_configured():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 256, generator=g)
    poses = poses_at(*[(0.0, -1.5, 0.0)] * 4)[None]
    warped = CausalUNet(TINY)
    gains = ear_gains(poses, SAMPLE_RATE, N_FFT, 256) ** TINY.spec_exponent  # on compressed magnitudes
    assert TINY.warp and torch.allclose(
        warped.pair(x, poses), warp_pair(x, ear_delays(poses, SAMPLE_RATE), N_FFT, gains)
    )
    plain = CausalUNet(dataclasses.replace(TINY, warp=False))
    assert torch.equal(plain.pair(x, poses), torch.cat([x, x], dim=1))
