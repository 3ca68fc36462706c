"""Train X-Streamer's default (assets/xstreamer-tiny): Thinker, audio codec, frame codec and Actor, on data the
project synthesises offline.

Stages (each timed; the card lists them):

1. dialogue corpus (``streamrt.dialogue``): templated user turns and replies; held-out phrasings for evaluation;
2. Thinker: a tiny GPT-2 trained on the corpus (or ``--thinker DIR``: any local Hugging Face causal LM);
3. talking clips (``streamrt.talking_clips``): each reply spoken by espeak-ng (word and phoneme timing from its
   synthesis events),
   a procedural face (``streamrt.faces``) whose mouth follows the phonemes and the sound, with blinks and head motion;
4. audio codec (``streamrt.audio_codec``) on the clips' speech; frame codec on their frames;
5. Actor: chunk-wise diffusion forcing on windows of consecutive chunks, each chunk at its own noise level;
6. evaluation on held-out portraits and phrasings through the streaming path (``pipelines.xstreamer.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pipelines.xstreamer.actor import Actor, ActorConfig
from pipelines.xstreamer.data import STEPS_PER_FRAME, Segment, sample_batch, word_chunks
from pipelines.xstreamer.model import FPS, NAME, PORTRAITS, SIZE, THINKER, XStreamerModel, load_model
from pipelines.xstreamer.thinker import Thinker, train_thinker
from streamrt.audio_codec import AudioCodecConfig, train_codec
from streamrt.dialogue import dialogue_pairs
from streamrt.faces import portrait, sample_identity
from streamrt.speech_timing import speak_timed
from streamrt.talking_clips import TRAIN_VOICES, idle_clip, talking_clip
from streamrt.video.codec import CodecConfig
from streamrt.video.folder import default_folder
from streamrt.video.training import command_line, training_device
from streamrt.video.training import train_codec as train_frame_codec

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=default_folder(NAME), help="model folder to write")
    parser.add_argument("--thinker", type=Path, help="use this local Hugging Face causal LM as the Thinker")
    parser.add_argument(
        "--thinker-only",
        action="store_true",
        help="train only the Thinker stage into OUT/thinker and stop (run it beside the other stages, then pass "
        "--thinker OUT/thinker)",
    )
    parser.add_argument("--dialogues", type=int, default=3000, help="training dialogue pairs for the Thinker")
    parser.add_argument("--thinker-steps", type=int, default=1000)
    parser.add_argument(
        "--clips", type=int, default=360, help="talking clips (one reply each) for the codecs/Actor"
    )
    parser.add_argument("--codec-steps", type=int, default=600, help="audio codec training steps")
    parser.add_argument("--codec-segment", type=float, default=0.5, help="seconds of speech per codec sample")
    parser.add_argument("--frame-codec-steps", type=int, default=400, help="frame autoencoder training steps")
    parser.add_argument(
        "--frame-codec-width",
        type=int,
        default=16,
        help="frame autoencoder channels (16: ~12 ms to decode a 128x128 frame on one thread; 32 costs 4x)",
    )
    parser.add_argument("--steps", type=int, default=1200, help="Actor training steps")
    parser.add_argument(
        "--window",
        type=int,
        default=5,
        help="chunks per Actor training window (the stream's context is levels + cached chunks = 7; 5 keeps a CPU "
        "step near 1 s)",
    )
    parser.add_argument(
        "--mouth-weight",
        type=float,
        default=0.0,
        help="extra weight of the video loss around the mouth (0: the plain flow-matching loss); see "
        "Actor.diffusion_forcing_loss",
    )
    parser.add_argument(
        "--token-levels",
        choices=("chunk", "independent"),
        default="chunk",
        help="mask level of a chunk's audio/text tokens: the chunk's video level, or drawn apart from it",
    )
    parser.add_argument("--mouth-radius", type=float, default=1.0, help="its radius, in latent cells (8 px)")
    parser.add_argument(
        "--resume",
        type=Path,
        help="continue from this model folder: its codecs and Thinker are kept (not retrained), its Actor trains "
        "--steps more",
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--dim", type=int, default=192, help="Actor width")
    parser.add_argument("--layers", type=int, default=4, help="Actor blocks")
    parser.add_argument("--heads", type=int, default=3, help="Actor attention heads")
    parser.add_argument("--eval-turns", type=int, default=6, help="held-out turns in the evaluation")
    parser.add_argument(
        "--portraits", type=int, default=4, help="held-out portraits written for the demo picker"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (data and random draws stay on the CPU)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="speech cache folder (default: the user cache)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: a few steps on tiny data (never committed)"
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-evaluate the model folder --out (metrics.json merged, card rewritten); no training",
    )


def apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        for k, v in {
            "dialogues": 40, "thinker_steps": 3, "clips": 3, "codec_steps": 2, "frame_codec_steps": 2,
            "steps": 2, "batch": 2, "window": 2, "dim": 32, "layers": 1, "heads": 2, "eval_turns": 1, "portraits": 1,
        }.items():  # fmt: skip
            setattr(args, k, v)


def run(args: argparse.Namespace) -> int:
    apply_quick(args)
    if args.evaluate_only:
        return evaluate_folder(args)
    device = training_device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out: Path = args.out
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    # 1. the corpus (the Thinker trains after the codecs: with --thinker DIR it may still be training elsewhere)
    pairs = dialogue_pairs(args.dialogues, seed=args.seed, split="train")
    held_out = dialogue_pairs(max(args.eval_turns, 20), seed=args.seed + 1, split="held_out")

    if args.thinker_only:
        thinker_stage(args, pairs, held_out, work, args.thinker)
        return 0

    # 3. talking clips: replies of training pairs, spoken, on training identities
    t = time.perf_counter()
    chosen = rng.sample(pairs, min(args.clips, len(pairs)))
    clips, idles = [], []
    for i, pair in enumerate(tqdm(chosen, desc="talking clips", leave=False)):
        identity = sample_identity(rng, "train")
        voice = TRAIN_VOICES[i % len(TRAIN_VOICES)]
        speech = speak_timed(pair.reply, voice=voice, cache_dir=args.cache)
        clips.append((pair, identity, talking_clip(identity, speech, rng, lead_s=0.12, tail_s=0.48)))
        idles.append(idle_clip(identity, rng.choice((0.32, 0.64, 0.96)), rng))
    timings["clips_s"] = time.perf_counter() - t

    # 4. the codecs (kept from --resume's folder)
    resumed = load_model(str(args.resume)) if args.resume is not None else None
    if resumed is not None:
        audio_codec, frame_codec = resumed.audio_codec, resumed.frames
        old = resumed.folder / "metrics.json"
        old_metrics = json.loads(old.read_text()) if old.is_file() else {}
        codec_stats = old_metrics.get("audio_codec", {})
        frame_mse = old_metrics.get("frame_codec_mse")  # None when the folder's metrics lack it: left out
    else:
        audio_codec, frame_codec, codec_stats, frame_mse = train_codecs(clips, idles, args, device, timings)

    # 2. the Thinker
    t = time.perf_counter()
    given = args.thinker if args.thinker is not None or resumed is None else resumed.thinker_folder
    thinker_dir, thinker_metrics = thinker_stage(args, pairs, held_out, work, given)
    timings["thinker_s"] = time.perf_counter() - t
    thinker = Thinker.load(thinker_dir)

    # 5. the Actor's data and training
    t = time.perf_counter()
    if resumed is not None:
        cfg = resumed.actor.cfg
    else:
        cfg = ActorConfig(
            dim=args.dim,
            layers=args.layers,
            heads=args.heads,
            text_vocab=len(thinker.tokenizer),
            thinker_dim=thinker.hidden_size,
        )
    segments = build_segments(clips, idles, thinker, frame_codec, audio_codec, cfg, rng)
    # A fresh Actor after the segments, so its initial draw is the one the committed default was trained from; a
    # resumed one is the folder's, trainable again (load_model hands it out frozen, in eval mode).
    actor = Actor(cfg) if resumed is None else resumed.actor.requires_grad_(True).train()
    silence = audio_codec.silence_codes()
    actor.silence.copy_(silence)  # the portrait chunk's audio: the codec's codes of digital silence
    actor = actor.to(device)
    actor_stats = train_actor(actor, segments, silence, args, device)
    if resumed is not None:
        actor_stats["resumed_from"] = str(args.resume)
        before = old_metrics.get("actor", {})
        actor_stats["steps_before"] = int(before.get("steps_total", before.get("steps", 0)))
        actor_stats["steps_total"] = actor_stats["steps_before"] + args.steps
    else:
        actor_stats["steps_total"] = args.steps
    actor = actor.cpu().eval()
    timings["actor_s"] = time.perf_counter() - t

    # save, then evaluate through the generator's own path
    model = XStreamerModel(actor, frame_codec, audio_codec, work, {})
    (work / PORTRAITS).mkdir()
    for k in range(args.portraits):
        from streamrt.animation.folder import write_image

        image = portrait(sample_identity(random.Random(10_000 + k), "held_out"), SIZE)
        write_image(
            work / PORTRAITS / f"{k:02d}.png", image.mul(255).round().permute(1, 2, 0).to(torch.uint8)
        )
    model.save(work)
    timings["train_s"] = time.perf_counter() - started
    metrics = {
        "thinker": thinker_metrics,
        "audio_codec": codec_stats,
        "frame_codec_mse": frame_mse,
        "actor": actor_stats,
        "timings": timings,
        "threads": args.threads,
        "device": str(device),
        "command": command_line(NAME, args, add_arguments),
        "clips": len(clips),
    }
    if frame_mse is None:
        del metrics["frame_codec_mse"]
    if resumed is not None:  # the card reproduces the whole chain: the resumed folder's recipe, then this one
        if args.thinker is None:
            metrics["thinker"] = {**old_metrics.get("thinker", {}), "given": f"{args.resume}/{THINKER}"}
        metrics["command"] = f"{old_metrics.get('command', '?')}  &&  {metrics['command']}"
        metrics["timings"] = {
            **old_metrics.get("timings", {}),
            **{f"resume_{k}": v for k, v in timings.items()},
        }
        metrics["timings"].pop("eval_s", None)
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    evaluate_folder(argparse.Namespace(**{**vars(args), "out": work}))  # merges metrics.json, writes the card
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    log.info("wrote %s", out)
    return 0


def train_codecs(clips, idles, args, device, timings: dict) -> tuple:
    """The audio codec on the clips' speech, the frame codec on their frames (and some idle frames)."""
    t = time.perf_counter()
    audio_codec, codec_stats = train_codec(
        [c.audio for _, _, c in clips],
        AudioCodecConfig(),
        steps=args.codec_steps,
        segment_s=args.codec_segment,
        seed=args.seed,
        progress=True,
    )
    audio_codec = audio_codec.cpu().eval()
    codec_stats = {k: v for k, v in codec_stats.items() if isinstance(v, int | float)}
    timings["audio_codec_s"] = time.perf_counter() - t
    t = time.perf_counter()
    frames_u8 = torch.cat([c.frames for _, _, c in clips[:200]] + [i.frames for i in idles[:50]])
    frames_u8 = frames_u8.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[None]
    frame_codec, frame_mse = train_frame_codec(
        frames_u8,
        CodecConfig(width=args.frame_codec_width),
        args.frame_codec_steps,
        8,
        1e-3,
        args.seed,
        device,
    )
    timings["frame_codec_s"] = time.perf_counter() - t
    return audio_codec, frame_codec.cpu().eval(), codec_stats, frame_mse


def evaluate_folder(args: argparse.Namespace) -> int:
    """Held-out evaluation of a written folder: the call metrics, plus the codecs on held-out data."""
    from pipelines.xstreamer.card import write_card
    from pipelines.xstreamer.evaluate import evaluate_model
    from pipelines.xstreamer.model import load_model
    from streamrt.audio_codec import evaluate_codec

    torch.set_num_threads(args.threads)
    out: Path = args.out
    path = out / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    held_out = dialogue_pairs(max(args.eval_turns, 20), seed=args.seed + 1, split="held_out")
    t = time.perf_counter()
    metrics.update(evaluate_model(out, [p.user for p in held_out[: args.eval_turns]], seed=args.seed))
    model = load_model(str(out))
    rng = random.Random(args.seed + 99)
    from streamrt.talking_clips import HELD_OUT_VOICES

    speech = [
        speak_timed(p.reply, voice=HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)], cache_dir=args.cache)
        for i, p in enumerate(held_out[:12])
    ]
    metrics["audio_codec_held_out"] = evaluate_codec(model.audio_codec, [s.audio for s in speech])
    frames = torch.cat(
        [talking_clip(sample_identity(rng, "held_out"), s, rng).frames[::4] for s in speech[:6]]
    )
    with torch.no_grad():
        recon = model.frames.decode(model.frames.encode(frames))
    metrics["frame_codec_held_out_mse"] = float((recon - frames).pow(2).mean())
    metrics.setdefault("timings", {})["eval_s"] = time.perf_counter() - t
    path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_card(out, metrics)
    return 0


def thinker_stage(
    args: argparse.Namespace, pairs, held_out, work: Path, given: Path | None = None
) -> tuple[Path, dict]:
    """Train the Thinker into ``work/thinker`` (or copy ``given``: ``--thinker``, or the resumed folder's); with
    ``--thinker-only`` move it to ``--out/thinker`` and clean up."""
    thinker_dir = work / THINKER
    if given is not None:
        shutil.copytree(given, thinker_dir)
        recorded = given / "recipe_metrics.json"  # written by --thinker-only
        thinker_metrics: dict = json.loads(recorded.read_text()) if recorded.is_file() else {}
        thinker_metrics["given"] = str(given)
    else:
        thinker_metrics = train_thinker(
            [(p.user, p.reply) for p in pairs],
            thinker_dir,
            steps=args.thinker_steps,
            seed=args.seed,
            progress=True,
            held_out=[(p.user, p.reply) for p in held_out],
        )
    if args.thinker_only:
        (thinker_dir / "recipe_metrics.json").write_text(
            json.dumps(thinker_metrics, indent=2, default=float) + "\n"
        )
        args.out.mkdir(parents=True, exist_ok=True)
        if (args.out / THINKER).exists():
            shutil.rmtree(args.out / THINKER)
        thinker_dir.rename(args.out / THINKER)
        shutil.rmtree(work)
    return thinker_dir, thinker_metrics


def build_segments(
    clips, idles, thinker: Thinker, frame_codec, audio_codec, cfg: ActorConfig, rng
) -> list[Segment]:
    """Encode every clip into a ``Segment`` (see ``data``)."""
    f = cfg.chunk_frames
    chunk_s = f / FPS
    pad = cfg.text_pad_id  # the Actor's own PAD (a generic LM's tokenizer may have none)
    segments = []
    with torch.no_grad():
        for (pair, identity, clip), idle in zip(tqdm(clips, desc="encode", leave=False), idles, strict=True):
            frames = torch.cat([idle.frames, clip.frames])
            audio = torch.cat([idle.audio, clip.audio])
            mouth = torch.cat([idle.mouth_xy, clip.mouth_xy]) * (cfg.latent_size / SIZE)  # pixels -> cells
            n = frames.shape[0]
            whole = -(-n // f) * f
            if whole > n:  # pad to whole chunks with the last frame and silence
                frames = torch.cat([frames, frames[-1:].expand(whole - n, -1, -1, -1)])
                audio = torch.cat([audio, audio.new_zeros((whole - n) * 640)])
                mouth = torch.cat([mouth, mouth[-1:].expand(whole - n, -1)])
            latents = torch.cat([frame_codec.encode(x) for x in frames.split(64)]).half()
            codes = audio_codec.encode(audio[None])[0]
            assert codes.shape[0] == whole * STEPS_PER_FRAME, (codes.shape, whole)
            offset = idle.frames.shape[0] / FPS
            hidden, tokens = thinker.reply_states(pair.user, pair.reply)
            ids = thinker.tokenizer.convert_tokens_to_ids([w.word for w in clip.words])
            onsets = [(offset + w.start, int(i)) for w, i in zip(clip.words, ids, strict=True)]
            text = word_chunks(onsets, whole // f, chunk_s, cfg.text_slots, pad)
            visible = idle.frames.shape[0] // f  # the turn ended where the clip starts
            segments.append(
                Segment(
                    portrait=frame_codec.encode(portrait(identity, SIZE)[None])[0].half(),
                    latents=latents,
                    codes=codes,
                    text=text,
                    thinker=hidden.float(),
                    visible_chunk=visible,
                    mouth=mouth,
                )
            )
    return segments


def train_actor(actor: Actor, segments: list[Segment], silence: torch.Tensor, args, device) -> dict:
    usable = [s for s in segments if s.chunks >= args.window]
    if not usable:
        raise ValueError(f"no segment has {args.window} chunks; lower --window")
    opt = torch.optim.AdamW(actor.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=max(1, args.steps), pct_start=0.05
    )
    rng = random.Random(args.seed + 7)
    gen = torch.Generator().manual_seed(args.seed + 7)
    history: list[dict[str, float]] = []
    bar = tqdm(range(args.steps), desc="actor", leave=False)
    t0 = time.perf_counter()
    for _ in bar:
        batch = sample_batch(usable, args.batch, args.window, actor.cfg.chunk_frames, silence, rng)
        batch = batch.to(device) if hasattr(batch, "to") else batch
        losses = actor.diffusion_forcing_loss(
            batch,
            gen,
            mouth_weight=args.mouth_weight,
            mouth_radius=args.mouth_radius,
            token_levels=args.token_levels,
        )
        opt.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(actor.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append({k: float(v.detach()) for k, v in losses.items() if v.numel() == 1})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    tail = history[-100:]
    return {
        "steps": args.steps,
        "seconds_per_step": (time.perf_counter() - t0) / max(1, args.steps),
        **{f"final_{k}": sum(h[k] for h in tail) / len(tail) for k in (tail[0] if tail else {})},
    }
