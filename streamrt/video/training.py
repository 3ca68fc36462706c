"""Pieces every text-to-video recipe shares: synthetic data, the frame codec's training, the word encoder's
vocabulary, latents, evaluation of prompt following on held-out phrasings.

Recipes (``pipelines/<name>/train.py``) call these and add their method's objective.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from streamrt.errors import ParamError
from streamrt.synthetic_video import (
    COLOURS,
    HELD_OUT_TEMPLATES,
    MOTIONS,
    TRAIN_TEMPLATES,
    VideoDataset,
    all_captions,
    make_dataset,
    measure,
)
from streamrt.video.codec import CodecConfig, FrameCodec
from streamrt.video.text import TextConfig, WordTextEncoder, build_vocab

log = logging.getLogger(__name__)


def add_common_arguments(
    parser: argparse.ArgumentParser, *, name: str, size: int, clips: int, frames: int
) -> None:
    from streamrt.video.folder import default_folder

    parser.add_argument("--out", type=Path, default=default_folder(name), help="model folder to write")
    parser.add_argument("--size", type=int, default=size, help="frame size in pixels (square)")
    parser.add_argument("--clips", type=int, default=clips, help="synthetic training clips")
    parser.add_argument("--frames", type=int, default=frames, help="frames per training clip")
    parser.add_argument("--codec-steps", type=int, default=1500, help="frame autoencoder training steps")
    parser.add_argument(
        "--codec-from",
        type=Path,
        default=None,
        help="reuse the frame codec of another text-to-video model folder trained on the same synthetic data "
        "(e.g. assets/streamingt2v-tiny) instead of training one",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2-core budget)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: where the networks train (data and random numbers stay on the CPU, so a run draws the "
        "same samples on either)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: a few steps on tiny data (never committed)"
    )


def apply_quick(args: argparse.Namespace, **overrides) -> None:
    """``--quick``: tiny sizes and a few steps, so CI exercises the whole recipe in seconds."""
    if args.quick:
        defaults = {"size": 32, "clips": 6, "frames": 8, "codec_steps": 3, "batch": 2, "threads": 1}
        defaults.update(overrides)
        for k, v in defaults.items():
            setattr(args, k, v)


def training_device(args: argparse.Namespace) -> torch.device:
    """``--device`` checked: a clear error instead of a CUDA stack trace on a machine without a GPU."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"--device {args.device}: CUDA is not available here; train with --device cpu")
    return device


@dataclass
class Data:
    train: VideoDataset
    text: WordTextEncoder  # on the training device
    codec: FrameCodec  # trained, back on the CPU
    latents: torch.Tensor  # (N, T, C, h, w), on the CPU: samples are cut here and moved to the device


def infinite_batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        yield from torch.randperm(n, generator=gen).split(batch)


def train_codec(
    clips: torch.Tensor,
    cfg: CodecConfig,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[FrameCodec, float]:
    """Reconstruction training on single frames; returns the codec (on ``device``) and its last-100-step MSE
    (pixels in [0, 1])."""
    torch.manual_seed(seed)
    codec = FrameCodec(cfg).to(device)
    frames = clips.flatten(0, 1)  # (N*T, H, W, 3)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    batches = infinite_batches(frames.shape[0], batch * 4, gen)
    losses = []
    for _ in tqdm(range(steps), desc="codec", leave=False):
        x = frames[next(batches)].permute(0, 3, 1, 2).to(device).float() / 255
        z = codec.encode(x)
        # MSE in [0, 1] pixel units (as before), unclamped; the small latent penalty keeps their scale bounded
        loss = F.mse_loss(codec.decode_unclamped(z), x * 2 - 1) / 4 + 1e-4 * z.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    tail = losses[-100:]
    return codec.eval(), sum(tail) / max(1, len(tail))


@torch.no_grad()
def encode_clips(codec: FrameCodec, clips: torch.Tensor) -> torch.Tensor:
    """Latents of every frame, on the CPU whatever the codec's device."""
    n, t = clips.shape[:2]
    device = next(codec.parameters()).device
    x = clips.flatten(0, 1).permute(0, 3, 1, 2)
    z = torch.cat([codec.encode(part.to(device).float() / 255).cpu() for part in x.split(256)])
    return z.view(n, t, *z.shape[1:])


def load_codec_from(folder: Path) -> FrameCodec:
    """The frame codec of a model folder written by any text-to-video recipe (its ``codec`` section and weights)."""
    import json

    from streamrt.errors import ModelLoadError
    from streamrt.video.folder import CONFIG, load_into, read_folder

    try:
        pipeline = json.loads((Path(folder) / CONFIG).read_text())["pipeline"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"--codec-from {folder}: not a model folder ({exc})") from exc
    config, parts = read_folder(Path(folder), pipeline)
    if "codec" not in config:
        raise ModelLoadError(f"--codec-from {folder}: its config has no frame codec")
    cfg = CodecConfig.from_dict(config["codec"])
    cfg.latent_scale = 1.0  # rescaled to this dataset below
    codec = FrameCodec(cfg)
    load_into(codec, parts.get("codec"), "codec", Path(folder))
    return codec.eval()


def prepare_data(
    args: argparse.Namespace, text_dim: int, codec_cfg: CodecConfig, max_words: int = 16
) -> tuple[Data, dict]:
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # drawing frames is many tiny ops: threads only add overhead
    train = make_dataset(args.clips, args.frames, args.size, seed=args.seed)
    torch.set_num_threads(threads)
    vocab = build_vocab(all_captions())
    torch.manual_seed(args.seed)
    text = WordTextEncoder(
        TextConfig(
            vocab=vocab, dim=text_dim, max_words=max_words, layers=1, heads=4 if text_dim % 4 == 0 else 1
        )
    )
    device = training_device(args)
    text.to(device)
    if getattr(args, "codec_from", None) is not None:
        codec, codec_mse = load_codec_from(args.codec_from), float("nan")
        codec.to(device)
    else:
        codec, codec_mse = train_codec(
            train.clips, codec_cfg, args.codec_steps, args.batch, args.lr, args.seed, device
        )
    latents = encode_clips(codec, train.clips)
    codec.cpu()
    # unit-scale latents: the flow/diffusion noise is N(0, 1), so the data should be on the same scale
    codec.cfg.latent_scale = float(latents.std())
    latents = latents / codec.cfg.latent_scale
    metrics = {
        "codec_mse": codec_mse,
        "latent_scale": codec.cfg.latent_scale,
        "data_seconds": time.perf_counter() - started,
        "device": str(device),
    }
    return Data(train, text, codec, latents), metrics


def prompt_renderer(gen: Any, frames: int = 16) -> Callable[[str], torch.Tensor]:
    """``render(prompt)`` for ``evaluate_following``: the first ``frames`` frames a prepared text-to-video generator
    pulls for the prompt, with no transition from the previous one -> (T, H, W, 3) uint8."""
    from fractions import Fraction

    def render(prompt: str) -> torch.Tensor:
        gen.prepare({"prompt": prompt, "prompt_transition": 0})
        return torch.stack([gen.pull(i, Fraction(1, 30))[0].data for i in range(frames)])

    return render


def evaluate_following(
    render: Callable[[str], torch.Tensor], n: int, frames: int, size: int, seed: int = 1234
) -> dict:
    """Prompt following on HELD-OUT phrasings: generate ``frames`` frames per prompt with ``render(prompt)`` ->
    (T, H, W, 3) uint8, read colour and motion back with ``synthetic_video.measure``; accuracies against the prompt."""
    held = make_dataset(n, 2, 16, seed=seed, held_out=True)
    colour_ok = motion_ok = 0
    for caption, spec in zip(held.captions, held.specs, strict=True):
        m = measure(render(caption))
        colour_ok += m.colour == spec.colour
        motion_ok += m.motion == spec.motion
    return {
        "held_out_prompts": n,
        "colour_accuracy": colour_ok / n,
        "motion_accuracy": motion_ok / n,
        "chance_colour": 1 / len(COLOURS),
        "chance_motion": 1 / len(MOTIONS),
    }


def write_metrics(out: Path, metrics: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def command_line(
    name: str, args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> str:
    """The exact ``streamrt train`` command that reproduces ``args`` (only what differs from the recipe's defaults)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    parts = [f"streamrt train {name}"]
    for key, value in vars(args).items():
        if key not in defaults or value == defaults[key] or key in ("handler", "recipe"):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list | tuple):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _where(metrics: dict) -> str:
    if str(metrics.get("device", "cpu")).startswith("cuda"):
        return f"one GPU ({metrics.get('device')}; data and evaluation on {metrics.get('threads', '?')} CPU threads)"
    return f"this machine's CPU ({metrics.get('threads', '?')} threads)"


def write_card(out: Path, name: str, command: str, summary: str, metrics: dict) -> None:
    """The model card: what it is, data, the command, training time, metrics (from ``metrics.json``)."""
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
    )
    text = f"""# {out.name}

{summary}

Random weights are never a default: this folder is what `{command.split(" --")[0]}` writes.

## Data

Synthetic captioned clips from `streamrt.synthetic_video`: one shape (circle, square, triangle) of one colour (red,
green, blue, yellow, white) moving left, right, up, down or bouncing over a textured grey background (plain,
stripes, checks, dots); captions in {len(TRAIN_TEMPLATES)} training phrasings. Evaluation prompts use
{len(HELD_OUT_TEMPLATES)} held-out phrasings with words never seen in training.

## Command

```
{command}
```

Training time: {metrics.get("train_seconds", float("nan")) / 60:.1f} min on {_where(metrics)}. Weights: {size / 1e6:.2f} MB (fp16 safetensors).

## Metrics

Colour and motion accuracy read back from 16 generated frames per held-out prompt (`synthetic_video.measure`);
chance is 0.2 for each.

| metric | value |
|---|---|
{rows}
"""
    (out / "README.md").write_text(text)
