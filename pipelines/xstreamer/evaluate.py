"""Measure a talking character the way the card and the bench report it, through the generator's own streaming path.

- **Lip sync**: mouth opening read from the output frames by the face probe (``streamrt.face_probe``) against the
  output audio's energy envelope: Pearson correlation at the best lag, and that lag in ms (> 0: video lags audio).
- **Identity**: the probe's colour/texture distance of the output face to the portrait, per frame; drift = the mean
  over the last part of a call minus the mean over its first part.
- **Real time**: seconds of audio+video produced per wall second (Actor, Thinker and both decoders; 1 stream).
- **Latency**: wall time from the end of a user turn to the first voiced audio of the reply (compute only), and the
  same on the media clock (how far into the stream the reply's first voiced chunk lies after the turn).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.xstreamer.model import FPS, SAMPLE_RATE
from streamrt.face_probe import FaceProbe, face_detail, identity_distance, lip_sync


@dataclass
class CallRecord:
    frames: torch.Tensor  # (F, 3, H, W)
    audio: torch.Tensor  # (F * 640,)
    portrait: torch.Tensor
    wall_s: float
    first_audio_s: list[float]
    first_audio_chunks: list[int]
    words_said: int
    words_replied: int


def run_call(gen, turns: list[str], *, pause_chunks: int = 2, max_chunks_per_turn: int = 60) -> CallRecord:
    """Drive a prepared ``XStreamerGenerator`` through ``turns`` (every chunk kept)."""
    frames, audio = [], []
    started = time.perf_counter()
    call = gen.call
    for _ in range(pause_chunks):
        c = gen.next_chunk()
        frames.append(c.frames)
        audio.append(c.audio)
    said = replied = 0
    for turn in turns:
        call.say(turn)
        n = 0
        while call.speaking and n < max_chunks_per_turn:
            c = gen.next_chunk()
            frames.append(c.frames)
            audio.append(c.audio)
            n += 1
        for _ in range(pause_chunks):
            c = gen.next_chunk()
            frames.append(c.frames)
            audio.append(c.audio)
    wall = time.perf_counter() - started
    for r in call.finished:  # words of the reply the Actor said it spoke (as a multiset: order not checked)
        said += sum((Counter(r.emitted) & Counter(r.words)).values())
        replied += len(r.words)
    first_s = [r.first_audio_s for r in call.finished if r.first_audio_s is not None]
    first_c = [r.first_audio_chunk - r.first_chunk for r in call.finished if r.first_audio_chunk is not None]
    return CallRecord(
        torch.cat(frames), torch.cat(audio), gen.portrait(), wall, first_s, first_c, said, replied
    )


def call_metrics(rec: CallRecord, probe: FaceProbe) -> dict[str, float]:
    m = probe.measure(rec.frames)
    sync = lip_sync(m["mouth_open"], rec.audio, SAMPLE_RATE, FPS)
    # chance level of the best-lag correlation: the same mouth against the call's audio rolled by half its length
    rolled = lip_sync(m["mouth_open"], rec.audio.roll(rec.audio.shape[0] // 2), SAMPLE_RATE, FPS)
    ident = identity_distance(rec.frames, rec.portrait)
    detail = face_detail(rec.frames, rec.portrait)
    n = ident.shape[0]
    part = max(1, n // 5)
    media_s = rec.frames.shape[0] / FPS
    chunk_s = 8 / FPS
    return {
        "lip_sync_corr": sync.corr,
        "av_offset_ms": sync.offset_ms,
        "lip_sync_corr_unrelated_audio": rolled.corr,
        "identity_distance": float(ident.mean()),
        "identity_drift": float(ident[-part:].mean() - ident[:part].mean()),
        # face quality: the head's fine detail against the portrait's (1 = as crisp; a dissolving face falls)
        "face_detail": float(detail.mean()),
        "face_detail_drift": float(detail[-part:].mean() - detail[:part].mean()),
        "av_speed": media_s / rec.wall_s,
        "media_s": media_s,
        "first_audio_ms": 1000 * sum(rec.first_audio_s) / len(rec.first_audio_s)
        if rec.first_audio_s
        else float("nan"),
        "first_audio_media_ms": 1000 * chunk_s * sum(rec.first_audio_chunks) / len(rec.first_audio_chunks)
        if rec.first_audio_chunks
        else float("nan"),
        "words_said_fraction": rec.words_said / rec.words_replied if rec.words_replied else float("nan"),
    }


def evaluate_model(folder: Path | str, turns: list[str], *, seed: int = 0, portraits: int = 2) -> dict:
    """Card metrics on held-out portraits (the model's portraits/) and held-out turns."""
    from pipelines.xstreamer.pipeline import XStreamerGenerator

    probe = FaceProbe.load()
    gen = XStreamerGenerator.load(model=str(folder))
    rows = []
    paths = gen.model.portraits()[:portraits]
    for i, path in enumerate(paths):
        gen.prepare({"reference": str(path), "seed": seed})
        rec = run_call(gen, turns)
        row = call_metrics(rec, probe)
        if (
            len(paths) > 1
        ):  # scale of the identity distance: the same frames against another character's portrait
            other = gen.model.portraits()[(i + 1) % len(paths)]
            gen.prepare({"reference": str(other), "seed": seed})
            row["identity_distance_other_character"] = float(
                identity_distance(rec.frames, gen.portrait()).mean()
            )
        rows.append(row)
    keys = rows[0].keys()
    out = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    out["portraits_evaluated"] = len(rows)
    out["turns"] = len(turns)
    return out


def long_call(
    gen, turns: list[str], minutes: float, probe: FaceProbe, *, gap_chunks: int = 3
) -> dict[str, float]:
    """A call of ``minutes`` of media: the turns over and over, a short pause after each reply. Only per-frame
    measurements are kept (mouth opening, identity distance, audio), so an hour fits in memory. Reports identity in
    the first and the last minute and its drift, lip sync over the whole call, and the real-time factor."""
    call = gen.call
    portrait = gen.portrait()
    chunks_total = round(minutes * 60 * FPS / call.chunk_frames)
    mouth, ident, detail, audio = [], [], [], []
    started = time.perf_counter()
    turn, idle = 0, 0
    with torch.no_grad():
        for _ in range(chunks_total):
            if not call.speaking:
                idle += 1
                if idle > gap_chunks:
                    call.say(turns[turn % len(turns)])
                    turn += 1
                    idle = 0
            c = gen.next_chunk()
            mouth.append(probe.measure(c.frames)["mouth_open"])
            ident.append(identity_distance(c.frames, portrait))
            detail.append(face_detail(c.frames, portrait))
            audio.append(c.audio)
    wall = time.perf_counter() - started
    mouth_t, ident_t, audio_t, detail_t = (
        torch.cat(mouth),
        torch.cat(ident),
        torch.cat(audio),
        torch.cat(detail),
    )
    minute = round(60 * FPS)
    sync = lip_sync(mouth_t, audio_t, SAMPLE_RATE, FPS)
    first, last = ident_t[:minute].mean(), ident_t[-minute:].mean()
    return {
        "minutes": minutes,
        "turns": turn,
        "identity_first_minute": float(first),
        "identity_last_minute": float(last),
        "identity_drift": float(last - first),
        "face_detail_first_minute": float(detail_t[:minute].mean()),
        "face_detail_last_minute": float(detail_t[-minute:].mean()),
        "lip_sync_corr": sync.corr,
        "av_offset_ms": sync.offset_ms,
        "av_speed": mouth_t.shape[0] / FPS / wall,
        "cache_bytes": call.stream.cache_nbytes(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.xstreamer.evaluate [--model DIR] --minutes 10``: the long-call check of the card."""
    import argparse
    import json

    from pipelines.xstreamer.pipeline import XStreamerGenerator
    from streamrt.dialogue import dialogue_pairs

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = XStreamerGenerator.load(model=args.model)
    portraits = gen.model.portraits()
    gen.prepare({"seed": args.seed, "portrait": len(portraits) - 1 if portraits else 0})
    turns = [t.user for t in dialogue_pairs(20, seed=args.seed + 1, split="held_out")]
    print(json.dumps(long_call(gen, turns, args.minutes, FaceProbe.load())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
