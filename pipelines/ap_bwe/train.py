"""Training recipe of the embedded AP-BWE default (``assets/ap-bwe-8k-16k``): 8 kHz -> 16 kHz speech.

Data: English sentences synthesised offline by Debian's espeak-ng (``streamrt.speech``) at 16 kHz; two voice families
(the ``en-gb-x-gbclan`` language and the ``m7``/``f5`` variants of every language) and a separate sentence seed are
held out for evaluation. The narrowband input is made as the paper makes it: the wideband signal downsampled to
8 kHz and resampled back up to 16 kHz (soxr HQ), which is also the "plain resampling" baseline of the card.

Model and losses are AP-BWE's, scaled to a CPU: the generator keeps the published structure (two ConvNeXt streams of
8 blocks with the interaction, residual amplitude, atan2 phase, STFT 1024/80/320: the same receptive field and
latency as the official models) at a smaller width; the discriminators are the published MPD (periods 2, 3, 5, 7, 11)
and multi-resolution amplitude and phase discriminators ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)) at
smaller widths; the losses and weights are the release's (``losses.py``). AdamW with betas (0.8, 0.99), learning
rate decayed by 0.999 per epoch, gradient norms clipped at 10, as in the release; a larger learning rate and a
smaller batch than the release's (2e-4, 16) because the budget is minutes of one CPU thread, not days of a GPU.

The default arguments ARE the recipe of the committed weights. ``--quick`` runs a few steps on tiny data (CI).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pipelines.ap_bwe import losses
from pipelines.ap_bwe.checkpoint import DEFAULT_DIR, save_folder
from pipelines.ap_bwe.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from pipelines.ap_bwe.model import APBWE, APBWEConfig, amp_pha_istft, amp_pha_stft, count_parameters
from streamrt.resample import resample

log = logging.getLogger(__name__)

WIDEBAND_RATE = 16_000
NARROWBAND_RATE = 8_000
HELD_OUT_LANGUAGE = "en-gb-x-gbclan"
HELD_OUT_VARIANTS = ("m7", "f5")
EVAL_SEED_OFFSET = 1000


def voices(split: str) -> list[str]:
    """espeak-ng voices of the training or held-out split (disjoint)."""
    from streamrt.speech import ESPEAK_LANGUAGES, ESPEAK_VARIANTS

    all_voices = [f"{lang}+{var}" for lang in ESPEAK_LANGUAGES for var in ESPEAK_VARIANTS]
    held = [
        v for v in all_voices if v.startswith(HELD_OUT_LANGUAGE + "+") or v.split("+")[1] in HELD_OUT_VARIANTS
    ]
    return held if split == "eval" else [v for v in all_voices if v not in held]


def narrowband(wb: torch.Tensor, rate: int = WIDEBAND_RATE, nb_rate: int = NARROWBAND_RATE) -> torch.Tensor:
    """(1, S) wideband -> (1, S) narrowband at the same rate: down to ``nb_rate`` and back up (soxr HQ)."""
    return resample(resample(wb, rate, nb_rate), nb_rate, rate)[..., : wb.shape[-1]]


def pairs(utterances: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(narrowband, wideband) pairs of (S,) tensors, peak-normalised to 0.95 like the release's loader."""
    out = []
    for wb in utterances:
        wb = wb[:1] * (0.95 / wb.abs().max().clamp(min=1e-6))
        out.append((narrowband(wb)[0], wb[0]))
    return out


def speech_pairs(data_dir: Path, n: int, *, split: str, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from streamrt.speech import corpus

    seed = seed if split == "train" else seed + EVAL_SEED_OFFSET
    return pairs(
        corpus(data_dir, n, engine="espeak", sample_rate=WIDEBAND_RATE, seed=seed, voices=voices(split))
    )


def festival_pairs(data_dir: Path, n: int, *, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from streamrt.speech import corpus

    return pairs(
        corpus(data_dir, n, engine="festival", sample_rate=WIDEBAND_RATE, seed=seed + EVAL_SEED_OFFSET)
    )


def batches(data: list[tuple[torch.Tensor, torch.Tensor]], batch: int, segment: int, rng: random.Random):
    """Endless random (narrowband, wideband) segments of ``segment`` samples, (B, segment) each."""
    while True:
        nb, wb = [], []
        for _ in range(batch):
            x_nb, x_wb = data[rng.randrange(len(data))]
            if x_wb.shape[-1] >= segment:
                start = rng.randrange(x_wb.shape[-1] - segment + 1)
                nb.append(x_nb[start : start + segment])
                wb.append(x_wb[start : start + segment])
            else:
                pad = segment - x_wb.shape[-1]
                nb.append(torch.nn.functional.pad(x_nb, (0, pad)))
                wb.append(torch.nn.functional.pad(x_wb, (0, pad)))
        yield torch.stack(nb), torch.stack(wb)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="model folder to write")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("runs/speech"), help="cache of synthesised speech"
    )
    parser.add_argument("--utterances", type=int, default=500, help="training utterances (espeak-ng)")
    parser.add_argument("--eval-utterances", type=int, default=24, help="held-out espeak-ng utterances")
    parser.add_argument(
        "--festival-utterances", type=int, default=12, help="held-out festival utterances (0: none)"
    )
    parser.add_argument("--channels", type=int, default=128, help="ConvNeXt width (the release: 512)")
    parser.add_argument("--layers", type=int, default=8, help="ConvNeXt blocks per stream (the release: 8)")
    parser.add_argument("--mpd-channels", type=_ints, default=(8, 16, 32, 64, 64), help="MPD widths")
    parser.add_argument("--spec-channels", type=int, default=16, help="MRAD/MRPD widths (the release: 64)")
    parser.add_argument(
        "--steps",
        type=int,
        default=1291,
        help="generator/discriminator updates (the committed run: 2500 requested, stopped by a 32-minute limit at 1291)",
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--segment", type=int, default=8000, help="samples per training segment (the release's)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=0.999, help="learning-rate factor per epoch")
    parser.add_argument(
        "--max-minutes", type=float, default=32.0, help="stop (and save) after this wall time"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny data (smoke test, CI)")


def quick(args: argparse.Namespace) -> argparse.Namespace:
    """The CI smoke test: tiny model and data, a few steps, festival skipped (CI installs only espeak-ng)."""
    args = argparse.Namespace(**vars(args))
    args.utterances, args.eval_utterances, args.festival_utterances = 3, 2, 0
    args.channels, args.layers = 16, 2
    args.mpd_channels, args.spec_channels = (4, 4, 4, 4, 4), 4
    args.steps, args.batch, args.segment = 3, 2, 4000
    return args


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    data = speech_pairs(args.data_dir, args.utterances, split="train", seed=args.seed)
    data_seconds = time.perf_counter() - started
    hours = sum(wb.shape[-1] for _, wb in data) / WIDEBAND_RATE / 3600
    log.info("training data: %d utterances, %.2f h, made in %.0f s", len(data), hours, data_seconds)

    config = APBWEConfig(
        channels=args.channels, layers=args.layers, sample_rate=WIDEBAND_RATE, narrowband_rate=NARROWBAND_RATE
    )
    gen = APBWE(config)
    mpd = MultiPeriodDiscriminator(channels=args.mpd_channels)
    mrad = MultiResolutionDiscriminator("amplitude", channels=args.spec_channels)
    mrpd = MultiResolutionDiscriminator("phase", channels=args.spec_channels)
    betas = (0.8, 0.99)
    optim_g = torch.optim.AdamW(gen.parameters(), args.lr, betas=betas)
    optim_d = torch.optim.AdamW(
        itertools.chain(mpd.parameters(), mrad.parameters(), mrpd.parameters()), args.lr, betas=betas
    )
    total_seconds = sum(wb.shape[-1] for _, wb in data) / WIDEBAND_RATE
    steps_per_epoch = max(1, round(total_seconds * WIDEBAND_RATE / (args.segment * args.batch)))
    sched_g = torch.optim.lr_scheduler.ExponentialLR(optim_g, gamma=args.lr_decay)
    sched_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=args.lr_decay)

    history: list[dict[str, float]] = []
    stream = batches(data, args.batch, args.segment, rng)
    bar = tqdm(range(args.steps), desc="ap-bwe", disable=args.no_progress)
    train_started = time.perf_counter()
    done = 0
    for step in bar:
        nb, wb = next(stream)
        terms = train_step(gen, mpd, mrad, mrpd, optim_g, optim_d, nb, wb)
        done = step + 1
        if done % steps_per_epoch == 0:
            sched_g.step()
            sched_d.step()
        if step % 25 == 0 or done == args.steps:
            history.append({"step": step, **terms})
            bar.set_postfix(mag=f"{terms['mag']:.2f}", pha=f"{terms['pha']:.1f}", d=f"{terms['disc']:.2f}")
        if step % 100 == 0:
            log.info("step %d (%.0f s): %s", step, time.perf_counter() - train_started, _fmt(terms))
        if args.max_minutes is not None and (time.perf_counter() - train_started) / 60 > args.max_minutes:
            log.warning("stopping at step %d: --max-minutes %.1f reached", done, args.max_minutes)
            break
    train_seconds = time.perf_counter() - train_started
    gen.eval()
    save_folder(gen, args.out)
    return {
        "config": config.to_dict(),
        "generator_params": count_parameters(gen),
        "discriminator_params": {
            "mpd": count_parameters(mpd),
            "mrad": count_parameters(mrad),
            "mrpd": count_parameters(mrpd),
        },
        "steps": done,
        "steps_per_epoch": steps_per_epoch,
        "train_utterances": len(data),
        "train_hours": hours,
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "threads": torch.get_num_threads(),
        "history": history,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "handler"},
    }


def train_step(
    gen, mpd, mrad, mrpd, optim_g, optim_d, nb: torch.Tensor, wb: torch.Tensor
) -> dict[str, float]:
    """One discriminator and one generator update, as in the release's training loop."""
    cfg = gen.config
    gen.train()
    mag_wb, pha_wb, com_wb = amp_pha_stft(wb, cfg)
    mag_nb, pha_nb, _ = amp_pha_stft(nb, cfg)
    mag_g, pha_g, com_g = gen(mag_nb, pha_nb)
    audio_g = amp_pha_istft(mag_g, pha_g, cfg, length=wb.shape[-1])
    _, _, com_g_hat = amp_pha_stft(audio_g, cfg)
    y, y_g = wb.unsqueeze(1), audio_g.unsqueeze(1)

    optim_d.zero_grad()
    r, g, _, _ = mpd(y, y_g.detach())
    loss_f = losses.discriminator_loss(r, g)
    r, g, _, _ = mrad(y, y_g.detach())
    loss_a = losses.discriminator_loss(r, g)
    r, g, _, _ = mrpd(y, y_g.detach())
    loss_p = losses.discriminator_loss(r, g)
    loss_d = (loss_a + loss_p) * losses.SPEC_DISC_WEIGHT + loss_f
    loss_d.backward()
    for d in (mpd, mrad, mrpd):
        torch.nn.utils.clip_grad_norm_(d.parameters(), max_norm=10)
    optim_d.step()

    optim_g.zero_grad()
    spectral = losses.spectral_losses(mag_wb, pha_wb, com_wb, mag_g, pha_g, com_g, com_g_hat)
    _, g_f, fr_f, fg_f = mpd(y, y_g)
    _, g_a, fr_a, fg_a = mrad(y, y_g)
    _, g_p, fr_p, fg_p = mrpd(y, y_g)
    w = losses.SPEC_DISC_WEIGHT
    adv = (losses.generator_adv_loss(g_a) + losses.generator_adv_loss(g_p)) * w + losses.generator_adv_loss(
        g_f
    )
    fm = (losses.feature_loss(fr_a, fg_a) + losses.feature_loss(fr_p, fg_p)) * w + losses.feature_loss(
        fr_f, fg_f
    )
    loss_g = sum(spectral.values()) + adv + fm
    loss_g.backward()
    torch.nn.utils.clip_grad_norm_(gen.parameters(), max_norm=10)
    optim_g.step()
    return {
        **{k: float(v.detach()) for k, v in spectral.items()},
        "adv": float(adv.detach()),
        "fm": float(fm.detach()),
        "gen": float(loss_g.detach()),
        "disc": float(loss_d.detach()),
    }


def _fmt(terms: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in terms.items())


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.quick:
        args = quick(args)
    torch.set_num_threads(args.threads)
    metrics = train(args)
    log.info(
        "trained %d steps in %.0f s (%s params)",
        metrics["steps"],
        metrics["train_seconds"],
        metrics["generator_params"],
    )
    if not args.no_eval:
        from pipelines.ap_bwe.evaluate import evaluate_folder

        metrics["eval"] = evaluate_folder(
            args.out,
            data_dir=args.data_dir,
            espeak=args.eval_utterances,
            festival=args.festival_utterances,
            seed=args.seed,
        )
        log.info("held-out LSD: %s", json.dumps(metrics["eval"]["summary"]))
    (Path(args.out) / "train_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # python -m pipelines.ap_bwe.train
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
