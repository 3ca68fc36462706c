"""The AP-BWE generator (Lu et al., "Towards high-quality and efficient speech bandwidth extension with parallel
amplitude and phase prediction"), as published in ``yxlu-0102/AP-BWE`` ``models/model.py``.

The narrowband signal, already resampled up to the target rate, is analysed by an STFT (n_fft 1024, hop 80, win 320,
Hann, centred, reflect padding). Two ConvNeXt streams run in parallel over time: one on the log amplitude
``log(|X| + 1e-4)``, one on the wrapped phase. Before every pair of blocks the streams interact (the amplitude stream
adds the phase features, then the phase stream adds the *updated* amplitude features). The amplitude output is a
residual added to the narrowband log amplitude; the phase output is ``atan2(Linear_i(x), Linear_r(x))``.

Module and parameter names are the official ones (``conv_pre_mag``, ``norm_pre_mag``, ``convnext_mag.0.dwconv``, ...),
so the released checkpoints load with ``load_state_dict`` as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

# log(|X| + eps): the official amplitude compression (datasets/dataset.py, amp_pha_stft).
LOG_EPS = 1e-4
LN_EPS = 1e-6


@dataclass(frozen=True)
class APBWEConfig:
    """Sizes of one AP-BWE model. The defaults are the published full-size model (29,760,515 parameters)."""

    channels: int = 512  # ConvNeXt width of each stream
    layers: int = 8  # ConvNeXt blocks per stream
    kernel: int = 7  # front conv and depthwise convs (symmetric, zero padded)
    n_fft: int = 1024
    hop: int = 80
    win: int = 320
    # Rates of the pair the weights were trained for; None when unknown (official checkpoints do not record them).
    sample_rate: int | None = None
    narrowband_rate: int | None = None

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def conv_layers(self) -> int:
        """Convolutions along time in each stream: the front conv and one depthwise conv per block."""
        return self.layers + 1

    @property
    def frame_lookahead(self) -> int:
        """Future STFT frames an output frame depends on (the receptive field is symmetric: +/- this)."""
        return self.conv_layers * (self.kernel // 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> APBWEConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


FULL_SIZE = APBWEConfig()


class ConvNeXtBlock(nn.Module):
    """dwconv k7 -> LayerNorm -> Linear(C, 3C) -> GELU -> Linear(3C, C) -> layer scale -> residual."""

    def __init__(self, dim: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, dim * 3)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(dim * 3, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        h = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class APBWE(nn.Module):
    """The generator: (log amplitude, phase) of the narrowband STFT -> (log amplitude, phase, complex) wideband."""

    def __init__(self, config: APBWEConfig = FULL_SIZE) -> None:
        super().__init__()
        self.config = config
        c, k, bins = config.channels, config.kernel, config.bins
        self.conv_pre_mag = nn.Conv1d(bins, c, k, 1, padding=k // 2)
        self.norm_pre_mag = nn.LayerNorm(c, eps=LN_EPS)
        self.conv_pre_pha = nn.Conv1d(bins, c, k, 1, padding=k // 2)
        self.norm_pre_pha = nn.LayerNorm(c, eps=LN_EPS)
        scale = 1.0 / config.layers  # the official layer-scale init
        self.convnext_mag = nn.ModuleList(ConvNeXtBlock(c, k, scale) for _ in range(config.layers))
        self.convnext_pha = nn.ModuleList(ConvNeXtBlock(c, k, scale) for _ in range(config.layers))
        self.norm_post_mag = nn.LayerNorm(c, eps=LN_EPS)
        self.norm_post_pha = nn.LayerNorm(c, eps=LN_EPS)
        # The official init (truncated normal 0.02, zero bias) covers everything above; the output projections
        # are created after it and keep PyTorch's default init, as in the release.
        self.apply(_init_weights)
        self.linear_post_mag = nn.Linear(c, bins)
        self.linear_post_pha_r = nn.Linear(c, bins)
        self.linear_post_pha_i = nn.Linear(c, bins)

    def forward(
        self, mag_nb: torch.Tensor, pha_nb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mag_nb, pha_nb: (B, bins, T) -> log amplitude (B, bins, T), phase (B, bins, T), complex (B, bins, T, 2)."""
        x_mag = _norm_ct(self.norm_pre_mag, self.conv_pre_mag(mag_nb))
        x_pha = _norm_ct(self.norm_pre_pha, self.conv_pre_pha(pha_nb))
        for block_mag, block_pha in zip(self.convnext_mag, self.convnext_pha, strict=True):
            # Interaction: the phase stream adds the amplitude features that already include its own.
            x_mag = x_mag + x_pha
            x_pha = x_pha + x_mag
            x_mag = block_mag(x_mag)
            x_pha = block_pha(x_pha)
        h_mag = self.norm_post_mag(x_mag.transpose(1, 2))
        mag_wb = mag_nb + self.linear_post_mag(h_mag).transpose(1, 2)
        h_pha = self.norm_post_pha(x_pha.transpose(1, 2))
        pha_wb = torch.atan2(self.linear_post_pha_i(h_pha), self.linear_post_pha_r(h_pha)).transpose(1, 2)
        amp = torch.exp(mag_wb)
        com_wb = torch.stack((amp * torch.cos(pha_wb), amp * torch.sin(pha_wb)), dim=-1)
        return mag_wb, pha_wb, com_wb


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv1d | nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def _norm_ct(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over channels of a (B, C, T) tensor."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- analysis/synthesis
def _window(config: APBWEConfig, device: torch.device | None = None) -> torch.Tensor:
    return torch.hann_window(config.win, device=device)


def amp_pha_stft(audio: torch.Tensor, config: APBWEConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, S) audio -> log amplitude, phase (B, bins, T) and the complex spectrum as (B, bins, T, 2), as the model
    sees them (centred STFT with reflect padding; the complex part is exp(log amplitude) = |X| + 1e-4 in amplitude)."""
    spec = torch.stft(
        audio,
        config.n_fft,
        hop_length=config.hop,
        win_length=config.win,
        window=_window(config, audio.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spectrum_to_amp_pha(spec)


def spectrum_to_amp_pha(spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    log_amp = torch.log(spec.abs() + LOG_EPS)
    pha = torch.angle(spec)
    amp = torch.exp(log_amp)
    com = torch.stack((amp * torch.cos(pha), amp * torch.sin(pha)), dim=-1)
    return log_amp, pha, com


def amp_pha_to_spectrum(log_amp: torch.Tensor, pha: torch.Tensor) -> torch.Tensor:
    return torch.polar(torch.exp(log_amp), pha)


def amp_pha_istft(
    log_amp: torch.Tensor, pha: torch.Tensor, config: APBWEConfig, length: int | None = None
) -> torch.Tensor:
    """Inverse of ``amp_pha_stft`` (B, bins, T) -> (B, S)."""
    return torch.istft(
        amp_pha_to_spectrum(log_amp, pha),
        config.n_fft,
        hop_length=config.hop,
        win_length=config.win,
        window=_window(config, log_amp.device),
        center=True,
        length=length,
    )


@torch.no_grad()
def enhance_reference(model: APBWE, audio: torch.Tensor) -> torch.Tensor:
    """Offline bandwidth extension with the module exactly as the official inference script runs it:
    (B, S) narrowband audio at the target rate -> (B, S) wideband audio."""
    mag_nb, pha_nb, _ = amp_pha_stft(audio, model.config)
    mag_wb, pha_wb, _ = model(mag_nb, pha_nb)
    return amp_pha_istft(mag_wb, pha_wb, model.config, length=audio.shape[-1])


def receptive_field_frames(config: APBWEConfig) -> int:
    """Total receptive field of the network in STFT frames (2 * lookahead + 1)."""
    return 2 * config.frame_lookahead + 1


def frames_for(samples: int, config: APBWEConfig) -> int:
    """STFT frames of a centred STFT over ``samples`` samples."""
    return 1 + samples // config.hop


__all__ = [
    "APBWE",
    "APBWEConfig",
    "FULL_SIZE",
    "ConvNeXtBlock",
    "amp_pha_istft",
    "amp_pha_stft",
    "count_parameters",
    "enhance_reference",
    "frames_for",
]
