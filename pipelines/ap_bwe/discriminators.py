"""AP-BWE's discriminators (``models/model.py`` of the release): the multi-period discriminator on the waveform and
the multi-resolution amplitude and phase discriminators on STFT amplitude / phase spectrograms.

The layer structure (kernels, strides, paddings, weight norm, leaky ReLU 0.1, periods and resolutions) is the
published one; the widths are arguments so that the CPU recipe can shrink them (the release: MPD 32-128-512-1024-1024,
MRAD/MRPD 64 channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1
PERIODS = (2, 3, 5, 7, 11)
RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # (n_fft, hop, win)
MPD_CHANNELS = (32, 128, 512, 1024, 1024)
SPEC_CHANNELS = 64

Outputs = tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]


class PeriodDiscriminator(nn.Module):
    """The waveform folded into (T / p, p) columns, 2-D convs along time (kernel 5, stride 3)."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS, kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        pad = (kernel - 1) // 2
        chans = [1, *channels]
        strides = [stride] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (kernel, 1), (strides[i], 1), padding=(pad, 0)))
            for i in range(len(channels))
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # x: (B, 1, T)
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        for i, layer in enumerate(self.convs):
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            if i > 0:  # the release keeps every feature map but the first
                fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = PERIODS, channels: Sequence[int] = MPD_CHANNELS) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> Outputs:
        return _pairwise(self.discriminators, y, y_hat)


class SpectrogramDiscriminator(nn.Module):
    """2-D convs over an STFT amplitude (``kind="amplitude"``) or phase (``kind="phase"``) spectrogram.

    As in the release, the STFT uses no window (rectangular) at this resolution."""

    def __init__(self, resolution: tuple[int, int, int], kind: str, channels: int = SPEC_CHANNELS) -> None:
        super().__init__()
        if kind not in ("amplitude", "phase"):
            raise ValueError(f"kind must be 'amplitude' or 'phase'; got {kind!r}")
        self.resolution, self.kind = resolution, kind
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, kernel_size=(7, 5), stride=(2, 2), padding=(3, 2))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(5, 3), stride=(2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, kernel_size=(5, 3), stride=(2, 2), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, kernel_size=3, stride=(2, 1), padding=1)),
                weight_norm(nn.Conv2d(c, c, kernel_size=3, stride=(2, 2), padding=1)),
            ]
        )
        self.conv_post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        n_fft, hop, win = self.resolution
        rect = torch.ones(win, device=x.device)  # the release passes window=None: rectangular
        spec = torch.stft(
            x, n_fft=n_fft, hop_length=hop, win_length=win, window=rect, center=True, return_complex=True
        )
        return spec.abs() if self.kind == "amplitude" else spec.angle()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # x: (B, 1, T)
        fmap = []
        x = self.spectrogram(x.squeeze(1)).unsqueeze(1)  # (B, 1, F, T)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiResolutionDiscriminator(nn.Module):
    """MRAD (``kind="amplitude"``) or MRPD (``kind="phase"``) over the three published resolutions."""

    def __init__(self, kind: str, resolutions=RESOLUTIONS, channels: int = SPEC_CHANNELS) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(SpectrogramDiscriminator(r, kind, channels) for r in resolutions)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> Outputs:
        return _pairwise(self.discriminators, y, y_hat)


def _pairwise(discriminators: nn.ModuleList, y: torch.Tensor, y_hat: torch.Tensor) -> Outputs:
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
    for d in discriminators:
        r, fr = d(y)
        g, fg = d(y_hat)
        y_d_rs.append(r)
        y_d_gs.append(g)
        fmap_rs.append(fr)
        fmap_gs.append(fg)
    return y_d_rs, y_d_gs, fmap_rs, fmap_gs
