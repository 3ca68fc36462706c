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
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.xstreamer.model import FPS, SAMPLE_RATE
from streamrt.face_probe import FaceProbe, identity_distance, lip_sync


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
    for r in call.finished:
        said += min(r.spoken, len(r.words))
        replied += len(r.words)
    first_s = [r.first_audio_s for r in call.finished if r.first_audio_s is not None]
    first_c = [r.first_audio_chunk - r.first_chunk for r in call.finished if r.first_audio_chunk is not None]
    return CallRecord(
        torch.cat(frames), torch.cat(audio), gen.portrait(), wall, first_s, first_c, said, replied
    )


def call_metrics(rec: CallRecord, probe: FaceProbe) -> dict[str, float]:
    m = probe.measure(rec.frames)
    sync = lip_sync(m["mouth_open"], rec.audio, SAMPLE_RATE, FPS)
    ident = identity_distance(rec.frames, rec.portrait)
    n = ident.shape[0]
    part = max(1, n // 5)
    media_s = rec.frames.shape[0] / FPS
    chunk_s = 8 / FPS
    return {
        "lip_sync_corr": sync.corr,
        "av_offset_ms": sync.offset_ms,
        "identity_distance": float(ident.mean()),
        "identity_drift": float(ident[-part:].mean() - ident[:part].mean()),
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
    for path in gen.model.portraits()[:portraits]:
        gen.prepare({"reference": str(path), "seed": seed})
        rows.append(call_metrics(run_call(gen, turns), probe))
    keys = rows[0].keys()
    out = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    out["portraits_evaluated"] = len(rows)
    out["turns"] = len(turns)
    return out
