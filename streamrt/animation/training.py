"""The animation recipes' shared pieces (RAIN: pose maps; EvAnimate: event slices): synthetic puppets, the frame
codec, the backbone's training over 16-frame windows at the staggered levels inference uses, and the card's
held-out evaluation.

A recipe (``pipelines/<name>/train.py``) supplies its ``Condition``: how condition images are made from a clip
(frames + keypoints) and from a stream; everything else is here.

Training sample (one per batch row): a clip of a puppet character, a window of ``4 * G`` consecutive frames at the
noise levels the window holds in one inference pass (steady state: 4 groups at t = 249, 499, 749, 999, oldest
least noisy; while filling: the newest levels only; while draining: the oldest only), the condition images of those
frames, and a reference = another frame of the same clip or, a quarter of the time, the character at rest (so the
target's poses differ from the reference's).
Objective: v-prediction (LCM-compatible: the stream turns v into epsilon for LCM's x0 step), MSE over every frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from streamrt.animation.backbone import GROUP_FRAMES, GROUPS, AnimationBackbone, BackboneConfig, lcm_scheduler
from streamrt.animation.unet import UNetConfig
from streamrt.errors import ParamError
from streamrt.puppets import PuppetDataset, make_puppet_dataset, still
from streamrt.video.codec import CodecConfig
from streamrt.video.training import encode_clips, infinite_batches, train_codec, training_device

log = logging.getLogger(__name__)

# (levels of the groups present, oldest first): the window states inference passes through.
STEADY = (3, 2, 1, 0)
FILLING = ((0,), (1, 0), (2, 1, 0))
DRAINING = ((3, 2, 1), (3, 2), (3,))
STILL_FRACTION = 0.25


@dataclass(frozen=True)
class Condition:
    """What conditions a recipe's backbone: ``channels`` of condition image, made for a whole clip by
    ``from_clip(frames (T, S, S, 3) uint8, keypoints (T, 18, 3)) -> (T, S, S, C) uint8``."""

    name: str
    channels: int
    from_clip: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def add_arguments(parser: argparse.ArgumentParser, *, name: str) -> None:
    """The recipe's options; their defaults ARE the committed recipe (sized for 60 min on 2 CPU cores)."""
    from streamrt.video.folder import default_folder

    parser.add_argument("--out", type=Path, default=default_folder(name), help="model folder to write")
    parser.add_argument("--size", type=int, default=128, help="frame size in pixels (square)")
    parser.add_argument("--clips", type=int, default=240, help="synthetic training clips (random characters)")
    parser.add_argument("--frames", type=int, default=24, help="frames per training clip (>= 16)")
    parser.add_argument("--codec-steps", type=int, default=1200, help="frame autoencoder training steps")
    parser.add_argument("--codec-width", type=int, default=16, help="frame autoencoder width")
    parser.add_argument("--codec-batch", type=int, default=16, help="frames per codec step")
    parser.add_argument("--codec-crop", type=int, default=64, help="codec training crops (pixels, square)")
    parser.add_argument("--steps", type=int, default=4500, help="backbone training steps")
    parser.add_argument("--batch", type=int, default=1, help="16-frame windows per backbone step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (warm-up, cosine decay)")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64], help="UNet block widths")
    parser.add_argument("--steady-fraction", type=float, default=0.6, help="share of full 4-group windows")
    parser.add_argument("--eval-clips", type=int, default=8, help="held-out clips of the card's evaluation")
    parser.add_argument("--eval-frames", type=int, default=32, help="frames per held-out clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1: on the shared 2-core machine a step took 0.63 s on 1 thread, 0.79 s on 2",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: where the networks train (data and random numbers stay on the CPU, so a run draws the "
        "same samples on either)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: a few steps on tiny data (never committed)"
    )


def apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        quick = {"size": 32, "clips": 4, "frames": 16, "codec_steps": 3, "codec_crop": 32, "codec_width": 8, "codec_batch": 4,
                 "steps": 3, "batch": 1, "channels": [16, 32], "eval_clips": 2, "eval_frames": 16, "threads": 1}  # fmt: skip
        for k, v in quick.items():
            setattr(args, k, v)


def backbone_config(args: argparse.Namespace, condition: Condition) -> BackboneConfig:
    channels = tuple(args.channels)
    unet = UNetConfig(
        block_out_channels=channels,
        attention_head_dim=16,
        cross_attention_dim=2 * channels[0],
        norm_num_groups=8,
        motion_heads=4,
    )
    guider = (8, 16, 32, 64) if not args.quick else (4, 8, 8, 16)
    return BackboneConfig(
        size=args.size,
        condition_channels=condition.channels,
        guider_channels=guider,
        unet=unet,
        codec=CodecConfig(latent_channels=4, width=args.codec_width, levels=3),
    )


@dataclass
class AnimationData:
    clips: torch.Tensor  # (N, T, S, S, 3) uint8, CPU
    conditions: torch.Tensor  # (N, T, S, S, C) uint8, CPU
    latents: torch.Tensor  # (N, T, 4, s, s) unit-scale latents, CPU
    stills: (
        torch.Tensor
    )  # (N, S, S, 3) uint8: each clip's character at rest (the evaluation's kind of reference)


def conditions_of(data: PuppetDataset, condition: Condition) -> torch.Tensor:
    return torch.stack([condition.from_clip(c, k) for c, k in zip(data.clips, data.keypoints, strict=True)])


def window_levels(gen: torch.Generator, steady_fraction: float) -> tuple[int, ...]:
    """The levels (oldest group first) of one training window, drawn as inference meets them."""
    if float(torch.rand((), generator=gen)) < steady_fraction:
        return STEADY
    others = FILLING + DRAINING
    return others[int(torch.randint(len(others), (), generator=gen))]


def training_batch(
    data: AnimationData, rows: torch.Tensor, levels: tuple[int, ...], gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Windows of ``4 * len(levels)`` frames from clips ``rows``, with a reference frame each (CPU tensors)."""
    n_frames = GROUP_FRAMES * len(levels)
    t_total = data.clips.shape[1]
    x0, cond, refs = [], [], []
    for r in rows.tolist():
        start = int(torch.randint(t_total - n_frames + 1, (), generator=gen))
        ref = int(torch.randint(t_total, (), generator=gen))
        x0.append(data.latents[r, start : start + n_frames])
        cond.append(data.conditions[r, start : start + n_frames])
        # a quarter of the references are the character at rest (as a user's reference photo would be)
        use_still = float(torch.rand((), generator=gen)) < STILL_FRACTION
        refs.append(data.stills[r] if use_still else data.clips[r, ref])
    level = torch.tensor(levels).repeat_interleave(GROUP_FRAMES).repeat(len(rows))  # (B*F,)
    return {
        "x0": torch.cat(x0),  # (B*F, C, s, s)
        "conditions": torch.cat(cond).permute(0, 3, 1, 2).float() / 255,  # (B*F, C0, S, S)
        "references": torch.stack(refs).permute(0, 3, 1, 2).float() / 255,  # (B, 3, S, S)
        "levels": level,
        "noise": torch.randn((len(level), *data.latents.shape[2:]), generator=gen),
    }


def train_backbone(
    backbone: AnimationBackbone, data: AnimationData, args: argparse.Namespace, device: torch.device
) -> list[float]:
    """v-prediction over staggered windows; returns the loss per step. The codec stays frozen."""
    scheduler = lcm_scheduler(backbone.cfg.prediction_type)
    scheduler.set_timesteps(GROUPS)
    level_t = scheduler.timesteps.clone()  # level 0 = t 999 ... level 3 = t 249
    abar = scheduler.alphas_cumprod[level_t].float()
    backbone.to(device).train()
    backbone.codec.eval().requires_grad_(False)
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warmup = max(1, min(200, args.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
    )
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = infinite_batches(data.clips.shape[0], args.batch, gen)
    losses: list[float] = []
    bar = tqdm(range(args.steps), desc="backbone", leave=False)
    for step in bar:
        levels = window_levels(gen, args.steady_fraction)
        b = training_batch(data, next(batches), levels, gen)
        b = {k: v.to(device) for k, v in b.items()}
        a = abar.to(device)[b["levels"]].view(-1, 1, 1, 1)
        alpha, beta = a.sqrt(), (1 - a).sqrt()
        x_t = alpha * b["x0"] + beta * b["noise"]
        target = alpha * b["noise"] - beta * b["x0"]  # v
        cache = backbone.encode_reference(b["references"])
        features = backbone.guide(b["conditions"])
        out = backbone.predict(
            x_t, level_t.to(device)[b["levels"]], features, cache, GROUP_FRAMES * len(levels)
        )
        loss = F.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 49:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}")
    return losses


def codec_crops(clips: torch.Tensor, crop: int, seed: int) -> torch.Tensor:
    """One random ``crop``-pixel square per clip (8-aligned), every frame: the codec is fully convolutional, so
    it trains on crops at a quarter of the cost of whole 128-pixel frames."""
    size = clips.shape[2]
    if crop >= size:
        return clips
    gen = torch.Generator().manual_seed(seed + 2)
    out = torch.empty(*clips.shape[:2], crop, crop, 3, dtype=clips.dtype)
    for i in range(clips.shape[0]):
        y, x = (torch.randint((size - crop) // 8 + 1, (2,), generator=gen) * 8).tolist()
        out[i] = clips[i, :, y : y + crop, x : x + crop]
    return out


def prepare_data(
    args: argparse.Namespace, cfg: BackboneConfig, condition: Condition, device: torch.device
) -> tuple[AnimationData, AnimationBackbone, dict]:
    """Puppet clips and their condition images, the trained codec, the latents; and a fresh backbone holding the
    codec (the codec's ``latent_scale`` makes latents unit-scale)."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # drawing is many tiny ops: threads only add overhead
    train = make_puppet_dataset(args.clips, args.frames, args.size, seed=args.seed)
    conditions = conditions_of(train, condition)
    torch.set_num_threads(threads)
    codec, codec_mse = train_codec(
        codec_crops(train.clips, args.codec_crop, args.seed),
        cfg.codec,
        args.codec_steps,
        max(1, args.codec_batch // 4),  # train_codec takes 4x this many frames per step
        1e-3,
        args.seed,
        device,
    )
    latents = encode_clips(codec, train.clips)
    codec.cpu()
    codec.cfg.latent_scale = float(latents.std())
    latents = latents / codec.cfg.latent_scale
    torch.manual_seed(args.seed)
    backbone = AnimationBackbone(cfg)
    backbone.codec.load_state_dict(codec.state_dict())
    metrics = {
        "codec_mse": codec_mse,
        "latent_scale": codec.cfg.latent_scale,
        "data_seconds": time.perf_counter() - started,
        "device": str(device),
    }
    stills = torch.stack([still(spec, args.size) for spec in train.specs])
    return AnimationData(train.clips, conditions, latents, stills), backbone, metrics


# ---------------------------------------------------------------------------------------------------- evaluation
def colour_histogram(frames: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (T, bins^3) normalised joint RGB histograms."""
    q = (frames.long() * bins // 256).clamp(0, bins - 1)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = torch.zeros(frames.shape[0], bins**3)
    hist.scatter_add_(1, idx.flatten(1), torch.ones(idx.flatten(1).shape))
    return hist / hist.sum(dim=1, keepdim=True)


def identity_distance(frames: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean total-variation distance (0..1) between each frame's colour histogram and the reference's."""
    h = colour_histogram(frames)
    r = colour_histogram(reference[None])
    return float(0.5 * (h - r).abs().sum(dim=1).mean())


def evaluate(
    render: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    condition: Condition,
    n: int,
    frames: int,
    size: int,
    seed: int = 1234,
) -> dict:
    """On HELD-OUT characters and motions: ``render(reference (S,S,3) u8, conditions (T,S,S,C) u8, frames (T,S,S,3)
    u8) -> (T, S, S, 3) u8`` animates the character's still; the puppet keypoint detector reads the pose back.

    - ``keypoint_error_px``: output vs driving pose; ``baseline_reference_px``: the still reference shown for every
      frame (the nearest-reference baseline: no animation); ``detector_on_truth_px``: the true frames (the floor);
    - ``identity_distance``: colour-histogram distance output vs reference; ``identity_truth`` the true frames vs
      the reference (what a perfect output scores); ``identity_other_character`` another held-out character's
      frames vs this reference (a lost identity)."""
    from streamrt.poses import keypoint_error
    from streamrt.puppets import detect_keypoints

    held = make_puppet_dataset(n, frames, size, seed=seed, held_out=True)
    err, base, floor, ident, ident_truth, ident_other = [], [], [], [], [], []
    for i in range(n):
        clip, kps = held.clips[i], held.keypoints[i]
        reference = still(held.specs[i], size)
        cond = condition.from_clip(clip, kps)
        out = render(reference, cond, clip)
        err.append(keypoint_error(detect_keypoints(out), kps, size))
        base.append(keypoint_error(detect_keypoints(reference[None].expand(frames, -1, -1, -1)), kps, size))
        floor.append(keypoint_error(detect_keypoints(clip), kps, size))
        ident.append(identity_distance(out, reference))
        ident_truth.append(identity_distance(clip, reference))
        ident_other.append(identity_distance(held.clips[(i + 1) % n], reference))

    def mean(xs: list[float]) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else math.nan

    return {
        "held_out_clips": n,
        "held_out_frames": frames,
        "keypoint_error_px": mean(err),
        "baseline_reference_px": mean(base),
        "detector_on_truth_px": mean(floor),
        "identity_distance": mean(ident),
        "identity_truth": mean(ident_truth),
        "identity_other_character": mean(ident_other),
    }


def write_metrics(out: Path, metrics: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def check_args(args: argparse.Namespace) -> None:
    if args.frames < GROUP_FRAMES * GROUPS:
        raise ParamError(
            f"--frames must be at least {GROUP_FRAMES * GROUPS} (one 16-frame window); got {args.frames}"
        )
    if args.size % 8:
        raise ParamError(f"--size must be a multiple of 8; got {args.size}")


__all__ = [
    "AnimationData",
    "Condition",
    "add_arguments",
    "apply_quick",
    "backbone_config",
    "check_args",
    "evaluate",
    "prepare_data",
    "train_backbone",
    "training_device",
    "write_metrics",
]
