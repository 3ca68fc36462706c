"""Training recipe of the default Rolling Forcing model (``assets/rolling-forcing-tiny``).

Data: synthetic captioned clips (``streamrt.synthetic_video``). Steps: train the frame codec, encode every clip, then
train the causal DiT on rolling-window inputs built exactly as inference sees them: ``[sink block | recent clean
frames | window of 5 blocks]`` with the sink taken from the clip's first block and rotated to sit just before the
recent frames, clean context causal by block, the window bidirectional, the window's blocks at the shift-warped levels
(oldest least noisy, with jitter). Loss: flow matching (v = noise - x0) on the window frames.

Not the paper's training: Rolling Forcing distils a teacher with DMD on its own rollouts; this recipe trains the
small default directly with the rolling window's noise pattern (no teacher exists at this size).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipelines.rolling_forcing.model import RollingConfig
from pipelines.rolling_forcing.pipeline import NAME, RollingForcingGenerator, folder_config
from streamrt.video.attention import block_causal_mask
from streamrt.video.codec import CodecConfig
from streamrt.video.dit import AttentionPlan, DiTConfig, TokenGrid, VideoDiT
from streamrt.video.flow import shifted_sigmas
from streamrt.video.folder import save_folder
from streamrt.video.training import (
    add_common_arguments,
    apply_quick,
    command_line,
    evaluate_following,
    prepare_data,
    prompt_renderer,
    training_device,
    write_card,
    write_metrics,
)

log = logging.getLogger(__name__)
SUMMARY = "The default model of streamrt's Rolling Forcing pipeline: a small causal Wan-layout DiT, a word-level text encoder and an 8x frame codec, trained from scratch on CPU on synthetic captioned video. Mechanism as published (5-block rolling window, fresh re-noising, sink, bounded cache); training is not the paper's DMD distillation (see `pipelines/rolling_forcing/train.py`)."


class MaskedAttention(AttentionPlan):
    def __init__(self, mask: torch.Tensor) -> None:
        self._mask = mask

    def mask(self, layer: int, grid: TokenGrid) -> torch.Tensor:
        return self._mask


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, name=NAME, size=128, clips=600, frames=32)
    # Sized for the 60-minute 2-core budget from a measured ~0.3-0.8 s per window sample (fwd+bwd) at these sizes.
    parser.set_defaults(batch=4)
    parser.add_argument(
        "--steps", type=int, default=1500, help="DiT training steps (batch of --batch windows)"
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument("--frames-per-block", type=int, default=3)
    parser.add_argument(
        "--eval-prompts", type=int, default=20, help="held-out prompts for the card's metrics"
    )


def training_input(latents: torch.Tensor, rc: RollingConfig, sigmas: list[float], gen: torch.Generator):
    """One rolling-window sample from a clip (T, C, h, w), shaped like a window pass of inference:
    (x, t per frame, block of each frame, index of the first window frame, flow target of the window frames).

    Which window it imitates is drawn: warm-up windows 0..4 (1..5 blocks, the newest at level 0 = pure noise, no
    context), window 5 (full window + sink), later windows (full window + sink + the most recent clean frames)."""
    fpb, nb = rc.frames_per_block, rc.window_blocks
    u = float(torch.rand(1, generator=gen))
    w = int(u / 0.06) if u < 0.3 else (nb if u < 0.4 else nb + 1)  # 0..4 warm-up (6% each), 5, >= 6
    blocks = min(w + 1, nb)
    win = blocks * fpb
    sink = rc.sink_frames if w >= nb else 0
    recent = min(rc.max_attended_frames - rc.sink_frames - win, fpb) if w > nb else 0
    if latents.shape[0] < sink + recent + win:
        sink = recent = 0
    start = int(torch.randint(sink, latents.shape[0] - win - recent + 1, (1,), generator=gen))
    parts, frame_blocks, t = [], [], []
    if sink or recent:
        parts += [latents[:sink], latents[start : start + recent]]
        frame_blocks += [i // fpb for i in range(sink + recent)]
        t += [0.0] * (sink + recent)  # the cache holds clean K/V, written at t = 0
    window = latents[start + recent : start + recent + win]
    # block b of the window (0 = oldest) sits at level blocks-1-b: the oldest is the least noisy
    levels = [sigmas[blocks - 1 - b] for b in range(blocks)]
    window_sig = []
    for b in range(blocks):
        s = levels[b]
        if torch.rand(1, generator=gen) < 0.5:  # jitter half of the time, so nearby levels are learnt too
            s = float(torch.empty(1).uniform_(max(0.05, s - 0.1), min(1.0, s + 0.1), generator=gen))
        window_sig += [s] * fpb
    sig = torch.tensor(window_sig).view(-1, 1, 1, 1)
    noise = torch.randn(window.shape, generator=gen)
    noisy = (1 - sig) * window + sig * noise
    last = (frame_blocks[-1] + 1) if frame_blocks else 0
    frame_blocks += [last] * win  # the whole window is one block: bidirectional, sees all context
    x = torch.cat([*parts, noisy]) if parts else noisy
    target = noise - window
    return (
        x,
        torch.tensor(t + [s * 1000 for s in window_sig]),
        torch.tensor(frame_blocks),
        x.shape[0] - win,
        target,
    )


def run(args: argparse.Namespace) -> int:
    apply_quick(
        args, steps=3, dim=24, layers=1, heads=2, text_dim=16, eval_prompts=1, frames=16, frames_per_block=1
    )
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    codec_cfg = CodecConfig(latent_channels=4, width=16 if args.quick else 32, levels=3)
    data, metrics = prepare_data(args, args.text_dim, codec_cfg)
    rc = RollingConfig(frames_per_block=args.frames_per_block)
    if args.quick:
        rc = RollingConfig(frames_per_block=1, max_attended_frames=7, cache_frames=8)
    dc = DiTConfig(in_dim=4, out_dim=4, dim=args.dim, ffn_dim=2 * args.dim, num_heads=args.heads, num_layers=args.layers,
                   text_dim=args.text_dim, freq_dim=64 if args.dim >= 64 else 32)  # fmt: skip
    torch.manual_seed(args.seed)
    dev = training_device(args)
    dit = VideoDiT(dc).to(dev)
    params = list(dit.parameters()) + list(data.text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr * 0.5, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed + 1)
    sigmas = shifted_sigmas(rc.timesteps, rc.shift)
    tpf = (data.latents.shape[-2] // 2) * (data.latents.shape[-1] // 2)
    losses = []
    for _ in tqdm(range(args.steps), desc="rolling-forcing", leave=False):
        loss = torch.zeros((), device=dev)
        for _b in range(args.batch):
            i = int(torch.randint(len(data.train.captions), (1,), generator=gen))
            x, t, blocks, ws, target = training_input(data.latents[i], rc, sigmas, gen)
            x, t, target = x.to(dev), t.to(dev), target.to(dev)
            ctx = data.text.encode([data.train.captions[i]], word_dropout=0.1, generator=gen)
            plan = MaskedAttention(block_causal_mask(blocks, tpf).to(dev))
            pos = int(torch.randint(0, 64, (1,), generator=gen))
            v = dit(x.transpose(0, 1)[None], t[None], ctx, frame_start=pos, plan=plan)[0].transpose(0, 1)
            loss = loss + F.mse_loss(v[ws:], target) / args.batch
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    metrics["train_loss_last100"] = sum(losses[-100:]) / max(1, len(losses[-100:]))
    metrics["train_seconds"] = time.perf_counter() - started
    out: Path = args.out
    dit.cpu(), data.text.cpu()
    save_folder(out, NAME, folder_config(dc, data.text.cfg, data.codec.cfg, rc, args.size),
                {"transformer": dit, "text": data.text, "codec": data.codec})  # fmt: skip
    gen_ = RollingForcingGenerator.load(model=str(out))

    metrics.update(evaluate_following(prompt_renderer(gen_), args.eval_prompts, 16, args.size))
    metrics.update(
        {
            "steps": args.steps,
            "params_transformer": sum(p.numel() for p in dit.parameters()),
            "quick": args.quick,
        }
    )
    metrics["threads"] = args.threads
    write_metrics(out, metrics)
    write_card(out, NAME, command_line(NAME, args, add_arguments), SUMMARY, metrics)
    log.info("wrote %s: %s", out, metrics)
    return 0
