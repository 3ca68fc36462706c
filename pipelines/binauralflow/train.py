"""Training recipe of the embedded BinauralFlow default (``assets/binauralflow-small``).

Data, all made offline: mono speech from Debian's espeak-ng (``streamrt.speech``, resampled to 48 kHz), each
utterance rendered binaurally on the fly at a random position (``simulate``: the OpenAL Soft HRTF set of
libopenal-data, 1 / r distance gain, six first-order image sources and a late tail of one fixed room). A step takes
random ``frames``-frame segments of ``batch`` pairs and applies the flow-matching L1 loss on v = y - z (``flow``), on
the spectral representation of the model's configuration (``SMALL``: amplitude-compressed STFTs, ``flow.compress``).
``--device cuda`` trains the network on a GPU; the data and every random number stay on the CPU, so a run draws the
same pairs, t and noise on either device.
The weights written are an exponential moving average of the trained ones, as fp16 safetensors, with
``config.json``; ``evaluate`` then measures the card's metrics on held-out utterances and positions.

The default arguments of ``add_arguments`` are the recipe that produced the committed weights.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from buffers.stft import stft
from pipelines.binauralflow import evaluate
from pipelines.binauralflow.flow import SIGMA, complex_to_channels, compress, flow_matching_loss
from pipelines.binauralflow.generator import CONFIG, DEFAULT_MODEL, WEIGHTS
from pipelines.binauralflow.hrtf import DEFAULT_MHR, load_mhr
from pipelines.binauralflow.model import N_BINS, SMALL, CausalUNet, UNetConfig, count_parameters
from pipelines.binauralflow.simulate import (
    LISTENER,
    ROOM,
    SPEECH_RMS,
    convolve,
    room_ir,
    sample_position,
    speaker_pose,
)
from pipelines.binauralflow.streaming import HOP, N_FFT, SAMPLE_RATE
from streamrt.video.training import training_device

log = logging.getLogger(__name__)

TINY = dataclasses.replace(SMALL, channels=(4, 8, 8, 8, 8), emb_dim=16, fourier_features=8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="output model folder")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("runs/speech"), help="cache of synthesised utterances"
    )
    parser.add_argument("--utterances", type=int, default=600, help="espeak-ng training utterances")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=8, help="segments per step (each at its own position)")
    parser.add_argument("--frames", type=int, default=64, help="STFT frames per segment (hop 128 at 48 kHz)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="AdamW learning rate (cosine, 50 warm-up steps)"
    )
    parser.add_argument("--ema", type=float, default=0.995, help="decay of the weight average that is saved")
    parser.add_argument("--gain-db", type=float, default=6.0, help="random level range +-dB around -20 dBFS")
    parser.add_argument(
        "--save-every", type=int, default=100, help="write the averaged weights every N steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: where the network trains (data and random numbers stay on the CPU, so a run draws the "
        "same samples on either)",
    )
    parser.add_argument("--hrtf", type=Path, default=DEFAULT_MHR, help="OpenAL Soft .mhr HRTF file")
    parser.add_argument("--eval-utterances", type=int, default=8, help="held-out utterances per engine")
    parser.add_argument("--eval-positions", type=int, default=4, help="held-out positions per utterance")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--channels",
        default=",".join(str(c) for c in SMALL.channels),
        help="U-Net widths at 256, 128, 64, 32, 16 bins (comma-separated); the rest of the config is SMALL's",
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run: a tiny model, a few steps")


def parse_channels(text: str) -> tuple[int, ...]:
    """'8,12,16,24,32' -> (8, 12, 16, 24, 32): five positive widths divisible by the GroupNorm groups."""
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(
            f"--channels takes five comma-separated integers, e.g. 8,12,16,24,32; got {text!r}"
        ) from None
    if len(widths) != len(SMALL.channels) or any(w <= 0 or w % SMALL.groups for w in widths):
        raise SystemExit(
            f"--channels takes {len(SMALL.channels)} positive widths divisible by {SMALL.groups}; got {text!r}"
        )
    return widths


class PairSampler:
    """Random (mono, binaural, poses) training segments as network features."""

    def __init__(
        self,
        utterances: list[torch.Tensor],
        hrtf_path: Path,
        frames: int,
        gain_db: float,
        seed: int,
        config: UNetConfig = SMALL,
    ):
        self.hrtf = load_mhr(hrtf_path)
        self.config = config
        self.frames = frames
        self.gain_db = gain_db
        self.rng = np.random.default_rng(seed)
        # long enough that a segment can start anywhere with the room's tail already going
        self.utterances = [u / u.pow(2).mean().sqrt().clamp_min(1e-6) * SPEECH_RMS for u in utterances]

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (2, T, F), y (4, T, F), poses (T, 14)."""
        mono = self.utterances[self.rng.integers(len(self.utterances))]
        mono = mono * 10 ** (self.rng.uniform(-self.gain_db, self.gain_db) / 20)
        position = sample_position(self.rng)
        ir = room_ir(position, self.hrtf, ROOM)
        n = self.frames * HOP
        if mono.shape[-1] < n:
            mono = torch.nn.functional.pad(mono, (0, n - mono.shape[-1]))
        start = int(self.rng.integers(0, mono.shape[-1] - n + 1)) // HOP * HOP
        # render only the segment, with as much past as the room response is long (the full convolution's values)
        past = min(start, ir.shape[-1])
        binaural = convolve(mono[:, start - past : start + n], ir)[:, past:]
        segment = mono[:, start : start + n]
        cfg = self.config
        x = compress(
            stft(segment, N_FFT, HOP, padding="causal")[:, :N_BINS], cfg.spec_exponent, cfg.spec_scale
        )
        y = compress(
            stft(binaural, N_FFT, HOP, padding="causal")[:, :N_BINS], cfg.spec_exponent, cfg.spec_scale
        )
        poses = torch.cat([speaker_pose(position, self.rng), LISTENER]).expand(self.frames, -1)
        return (
            complex_to_channels(x.transpose(-1, -2)[None])[0],
            complex_to_channels(y.transpose(-1, -2)[None])[0],
            poses,
        )

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys, ps = zip(*(self.sample() for _ in range(size)), strict=True)
        return torch.stack(xs), torch.stack(ys), torch.stack(ps)


def lr_factor(step: int, total: int, warmup: int = 50) -> float:
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def save_model(net: CausalUNet, out: Path, extra: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    config = {
        "unet": net.config.to_dict(),
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "hop": HOP,
        "sigma": SIGMA,
        **extra,
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    from streamrt import speech

    device = training_device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = TINY if args.quick else dataclasses.replace(SMALL, channels=parse_channels(args.channels))
    n_utts = 4 if args.quick else args.utterances
    steps = 3 if args.quick else args.steps
    frames = 16 if args.quick else args.frames
    started = time.time()
    log.info("synthesising %d utterances into %s", n_utts, args.data_dir)
    utterances = speech.corpus(
        args.data_dir / "train", n_utts, engine="espeak", sample_rate=SAMPLE_RATE, seed=args.seed
    )
    sampler = PairSampler(utterances, args.hrtf, frames, args.gain_db, args.seed, config)
    net = CausalUNet(config).to(device)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
    gen = torch.Generator().manual_seed(args.seed)
    losses: list[float] = []
    bar = tqdm(range(steps), desc="binauralflow", disable=args.no_progress)
    for step in bar:
        x, y, poses = (v.to(device) for v in sampler.batch(args.batch))
        loss = flow_matching_loss(net, y, x, poses, gen, cond=net.condition(x, poses))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (step + 1) / (step + 10))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % 100 == 99:
            log.info("step %d: loss %.4f (mean of the last 100)", step + 1, np.mean(losses[-100:]))
        if args.save_every and step % args.save_every == args.save_every - 1 and step + 1 < steps:
            # a usable model while training goes on (the recipe's result is the final one below)
            save_model(ema, args.out, {"parameters": count_parameters(ema), "steps_done": step + 1})
    train_seconds = time.time() - started
    recipe = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("handler",)
    }
    save_model(ema, args.out, {"parameters": count_parameters(ema), "train_seconds": round(train_seconds, 1)})
    (args.out / "train_metrics.json").write_text(
        json.dumps({"recipe": recipe, "train_seconds": round(train_seconds, 1), "losses": losses}) + "\n"
    )
    log.info("trained %d steps in %.0f s; evaluating", steps, train_seconds)
    evaluate.run_card_evaluation(
        args.out,
        data_dir=args.data_dir,
        hrtf_path=args.hrtf,
        utterances=2 if args.quick else args.eval_utterances,
        positions=1 if args.quick else args.eval_positions,
        seed=args.seed + 1,
        quick=args.quick,
        losses=losses,
    )
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
