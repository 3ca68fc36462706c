"""AP-BWE's training losses and its LSD metric (``models/model.py`` and ``train/train_16k.py`` of the release).

Generator: log-amplitude MSE x45, anti-wrapped phase losses (instantaneous phase, group delay, instantaneous
frequency) x100, complex-spectrum MSE x90, STFT-consistency MSE x90 (the generated spectrum against the STFT of its
own ISTFT), plus hinge adversarial and feature-matching losses (MPD x1, MRAD and MRPD x0.1 each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

MAG_WEIGHT = 45.0
PHASE_WEIGHT = 100.0
COMPLEX_WEIGHT = 90.0
CONSISTENCY_WEIGHT = 90.0
SPEC_DISC_WEIGHT = 0.1  # MRAD and MRPD terms, relative to MPD's


def anti_wrapping(x: torch.Tensor) -> torch.Tensor:
    """|x - 2*pi*round(x / (2*pi))|: the distance of a phase difference to the nearest multiple of 2*pi."""
    return torch.abs(x - torch.round(x / (2 * math.pi)) * 2 * math.pi)


def phase_losses(
    phase_r: torch.Tensor, phase_g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, F, T) phases -> instantaneous phase, group delay (along frequency), instantaneous frequency (along time)."""
    ip = anti_wrapping(phase_r - phase_g).mean()
    gd = anti_wrapping(torch.diff(phase_r, dim=1) - torch.diff(phase_g, dim=1)).mean()
    iaf = anti_wrapping(torch.diff(phase_r, dim=2) - torch.diff(phase_g, dim=2)).mean()
    return ip, gd, iaf


def discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminators."""
    return sum(
        (F.relu(1 - r).mean() + F.relu(1 + g).mean() for r, g in zip(real, fake, strict=True)),
        torch.zeros(()),
    )


def generator_adv_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the generator against the discriminators."""
    return sum((F.relu(1 - g).mean() for g in fake), torch.zeros(()))


def feature_loss(
    fmap_r: Sequence[Sequence[torch.Tensor]], fmap_g: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and generated audio."""
    return sum(
        (
            (rl - gl).abs().mean()
            for dr, dg in zip(fmap_r, fmap_g, strict=True)
            for rl, gl in zip(dr, dg, strict=True)
        ),
        torch.zeros(()),
    )


def spectral_losses(
    mag_wb: torch.Tensor,
    pha_wb: torch.Tensor,
    com_wb: torch.Tensor,
    mag_g: torch.Tensor,
    pha_g: torch.Tensor,
    com_g: torch.Tensor,
    com_g_hat: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The weighted spectral terms of the generator loss (each already multiplied by its weight)."""
    ip, gd, iaf = phase_losses(pha_wb, pha_g)
    return {
        "mag": F.mse_loss(mag_g, mag_wb) * MAG_WEIGHT,
        "pha": (ip + gd + iaf) * PHASE_WEIGHT,
        "com": F.mse_loss(com_g, com_wb) * COMPLEX_WEIGHT,
        "stft": F.mse_loss(com_g_hat, com_g) * CONSISTENCY_WEIGHT,
    }


def lsd(pred: torch.Tensor, target: torch.Tensor, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Log-spectral distance as the release computes it (``cal_lsd``): Hann STFT (2048, hop 512), power spectra
    clamped at 1e-8, log10; RMS over frequency, mean over frames (and batch)."""
    window = torch.hann_window(n_fft, device=pred.device)

    def log_power(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
        return torch.log10(spec.abs().square().clamp(min=1e-8))

    d = log_power(pred) - log_power(target)
    return d.square().mean(dim=-2).sqrt().mean()
