"""BinauralFlow's causal U-Net on the complex STFT (the velocity network of the flow).

Input per STFT frame (window 512, hop 128, 48 kHz; 256 bins, the Nyquist bin is left out so that the frequency axis
halves cleanly four times): the flow state phi_t (left and right, real and imaginary parts: 4 channels), the mono
condition x (2 channels) and a few fixed frequency-position channels. Output: the velocity v for left and right
(4 channels). Time t and the speaker and listener poses (7-DoF each) enter through Gaussian Fourier features and an
MLP, added to the hidden features of every block, per frame.

Streamability is the design constraint: every convolution is causal in time (padded on the past side only) and has
time stride 1; down- and up-sampling happen along frequency only (4x4 kernels, stride 2 in frequency, 1 in time);
GroupNorm statistics are taken per frame (over channel groups x frequency, never across time). So the network maps a
sequence of frames to a sequence of frames with no look-ahead, and a chunk of frames can be processed with the past
carried in a ``StateBank`` (one ``ContextCarry`` per causal layer), giving exactly the offline result.

Layouts: features are (B, C, T, F) - batch, channels, time (frames), frequency. Frequency innermost makes the
per-frame statistics cheap (the (channel, frequency) block of a frame is then one transpose away from torch's
group_norm kernel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from buffers.conv_state import ContextCarry
from pipelines.binauralflow.poses import source_direction
from pipelines.binauralflow.warp import ear_delays, ear_gains, warp_pair

N_BINS = 256  # bins 0..255 of the 257 of a 512-point STFT (the Nyquist bin carries nothing in speech)
STATE_CHANNELS = 4  # phi_t: left re, left im, right re, right im
COND_CHANNELS = 2  # the mono spectrogram: re, im (4 with UNetConfig.warp: the warped pair, re and im per ear)
# the STFT the network runs on (``streaming`` frames with these): the warp turns delays into phase with them
SAMPLE_RATE = 48_000
N_FFT = 512
POSE_DIM = 14  # speaker (x, y, z, qw, qx, qy, qz) + listener
DIRECTION_DIM = 4  # derived from the poses when UNetConfig.pose_direction: unit direction (3) + distance


@dataclass(frozen=True)
class Condition:
    """The parts of a forward pass that depend on the condition (x, poses) only (``CausalUNet.condition``)."""

    pair: torch.Tensor  # (B, 4, T, F): the condition pair the flow starts from and the head multiplies
    pose: torch.Tensor  # (B, T, E): the pose MLP's output, added to t's in the embedding
    gain: torch.Tensor | None  # (B, 4, T, F): the pose gain map of the "target" head (None for "velocity")


# state(name, context) -> the carry of that causal layer for the current stream position, or None (offline: zeros)
StateFn = Callable[[str, int], ContextCarry] | None


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of the U-Net. ``channels[i]`` is the width at frequency resolution N_BINS / 2**i."""

    channels: tuple[int, ...] = (8, 12, 16, 24, 32)
    blocks: int = 1  # residual blocks per level on the way down
    up_blocks: int = 1  # residual blocks per level on the way up (the first one takes the skip concatenation)
    mid_blocks: int = 1
    emb_dim: int = 64
    fourier_features: int = 32  # sin + cos pairs of the Fourier embedding of t
    pose_features: int = 8  # sin + cos pairs per pose component (14 components)
    t_scale: float = 16.0  # std of the Gaussian frequencies for t (in [0, 1])
    pose_scale: float = 1.0  # std of the Gaussian frequencies for poses (metres, quaternion components)
    groups: int = 4
    # fixed sin/cos(pi * k * bin / 256) input channels: where in the spectrum a feature is, and (k = a delay in
    # samples) the phase slope of that delay, which interaural time differences are made of
    freq_periods: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 40)
    time_kernel: int = 3  # kernel length along time of the 3x3 convolutions (causal)
    # the spectral representation the flow runs on: spec_scale * |X| ** spec_exponent with X's phase (``flow.compress``)
    spec_exponent: float = 1.0
    spec_scale: float = 1.0
    # the output head (see ``CausalUNet.forward``): "velocity" (v = d + a x + b phi) or "target"
    # (v = d + (a x + b phi) / (1 - t), with a per-bin complex gain map of the pose added to a)
    head: str = "velocity"
    # also give the pose MLP the source's direction in the listener's head frame (a unit vector) and its distance,
    # computed from the two poses: interaural level and time differences are functions of the direction
    pose_direction: bool = False
    # the condition pair x that the flow starts from (z = x + sigma eps) and the network sees: False, the mono signal
    # in both ears (the paper); True, each ear's copy as a spherical head predicts it from the poses (``warp``: the
    # time difference, the head shadow and 1/distance)
    warp: bool = False
    # where the network learns what frequency a feature is at: "channels", the fixed sin/cos channels of
    # ``freq_periods`` as inputs of the first convolution; "bias", a learned (channel x bin) map added after it,
    # which is the same function of the bin without 2 * len(freq_periods) input channels in the widest convolution
    freq_embedding: str = "channels"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        d["freq_periods"] = tuple(d["freq_periods"])
        return cls(**d)


# The embedded default: sized so that NFE 6 streams faster than real time in 100 ms chunks on one core of the 2-core
# CPU (bench "binauralflow"), on amplitude-compressed spectra (more of speech's bins above the flow's start noise)
# with the "target" head (the poses reach the output as a per-bin gain; with the "velocity" head a trained model
# ignored them) and a condition warped by a spherical head (the early-skip start then holds the interaural time and
# level differences; without it the default came out with no time difference).
SMALL = UNetConfig(
    channels=(4, 8, 12, 16, 24),
    spec_exponent=0.5,
    head="target",
    pose_direction=True,
    warp=True,
    freq_embedding="bias",
)
# The paper's scale (~78 M parameters); a GPU model.
FULL = UNetConfig(
    channels=(64, 128, 256, 512, 512),
    blocks=2,
    up_blocks=3,
    mid_blocks=2,
    emb_dim=512,
    fourier_features=128,
    spec_exponent=0.5,
    head="target",
    pose_direction=True,
)


def frame_group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with statistics per frame: over (channels of a group) x frequency, separately for every time step.

    Frames are moved into the batch for torch's group_norm kernel (a reduction over strided dims is far slower on
    CPU than the two transposes)."""
    b, c, t, f = x.shape
    y = F.group_norm(
        x.transpose(1, 2).reshape(b * t, c, f), norm.num_groups, norm.weight, norm.bias, norm.eps
    )
    return y.view(b, t, c, f).transpose(1, 2).contiguous()


class CausalConv(nn.Module):
    """Conv2d over (time, frequency), causal in time: the past ``kt - 1`` frames come from the carried state (zeros
    at the start of a stream, which is the offline past-side zero padding). Stride only along frequency."""

    def __init__(self, c_in: int, c_out: int, kf: int, kt: int, stride_f: int = 1) -> None:
        super().__init__()
        pad_f = (kf - stride_f) // 2 if stride_f > 1 else kf // 2
        self.conv = nn.Conv2d(c_in, c_out, (kt, kf), stride=(1, stride_f), padding=(0, pad_f))
        self.context = kt - 1
        self.name = ""  # set by CausalUNet: the key of this layer's state

    def forward(self, x: torch.Tensor, state: StateFn) -> torch.Tensor:
        if self.context:
            x = state(self.name, self.context)(x) if state else F.pad(x, (0, 0, self.context, 0))
        return self.conv(x)


class CausalUpConv(nn.Module):
    """Transposed 4x4 convolution, stride 2 along frequency, stride 1 and causal along time.

    A stride-1 transposed convolution along time sums ``W_k * in[t - k]`` for k < kt: it needs the past kt - 1 input
    frames, carried like a causal convolution's; the outputs for the chunk's frames are the fully overlapped ones."""

    def __init__(self, c_in: int, c_out: int, kf: int = 4, kt: int = 4) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, (kt, kf), stride=(1, 2), padding=(0, (kf - 2) // 2))
        self.context = kt - 1
        self.name = ""

    def forward(self, x: torch.Tensor, state: StateFn) -> torch.Tensor:
        t = x.shape[-2]
        x = state(self.name, self.context)(x) if state else F.pad(x, (0, 0, self.context, 0))
        return self.conv(x)[..., self.context : self.context + t, :]


class ResBlock(nn.Module):
    """GroupNorm (per frame) -> SiLU -> causal conv -> GroupNorm -> + embedding -> SiLU -> causal conv, residual."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, kt: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = CausalConv(c_in, c_out, 3, kt)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = CausalConv(c_out, c_out, 3, kt)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, state: StateFn) -> torch.Tensor:
        h = self.conv1(F.silu(frame_group_norm(x, self.norm1)), state)
        # emb: (B, T, E) per frame -> (B, C, T, 1), added after the norm: added before it, the part shared by a
        # group's channels was normalised away, and the poses' effect with it (a trained model ignored them)
        h = F.silu(frame_group_norm(h, self.norm2) + self.emb(emb).transpose(1, 2)[..., None])
        return self.skip(x) + self.conv2(h, state)


class FourierEmbedding(nn.Module):
    """Gaussian Fourier features of each input scalar on its own: [sin(2 pi w c_i), cos(2 pi w c_i)] with fixed
    w ~ N(0, scale^2), ``features`` frequencies per scalar. Kept per scalar so that the MLP can ignore a pose
    component that carries nothing (the simulated source is omnidirectional, its orientation is irrelevant), which
    a projection mixing all 14 components into every feature does not allow."""

    def __init__(self, dim_in: int, features: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim_in, features) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * c[..., :, None] * self.freqs  # (..., dim_in, features)
        return torch.cat([proj.sin(), proj.cos()], dim=-1).flatten(-2)


class CausalUNet(nn.Module):
    """v = net(phi_t, x, t, poses), all per frame; see the module docstring."""

    def __init__(self, config: UNetConfig = SMALL) -> None:
        super().__init__()
        self.config = cfg = config
        ch, kt, g, e = cfg.channels, cfg.time_kernel, cfg.groups, cfg.emb_dim
        self.t_features = FourierEmbedding(1, cfg.fourier_features, cfg.t_scale)
        pose_inputs = POSE_DIM + (DIRECTION_DIM if cfg.pose_direction else 0)
        self.pose_features = FourierEmbedding(pose_inputs, cfg.pose_features, cfg.pose_scale)
        # one MLP for t and one for the poses, summed. The pose MLP's last layer starts at zero: in a shared MLP the
        # 238 pose inputs were noise to the t-dependence that training learns first, their weights were driven down,
        # and the trained model ignored the poses; starting silent, the pose path grows as far as it helps.
        self.t_mlp = nn.Sequential(nn.Linear(2 * cfg.fourier_features, e), nn.SiLU(), nn.Linear(e, e))
        self.pose_mlp = nn.Sequential(
            nn.Linear(2 * pose_inputs * cfg.pose_features + pose_inputs, e), nn.SiLU(), nn.Linear(e, e)
        )
        nn.init.zeros_(self.pose_mlp[-1].weight)
        nn.init.zeros_(self.pose_mlp[-1].bias)
        if cfg.freq_embedding not in ("channels", "bias"):
            raise ValueError(f"freq_embedding must be 'channels' or 'bias'; got {cfg.freq_embedding!r}")
        c_in = STATE_CHANNELS + (2 * COND_CHANNELS if cfg.warp else COND_CHANNELS)
        if cfg.freq_embedding == "channels":
            bins = torch.arange(N_BINS, dtype=torch.float32) / N_BINS
            k = torch.tensor(cfg.freq_periods, dtype=torch.float32)
            angles = math.pi * bins[None, :] * k[:, None]
            self.register_buffer(
                "freq_pos", torch.cat([angles.sin(), angles.cos()])[:, None, :], persistent=False
            )
            c_in += 2 * len(cfg.freq_periods)
        else:
            self.freq_bias = nn.Parameter(torch.zeros(ch[0], 1, N_BINS))
        self.conv_in = CausalConv(c_in, ch[0], 3, kt)
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down_blocks.append(nn.ModuleList([ResBlock(c, c, e, g, kt) for _ in range(cfg.blocks)]))
            if i < len(ch) - 1:
                self.downs.append(CausalConv(c, ch[i + 1], 4, 4, stride_f=2))
        self.mid = nn.ModuleList([ResBlock(ch[-1], ch[-1], e, g, kt) for _ in range(cfg.mid_blocks)])
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(len(ch) - 1)):
            self.ups.append(CausalUpConv(ch[i + 1], ch[i]))
            blocks = [ResBlock(2 * ch[i], ch[i], e, g, kt)]
            blocks += [ResBlock(ch[i], ch[i], e, g, kt) for _ in range(cfg.up_blocks - 1)]
            self.up_blocks.append(nn.ModuleList(blocks))
        self.norm_out = nn.GroupNorm(g, ch[0])
        # The embedding once more, next to the output head, as a (channel, frequency) map: interaural time
        # differences are phase slopes across frequency (a delay of k samples turns bin f by pi * k * f / 256), which
        # a per-channel offset, constant over frequency, cannot express.
        self.emb_out = nn.Linear(e, ch[0] * N_BINS)
        # v directly (4), and complex per-bin gains per ear applied to x (4) and to phi (4): see ``forward``
        self.conv_out = CausalConv(ch[0], 3 * STATE_CHANNELS, 3, kt)
        if cfg.head not in ("velocity", "target"):
            raise ValueError(f"head must be 'velocity' or 'target'; got {cfg.head!r}")
        if cfg.head == "target":
            # a complex gain per ear and bin from the pose MLP's hidden features: the direction-dependent filter
            # (an HRTF: level and phase slope per bin) as a function of the pose, for the head's gain on x
            self.pose_gain = nn.Linear(e, STATE_CHANNELS * N_BINS)
            nn.init.zeros_(self.pose_gain.weight)
            nn.init.zeros_(self.pose_gain.bias)
        for name, module in self.named_modules():
            if isinstance(module, CausalConv | CausalUpConv):
                module.name = name

    def pair(self, x: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """The condition pair (B, 4, T, F) of mono features x (B, 2, T, F): the flow's start is pair + sigma eps."""
        if self.config.warp:
            # the features are compressed magnitudes (|X| ** spec_exponent), so a gain g on X is g ** spec_exponent
            gains = ear_gains(poses, SAMPLE_RATE, N_FFT, x.shape[-1]) ** self.config.spec_exponent
            return warp_pair(x, ear_delays(poses, SAMPLE_RATE), N_FFT, gains)
        return torch.cat([x, x], dim=1)

    def causal_layers(self) -> list[str]:
        return [m.name for m in self.modules() if isinstance(m, CausalConv | CausalUpConv)]

    def embed(self, t: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """t (B,) or (B, T), poses (B, T, 14) -> (B, T, E)."""
        return self._embed(t, self._pose_features(poses)[0])

    def _pose_features(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the pose MLP's output (B, T, E), its hidden features (B, T, E))."""
        if self.config.pose_direction:
            poses = torch.cat([poses, source_direction(poses)], dim=-1)
        hidden = self.pose_mlp[1](self.pose_mlp[0](torch.cat([self.pose_features(poses), poses], dim=-1)))
        return self.pose_mlp[2](hidden), hidden

    def _embed(self, t: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """t (B,) or (B, T) and the pose MLP's output (B, T, E) -> the embedding (B, T, E). A t shared by the
        frames goes through its MLP once and is broadcast."""
        b = pose.shape[0]
        return F.silu(self.t_mlp(self.t_features(t.reshape(b, -1)[..., None])) + pose)

    def condition(self, x: torch.Tensor, poses: torch.Tensor) -> Condition:
        """Everything of the network that depends on (x, poses) only, not on (phi, t): computed once per chunk and
        shared by the solver's evaluations, which differ only in phi and t."""
        b, _, n, _ = x.shape
        pose, hidden = self._pose_features(poses)
        gain = None
        if self.config.head == "target":
            gain = self.pose_gain(hidden).view(b, n, STATE_CHANNELS, N_BINS).transpose(1, 2)
        return Condition(pair=self.pair(x, poses), pose=pose, gain=gain)

    def forward(
        self,
        phi: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        poses: torch.Tensor,
        state: StateFn = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """phi (B, 4, T, F), x (B, 2, T, F), t (B,), poses (B, T, 14) -> v (B, 4, T, F); F = N_BINS. ``cond`` is
        ``condition(x, poses)`` when the caller has it already (the solver's evaluations of one chunk)."""
        b, _, n, f = phi.shape
        if f != N_BINS:
            raise ValueError(f"the U-Net takes {N_BINS} frequency bins; got {f}")
        if cond is None:
            cond = self.condition(x, poses)
        emb = self._embed(t, cond.pose)
        x2 = cond.pair
        inputs = [phi, x2 if self.config.warp else x]
        if self.config.freq_embedding == "channels":
            inputs.append(self.freq_pos.expand(b, -1, n, -1))
        h = self.conv_in(torch.cat(inputs, dim=1), state)
        if self.config.freq_embedding == "bias":
            h = h + self.freq_bias
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb, state)
            if i < len(self.downs):
                skips.append(h)
                h = self.downs[i](h, state)
        for block in self.mid:
            h = block(h, emb, state)
        for up, blocks in zip(self.ups, self.up_blocks, strict=True):
            h = up(h, state)
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb, state)
        h = frame_group_norm(h, self.norm_out) + self.emb_out(emb).view(b, n, -1, N_BINS).transpose(1, 2)
        out = self.conv_out(F.silu(h), state)
        # The output head: v = d + a * x + b * phi (complex products per bin and ear). Per-frame GroupNorm leaves the
        # features without the frame's level, while v scales with it: for the simulated direct path,
        # v = (H(pose) x - phi) / (1 - t) exactly. The gains carry the level through the multiplication.
        d, a, b_ = out.split(STATE_CHANNELS, dim=1)
        if self.config.head == "velocity":
            return d + _cmul(a, x2) + _cmul(b_, phi)
        # "target": a x + b phi estimates the target y, and v = (y - phi) / (1 - t) exactly (phi = t y + (1 - t) z);
        # so a is the filter H(pose) itself at every t (the gain map of the pose is added to it) and b is -1. 1 - t
        # is floored at the last evaluation's 1/12 so that training's t near 1 does not blow the output up.
        a = a + cond.gain
        estimate = _cmul(a, x2) + _cmul(b_, phi) - phi
        remaining = (1 - t.reshape(b, -1)).clamp_min(1 / 12).expand(b, n)[:, None, :, None]
        return d + estimate / remaining


def _cmul(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Complex product of channel pairs (re, im, re, im, ...): (B, 2K, T, F) x (B, 2K, T, F)."""
    ar, ai, zr, zi = a[:, 0::2], a[:, 1::2], z[:, 0::2], z[:, 1::2]
    return torch.stack([ar * zr - ai * zi, ar * zi + ai * zr], dim=2).flatten(1, 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
