"""Geometric warp of the mono condition by a spherical head: each ear hears the mono signal delayed by the path
difference (Woodworth's formula), shadowed by the head (Brown and Duda's one-pole/one-zero head-shadow magnitude) and
attenuated by the distance (1/r), before the flow starts.

Why: BinauralFlow's early skip starts the solver at phi_t0 = x + (1 - t0) sigma eps, where x is the condition put in
both ears. With x the plain duplicated mono signal that start carries no interaural time difference, and a network
that only ever sees t >= t0 keeps the start's phase: the previous default came out with a lag of 0 samples for a
source at 90 degrees (target 36). Warping x geometrically, as WarpNet (Richard et al., ICLR 2021) does before its
neural stage, puts the time difference into the condition and so into the start; the flow then only has to refine
what a sphere cannot predict (the pinnae, the room). With ``UNetConfig.warp`` off, x is the duplicated mono signal
exactly as the paper has it.

The level part follows the same reasoning for the interaural level difference: a model trained on the time warp
alone came out with a level difference of 1.3-1.5 dB at 90 degrees (target 4.6). The shadow is applied as a magnitude
only (its phase would add ~10 samples to the time difference that Woodworth's formula already gives).

The delay is applied per STFT frame as a linear phase across the bins: delaying by tau samples turns bin k by
-2 pi k tau / n_fft. It is a function of the frame's poses only, so it is causal and streams frame by frame; for
delays of at most ~40 samples under a 512-sample Hann window the circular wrap inside the frame is negligible.
"""

from __future__ import annotations

import math

import torch

from pipelines.binauralflow.poses import source_direction

HEAD_RADIUS_M = 0.0875  # the usual adult head radius of the spherical-head model
SPEED_OF_SOUND = 343.0  # m/s at 20 degrees C
# Brown and Duda (1998), "A structural model for binaural sound synthesis": the head shadow's zero moves with the
# angle between the source and the ear, from alpha = 2 (+6 dB at high frequencies, facing the ear) to ALPHA_MIN at
# THETA_MIN degrees (-20 dB, the far side)
ALPHA_MIN = 0.1
THETA_MIN_DEG = 150.0
MIN_DISTANCE_M = 0.25  # 1/r is held below this, so that a source on the listener's head stays finite


def woodworth_itd(lateral_sine: torch.Tensor) -> torch.Tensor:
    """Interaural time difference in seconds for a far source, from the sine of its lateral angle (the component of
    its unit direction along the interaural axis): (r / c) (theta + sin theta), theta = asin(|sine|)."""
    theta = lateral_sine.abs().clamp(max=1.0).asin()
    return HEAD_RADIUS_M / SPEED_OF_SOUND * (theta + theta.sin())


def ear_delays(poses: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(..., 14) speaker + listener poses -> (..., 2) delays in samples of the left and right ear. The ear nearer to
    the source gets 0 and the far one the whole ITD, so the warp only ever delays (it stays causal)."""
    lateral = source_direction(poses)[..., 1]  # +y is the left
    itd = woodworth_itd(lateral) * sample_rate
    zero = torch.zeros_like(itd)
    left = torch.where(lateral < 0, itd, zero)  # a source on the right reaches the left ear late
    right = torch.where(lateral > 0, itd, zero)
    return torch.stack([left, right], dim=-1)


def ear_gains(poses: torch.Tensor, sample_rate: int, n_fft: int, bins: int) -> torch.Tensor:
    """(..., 14) speaker + listener poses -> (..., 2, bins) magnitude gains of the left and right ear per STFT bin:
    the head-shadow magnitude |(1 + j alpha w / 2 w0) / (1 + j w / 2 w0)|, w0 = c / r_head, times 1/distance."""
    geometry = source_direction(poses)
    direction, distance = geometry[..., :3], geometry[..., 3]
    ears = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=poses.dtype, device=poses.device
    )  # +y is the left
    theta = (direction @ ears.T).clamp(-1.0, 1.0).acos()  # (..., 2) angle between the source and each ear
    alpha = 1 + ALPHA_MIN / 2 + (1 - ALPHA_MIN / 2) * torch.cos(theta * (180.0 / THETA_MIN_DEG))
    omega = 2 * math.pi * torch.arange(bins, dtype=poses.dtype, device=poses.device) * sample_rate / n_fft
    ratio = omega / (2 * SPEED_OF_SOUND / HEAD_RADIUS_M)  # w / 2 w0
    shadow = ((1 + (alpha[..., None] * ratio) ** 2) / (1 + ratio**2)).sqrt()
    return shadow / distance.clamp_min(MIN_DISTANCE_M)[..., None, None]


def warp_pair(
    x: torch.Tensor, delays: torch.Tensor, n_fft: int, gains: torch.Tensor | None = None
) -> torch.Tensor:
    """Mono features (B, 2, T, F) (re, im per bin k = 0..F-1 of an n_fft STFT), per-frame ear delays (B, T, 2) in
    samples and optional magnitude gains (B, T, 2, F) -> the pair (B, 4, T, F): left re, left im, right re, right im,
    each ear's copy delayed (and scaled)."""
    f = x.shape[-1]
    k = torch.arange(f, dtype=x.dtype, device=x.device)
    angle = -2 * math.pi / n_fft * delays.to(x.dtype)[..., None] * k  # (B, T, 2, F)
    cos, sin = angle.cos(), angle.sin()
    if gains is not None:
        cos, sin = cos * gains, sin * gains
    cos, sin = cos.permute(0, 2, 1, 3), sin.permute(0, 2, 1, 3)  # (B, 2 ears, T, F)
    re, im = x[:, 0:1], x[:, 1:2]
    out_re = re * cos - im * sin
    out_im = re * sin + im * cos
    return torch.stack([out_re, out_im], dim=2).flatten(1, 2)
