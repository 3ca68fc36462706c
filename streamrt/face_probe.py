"""Measuring lip sync and identity on generated talking-face frames (``streamrt train face-probe``).

The X-Streamer card reports lip sync (does the mouth in the output video open with the output audio's energy, and
how far apart are they in time) and identity (does the face stay the portrait's character over a long call). A face
mesh (MediaPipe) does not read the project's cartoon faces, so this module trains a tiny probe on ``streamrt.faces``
renders, like ``streamrt.puppet_keypoints`` does for puppets: a four-level strided CNN at 64x64 input regressing
mouth opening, blink and the mouth's centre. Training frames are random training-split characters in random states
(mouth, rounding, blink, head shift/roll/yaw wider than the clips use), augmented with blur, down/up-sampling,
noise, colour and brightness changes and left/right flips, because generated frames are softer than renders.

Lip sync (``lip_sync``) is the Pearson correlation of the per-frame mouth opening with the audio's RMS envelope per
video frame at every lag within +-``max_lag_ms``; the best lag gives the audio/video offset. Identity
(``identity_distance``) is not learned: it compares colour layout, colour histogram and gradient texture of the
head region (the centre of the frame, where the portrait's face sits) with the portrait's, which is small for the
same character talking, blinking and moving a little and large for another character.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from streamrt.errors import InputError, ParamError

log = logging.getLogger(__name__)

NAME = "face-probe"
ASSET = Path(__file__).resolve().parents[1] / "assets" / NAME
INPUT = 64  # network input size; frames of any size are resized to it
OUTPUTS = ("mouth_open", "blink", "centre_x", "centre_y")


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class ProbeNet(nn.Module):
    """(B, 3, 64, 64) in [0, 1] -> (B, 4): mouth opening and blink logits, mouth centre (fractions of the frame)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.width = width
        self.features = nn.Sequential(
            _block(3, w, 2),  # 32x32
            _block(w, w, 1),
            _block(w, 2 * w, 2),  # 16x16
            _block(2 * w, 2 * w, 1),
            _block(2 * w, 3 * w, 2),  # 8x8
            _block(3 * w, 4 * w, 2),  # 4x4
        )
        # A flattened 4x4 map rather than global pooling: the mouth's position matters (and is an output).
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * w * 16, 128), nn.ReLU(), nn.Linear(128, len(OUTPUTS))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5))


def to_input(frames: torch.Tensor) -> torch.Tensor:
    """(F, 3, H, W) float in [0, 1] -> (F, 3, 64, 64)."""
    _check_frames(frames)
    x = frames.float()
    if x.shape[-1] != INPUT or x.shape[-2] != INPUT:
        x = F.interpolate(x, size=(INPUT, INPUT), mode="bilinear", antialias=True, align_corners=False)
    return x


def _check_frames(frames: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
        raise InputError(
            f"the face probe takes float frames (F, 3, H, W) in [0, 1]; got {tuple(frames.shape)} {frames.dtype}"
        )


def _one_portrait(portrait: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) -> (1, 3, H, W)."""
    if portrait.ndim == 3:
        portrait = portrait.unsqueeze(0)
    if portrait.shape[0] != 1:
        raise InputError(f"portrait must be one image (3, H, W); got {tuple(portrait.shape)}")
    return portrait


class FaceProbe:
    """Reads mouth opening, blink and mouth centre from talking-face frames; ``embed`` gives an identity descriptor."""

    def __init__(self, net: ProbeNet) -> None:
        self.net = net.eval()

    @classmethod
    def load(cls, folder: str | Path | None = None) -> FaceProbe:
        """The committed probe (assets/face-probe) or a folder written by this recipe's ``--out``."""
        from streamrt.video.folder import load_into, read_folder

        path = Path(folder) if folder is not None else ASSET
        key = str(path.resolve())
        if key not in _CACHE:
            # read_folder raises a ModelLoadError naming `streamrt train face-probe` when the folder is missing
            config, parts = read_folder(path, NAME)
            net = ProbeNet(int(config.get("width", 16)))
            load_into(net, parts.get("net"), "probe", path)
            _CACHE[key] = cls(net)
        return _CACHE[key]

    @torch.no_grad()
    def measure(self, frames: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        """(F, 3, H, W) in [0, 1] -> mouth_open (F,) and blink (F,) in [0, 1], centre (F, 2) mouth (x, y) in pixels."""
        outs = [self.net(to_input(frames[i : i + batch])) for i in range(0, frames.shape[0], batch)]
        out = torch.cat(outs) if outs else torch.zeros(0, len(OUTPUTS))
        scale = torch.tensor([frames.shape[-1], frames.shape[-2]], dtype=torch.float32)
        return {
            "mouth_open": out[:, 0].sigmoid(),
            "blink": out[:, 1].sigmoid(),
            "centre": out[:, 2:4] * scale,
        }

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) -> (F, D) identity descriptor (colour layout, histogram, texture); see ``identity_distance``."""
        return face_descriptor(frames)


_CACHE: dict[str, FaceProbe] = {}


# ---------------------------------------------------------------------------------------------------- lip sync
@dataclass(frozen=True)
class LipSync:
    corr: float  # Pearson correlation at the best lag
    offset_ms: float  # > 0: the video lags the audio


def audio_envelope(audio: torch.Tensor, sample_rate: int, fps: float, frames: int) -> torch.Tensor:
    """RMS of the audio per video frame (frames,); samples past the audio's end count as silence."""
    if sample_rate <= 0 or fps <= 0 or frames < 0:
        raise ParamError(
            f"sample_rate, fps must be positive and frames >= 0; got {sample_rate}, {fps}, {frames}"
        )
    a = audio.float().reshape(-1) if audio.ndim == 1 else audio.float().mean(0).reshape(-1)
    spf = sample_rate / fps
    bounds = [round(i * spf) for i in range(frames + 1)]
    need = bounds[-1]
    if a.shape[0] < need:
        a = F.pad(a, (0, need - a.shape[0]))
    sq = torch.cat([torch.zeros(1, dtype=torch.float64), (a.double() ** 2).cumsum(0)])
    idx = torch.tensor(bounds)
    energy = (sq[idx[1:]] - sq[idx[:-1]]) / (idx[1:] - idx[:-1]).clamp_min(1)
    return energy.clamp_min(0).sqrt().float()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 1e-12 else 0.0


def lip_sync(
    mouth: torch.Tensor, audio: torch.Tensor, sample_rate: int, fps: float, max_lag_ms: float = 400
) -> LipSync:
    """Best-lag Pearson correlation of mouth opening (F,) with the audio's RMS envelope.

    Lag L > 0 compares mouth[t + L] with the audio at t (the video is L frames late); lags span +-``max_lag_ms``
    but always leave at least half of the frames overlapping.
    """
    mouth = mouth.reshape(-1).float()
    n = mouth.shape[0]
    if n < 4:
        raise InputError(f"lip sync needs at least 4 frames of mouth opening; got {n}")
    env = audio_envelope(audio, sample_rate, fps, n)
    max_lag = min(int(max_lag_ms * fps / 1000), n // 2)
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        m, e = (mouth[lag:], env[: n - lag]) if lag >= 0 else (mouth[: n + lag], env[-lag:])
        c = _pearson(m, e)
        if c > best[0] or (c == best[0] and abs(lag) < abs(best[1])):
            best = (c, lag)
    return LipSync(corr=best[0], offset_ms=best[1] * 1000.0 / fps)


# ---------------------------------------------------------------------------------------------------- identity
# The head region of a centred portrait: most of the frame's width and its upper three quarters.
_REGION = (slice(2, 50), slice(10, 54))  # rows, cols of the 64-px frame


def face_descriptor(frames: torch.Tensor) -> torch.Tensor:
    """(F, 3, H, W) -> (F, D): 4x4 mean colours, a joint colour histogram (4^3 soft bins) and gradient energy of the
    head region. Coarse on purpose, so that a mouth opening, a blink or a 3-px shift barely moves it."""
    x = to_input(frames)[:, :, _REGION[0], _REGION[1]].clamp(0, 1)
    layout = F.adaptive_avg_pool2d(x, 4).flatten(1)  # (F, 48)
    # soft joint histogram: triangular weights to 4 bin centres per channel
    centres = torch.linspace(0, 1, 4)
    w = (1 - (x.unsqueeze(2) - centres.view(1, 1, 4, 1, 1)).abs() * 3).clamp_min(0)  # (F, 3, 4, h, w)
    hist = torch.einsum("fahw,fbhw,fchw->fabc", w[:, 0], w[:, 1], w[:, 2]).flatten(1)
    hist = hist / hist.sum(1, keepdim=True).clamp_min(1e-8)  # (F, 64)
    gx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((2, 3))
    gy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((2, 3))
    return torch.cat([layout, hist, gx, gy], 1)


def identity_distance(frames: torch.Tensor, portrait: torch.Tensor) -> torch.Tensor:
    """(F,) distance of each frame's character to the portrait's (0 = identical look; ~0.02 for the same character
    talking and moving, several times more for another character)."""
    d, p = face_descriptor(frames), face_descriptor(_one_portrait(portrait))
    diff = (d - p).abs()
    # Mean absolute colour difference of the layout, total-variation distance of the histograms, texture change.
    return diff[:, :48].mean(1) + 0.5 * diff[:, 48:112].sum(1) + diff[:, 112:].mean(1)


def face_detail(frames: torch.Tensor, portrait: torch.Tensor) -> torch.Tensor:
    """(F,) how crisp each frame's head region is, relative to the portrait: the share of the luma's detail in the
    finest band (under ~1.5 px) against the next band (~1.5-4 px), as a ratio to the same share in the portrait.
    Both shares have the share of a detail-free image subtracted. About 1 for a face as crisp as the portrait; a face
    that blurs or dissolves into a smooth blob falls towards 0; noise or ringing pushes it above 1.

    Why: the identity distance compares coarse colour layout, so a face that keeps its colours while its features
    melt scores well there. A ratio of two bands, rather than the fine band alone, does not drop when the content
    has fewer edges (closed eyes, a closed mouth), only when the edges soften."""
    _check_frames(frames)
    portrait = _one_portrait(portrait)
    if portrait.shape[-2:] != frames.shape[-2:]:
        portrait = F.interpolate(
            portrait.float(), size=frames.shape[-2:], mode="bilinear", antialias=True, align_corners=False
        )
    floor = _smooth_share()
    return (_fine_detail_share(frames) - floor) / (_fine_detail_share(portrait) - floor).clamp_min(1e-6)


@functools.cache
def _smooth_share() -> float:
    """The fine-band share of an image with no fine detail at all (a broad Gaussian bump): what any content tends to
    as it is blurred, since both bands then see only its curvature. Subtracted, so a melted face reads ~0."""
    r = torch.arange(96, dtype=torch.float32) - 47.5
    bump = torch.exp(-(r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) / (2 * 12.0**2))
    return float(_fine_detail_share(bump.expand(1, 3, 96, 96)))


def _fine_detail_share(frames: torch.Tensor) -> torch.Tensor:
    h, w = frames.shape[-2:]
    # the head region of the 64-px probe input, scaled to this resolution
    rows = slice(_REGION[0].start * h // INPUT, _REGION[0].stop * h // INPUT)
    cols = slice(_REGION[1].start * w // INPUT, _REGION[1].stop * w // INPUT)
    x = frames.float().clamp(0, 1)[:, :, rows, cols]
    luma = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    n = luma.shape[0]
    fine_blur = _gauss_blur(luma, torch.full((n,), 1.0))
    coarse_blur = _gauss_blur(luma, torch.full((n,), 2.5))
    fine = (luma - fine_blur).pow(2).mean((1, 2, 3)).sqrt()
    band = (fine_blur - coarse_blur).pow(2).mean((1, 2, 3)).sqrt()
    return fine / band.clamp_min(1e-6)


# ---------------------------------------------------------------------------------------------------- training
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ASSET, help="model folder to write")
    parser.add_argument("--identities", type=int, default=1500, help="training characters (training split)")
    parser.add_argument("--states", type=int, default=4, help="random face states rendered per character")
    parser.add_argument("--size", type=int, default=128, help="render size before the 64-px network input")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=16, help="channels of the first level")
    parser.add_argument("--eval-identities", type=int, default=150, help="held-out characters for the card")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: a few steps on tiny data")


def random_state(rng: random.Random):
    """A face state drawn wider than talking clips use (shift 5 px, roll 0.12, yaw 0.4), for robustness."""
    from streamrt.faces import FaceState

    r = rng.random()
    blink = 0.0 if r < 0.6 else 1.0 if r < 0.8 else rng.random()
    return FaceState(
        mouth_open=0.0 if rng.random() < 0.25 else rng.random(),
        mouth_round=0.0 if rng.random() < 0.4 else rng.random(),
        blink=blink,
        dx=rng.uniform(-5, 5),
        dy=rng.uniform(-5, 5),
        tilt=rng.uniform(-0.12, 0.12),
        yaw=rng.uniform(-0.4, 0.4),
    )


def make_dataset(
    identities: int, states: int, size: int, seed: int, split: str, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 64, 64) probe inputs and (N, 4) targets (mouth_open, blink, centre x, y as fractions)."""
    from streamrt.faces import mouth_centre, render_faces, sample_identity

    rng = random.Random(seed)
    xs, ys = [], []
    for _ in tqdm(range(identities), desc=f"{NAME} data", disable=not progress):
        ident = sample_identity(rng, split)  # type: ignore[arg-type]
        sts = [random_state(rng) for _ in range(states)]
        xs.append(to_input(render_faces(ident, sts, size)))
        ys.append(
            torch.tensor(
                [[s.mouth_open, s.blink, *(c / size for c in mouth_centre(ident, s, size))] for s in sts],
                dtype=torch.float32,
            )
        )
    return torch.cat(xs), torch.cat(ys)


def _gauss_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur, sigma (B,) in pixels (separable, 7 taps)."""
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 7)
    b, c, h, w = x.shape
    kk = k.repeat_interleave(c, 0)  # (B*c, 7)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="replicate"), kk.view(b * c, 1, 1, 7), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), kk.view(b * c, 1, 7, 1), groups=b * c)
    return y.view(b, c, h, w)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, blur, down/up-sampling (a decoder's softness), colour/brightness changes and noise."""
    b = x.shape[0]
    y = y.clone()
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    y[:, 2] = torch.where(flip, 1 - y[:, 2], y[:, 2])
    blur = torch.rand(b, generator=gen) < 0.5
    sigma = torch.rand(b, generator=gen) * 1.2 * blur
    x = torch.where(blur.view(-1, 1, 1, 1), _gauss_blur(x, sigma), x)
    down = torch.rand(b, generator=gen) < 0.25
    if down.any():
        small = F.interpolate(x[down], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        x[down] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    gain = 0.8 + 0.4 * torch.rand(b, 3, 1, 1, generator=gen)
    bias = 0.12 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    noise = torch.randn(x.shape, generator=gen) * 0.04 * torch.rand(b, 1, 1, 1, generator=gen)
    return (x * gain + bias + noise).clamp(0, 1), y


def _loss(net: ProbeNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = net(x)
    # Cross-entropy on the (soft) targets, not L1: with most training eyes open, an L1 loss settles on the median and
    # never learns blinks.
    value = F.binary_cross_entropy_with_logits(out[:, :2], y[:, :2])
    centre = F.l1_loss(out[:, 2:], y[:, 2:])
    return value + 5 * centre


def blur_frames(frames: torch.Tensor, sigma: float = 1.5, noise: float = 0.04, seed: int = 0) -> torch.Tensor:
    """Gaussian blur (``sigma`` px) + noise: a stand-in for a generator's soft output (used by the card and tests)."""
    sig = torch.full((frames.shape[0],), sigma)
    x = _gauss_blur(frames.float(), sig)
    x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x.clamp(0, 1)


def evaluate(probe: FaceProbe, identities: int, size: int, seed: int) -> dict[str, float]:
    """Held-out characters in random states: mouth-opening error and correlation (clean, blurred), blink accuracy,
    mouth-centre error."""
    from streamrt.faces import mouth_centre, render_faces, sample_identity

    rng = random.Random(seed)
    frames, truth, centres = [], [], []
    for _ in range(identities):
        ident = sample_identity(rng, "held_out")
        sts = [random_state(rng) for _ in range(4)]
        frames.append(render_faces(ident, sts, size))
        truth += [(s.mouth_open, s.blink) for s in sts]
        centres += [mouth_centre(ident, s, size) for s in sts]
    x = torch.cat(frames)
    t = torch.tensor(truth)
    c = torch.tensor(centres)
    m = probe.measure(x)
    mb = probe.measure(blur_frames(x, 1.5 * size / 128))
    sure = (t[:, 1] - 0.5).abs() > 0.25  # blink accuracy on clearly open or clearly closed eyes
    acc = ((m["blink"] > 0.5) == (t[:, 1] > 0.5))[sure].float().mean()
    return {
        "mouth_open_mae": float((m["mouth_open"] - t[:, 0]).abs().mean()),
        "mouth_open_corr": _pearson(m["mouth_open"], t[:, 0]),
        "mouth_open_mae_blurred": float((mb["mouth_open"] - t[:, 0]).abs().mean()),
        "mouth_open_corr_blurred": _pearson(mb["mouth_open"], t[:, 0]),
        "blink_accuracy": float(acc),
        "blink_accuracy_blurred": float(((mb["blink"] > 0.5) == (t[:, 1] > 0.5))[sure].float().mean()),
        "mouth_centre_error_px": float((m["centre"] - c).norm(dim=1).mean()),
        "frame_size": size,
        "frames": int(x.shape[0]),
    }


def run(args: argparse.Namespace) -> int:
    from streamrt.video.folder import save_folder

    if args.quick:
        args.identities, args.states, args.steps, args.batch, args.eval_identities = 6, 2, 3, 4, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    x_all, y_all = make_dataset(args.identities, args.states, args.size, args.seed, "train", progress=True)
    data_s = time.time() - started
    gen = torch.Generator().manual_seed(args.seed)
    net = ProbeNet(args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=max(args.steps, 1), pct_start=0.1)
    losses: list[float] = []
    net.train()
    for step in tqdm(range(args.steps), desc=NAME):
        idx = torch.randint(x_all.shape[0], (args.batch,), generator=gen)
        x, y = augment(x_all[idx].clone(), y_all[idx], gen)
        loss = _loss(net, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 250 == 0:
            log.info("step %d loss %.4f", step, losses[-1])
    train_s = time.time() - started
    probe = FaceProbe(net)
    metrics = evaluate(probe, args.eval_identities, args.size, args.seed + 1)
    metrics.update(
        {
            "train_seconds": round(train_s, 1),
            "data_seconds": round(data_s, 1),
            "steps": args.steps,
            "training_frames": int(x_all.shape[0]),
            "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "parameters": sum(p.numel() for p in net.parameters()),
            "threads": args.threads,
        }
    )
    save_folder(args.out, NAME, {"width": args.width, "input": INPUT, "outputs": list(OUTPUTS)}, {"net": net})
    (args.out / "eval_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "train_loss.json").write_text(json.dumps([round(v, 5) for v in losses[::10]]) + "\n")
    _CACHE.pop(str(Path(args.out).resolve()), None)
    write_card(args, metrics)
    log.info(
        "held-out mouth opening corr %.3f, mae %.3f", metrics["mouth_open_corr"], metrics["mouth_open_mae"]
    )
    return 0


def write_card(args: argparse.Namespace, metrics: dict) -> None:
    size = (args.out / "model.safetensors").stat().st_size
    command = "streamrt train face-probe" + ("" if args.out == ASSET else f" --out {args.out}")
    m = metrics
    text = f"""# face-probe

A tiny probe for the project's procedural talking faces (`streamrt.faces`): a four-level strided CNN at 64x64
input with a small MLP head regressing mouth opening (0..1), blink (0..1) and the mouth's centre.
{m["parameters"]:,} parameters, {size / 1e6:.2f} MB fp16 safetensors.

It is the X-Streamer card's instrument (`streamrt.face_probe`): `FaceProbe.measure` reads the mouth opening from
generated frames, and `lip_sync` correlates it with the output audio's energy envelope (best lag = the A/V offset).
Identity (`identity_distance`) is a fixed colour/texture descriptor of the head region, not part of these weights.
It only knows the procedural faces, not people.

## Data

{args.identities} random training-split characters x {args.states} random states ({m["training_frames"]} frames):
mouth opening and rounding, blinks, head shift +-5 px, roll +-0.12 rad, yaw +-0.4 (wider than the talking clips use),
rendered at {args.size} px and resized to 64. Augmentation: left/right flips, Gaussian blur (sigma up to 1.2 px of
the 64-px input), 2x down/up-sampling, per-channel gain, brightness and noise (generated frames are softer than
renders).

## Command

```
{command}
```

{m["steps"]} steps of batch {args.batch}, AdamW + one-cycle lr {args.lr}; {m["train_seconds"] / 60:.1f} min on
{m["threads"]} CPU thread(s) of this machine, data generation ({m["data_seconds"]:.0f} s) included.

## Metrics (held-out characters: hair style/colour + shirt colour/pattern combinations never trained on)

| metric | value |
|---|---|
| mouth opening, mean absolute error (0..1 scale) | {m["mouth_open_mae"]:.3f} |
| mouth opening, correlation of predicted vs true | {m["mouth_open_corr"]:.3f} |
| same, frames blurred (Gaussian sigma 1.5 px + 4 % noise): error / correlation | {m["mouth_open_mae_blurred"]:.3f} / {m["mouth_open_corr_blurred"]:.3f} |
| blink accuracy (eyes clearly open or closed) | {m["blink_accuracy"]:.3f} |
| blink accuracy, blurred | {m["blink_accuracy_blurred"]:.3f} |
| mouth centre error, px of a {m["frame_size"]}-px frame | {m["mouth_centre_error_px"]:.2f} |
| held-out frames | {m["frames"]} |
"""
    (args.out / "README.md").write_text(text)
