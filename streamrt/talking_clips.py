"""Talking-head clips for training and evaluating X-Streamer: a face that says a reply, with its audio and timing.

A clip joins three things made offline: a reply from the dialogue corpus (``streamrt.dialogue``), its speech with
exact word and phoneme timing (``streamrt.speech_timing``), and a procedural face (``streamrt.faces``) whose mouth
follows that speech. The face also lives like a person on a call: it blinks every 2-6 s, its head drifts slowly and
nods a little with the speech's energy, and it keeps blinking and drifting while silent, so that the Actor learns
idle motion as well as lip motion (and does not learn "mouth still => frozen face").

Audio and video share one clock: 25 fps and 16 kHz make 640 samples per frame, and a clip's audio is exactly
``frames * 640`` samples. Word spans are in seconds from the clip's first frame.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from streamrt.dialogue import dialogue_pairs
from streamrt.errors import ParamError
from streamrt.faces import FaceIdentity, FaceState, mouth_centre, render_faces, sample_identity
from streamrt.speech_timing import (
    SAMPLE_RATE,
    MouthTrack,
    PhonemeSpan,
    TimedSpeech,
    WordSpan,
    festival_voices,
    mouth_track,
    speak_timed,
)

# Speaker voices per split: held-out clips use espeak variants and accents the training clips never hear, plus
# festival (a different synthesiser altogether) where it is installed.
TRAIN_VOICES = tuple(
    f"{lang}+{v}"
    for lang in ("en-us", "en-gb", "en-gb-x-rp")
    for v in ("m1", "m2", "m3", "m4", "f1", "f2", "f3")
)
HELD_OUT_VOICES = tuple(
    f"{lang}+{v}" for lang in ("en-gb-scotland", "en-gb-x-gbclan") for v in ("m5", "m6", "m7", "f4", "f5")
)
FESTIVAL_SHARE = 0.25  # of held-out clips, when festival is available

MAX_SHIFT_PX = 3.0
MAX_TILT = 0.05
MAX_YAW = 0.12
BLINK_S = 0.15


@dataclass
class TalkingClip:
    identity: FaceIdentity
    frames: torch.Tensor  # (F, 3, S, S) float in [0, 1]
    audio: torch.Tensor  # (F * 640,) float at 16 kHz
    mouth: torch.Tensor  # (F,) the mouth opening the frames were drawn with
    words: list[WordSpan]
    text: str
    fps: float = 25.0
    mouth_xy: torch.Tensor | None = None  # (F, 2) pixel (x, y) of the mouth's middle in each frame, as drawn

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]


def _samples_per_frame(fps: float) -> int:
    spf = SAMPLE_RATE / fps
    if fps <= 0 or abs(spf - round(spf)) > 1e-9:
        raise ParamError(
            f"fps {fps} does not divide {SAMPLE_RATE} Hz into whole samples per frame; use e.g. 25"
        )
    return round(spf)


def _smooth_noise(frames: int, fps: float, rng: random.Random, amplitude: float) -> torch.Tensor:
    """A slow random wander in [-amplitude, amplitude]: a sum of a few sinusoids of 0.05-0.35 Hz, random phases."""
    t = torch.arange(frames, dtype=torch.float32) / fps
    x = torch.zeros(frames)
    for _ in range(3):
        f, ph, a = rng.uniform(0.05, 0.35), rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.0)
        x += a * torch.sin(2 * math.pi * f * t + ph)
    return amplitude * x / 2.3  # the sum of three amplitudes is at most 3; typical peaks stay near +-1


def _blinks(frames: int, fps: float, rng: random.Random) -> torch.Tensor:
    """Eyelid closure per frame: a ~150 ms close-and-open every 2-6 s (the first within 0.3-3 s)."""
    t = (torch.arange(frames, dtype=torch.float32) + 0.5) / fps
    out = torch.zeros(frames)
    start = rng.uniform(0.3, 3.0)
    end = frames / fps
    while start < end:
        dur = BLINK_S * rng.uniform(0.8, 1.25)
        u = (t - start) / dur
        # triangle: closes quickly, fully shut at the middle, then reopens; frame sampling keeps >= 1 frame shut
        out = torch.maximum(out, (1 - (2 * u - 1).abs()).clamp(0, 1))
        centre = int((start + dur / 2) * fps)
        if 0 <= centre < frames:
            out[centre] = 1.0
        start += dur + rng.uniform(2.0, 6.0)
    return out


def motion_states(
    mouth: MouthTrack, rng: random.Random, speaking: torch.Tensor, *, fps: float = 25.0
) -> list[FaceState]:
    """Per-frame face states: the mouth from ``mouth``, plus blinks, head drift and speech nods.

    ``speaking`` (F,) marks frames inside speech (bool or 0..1); nods follow the mouth's energy only there.
    Shifts stay within 3 px, tilt within 0.05 rad, whatever the random draw.
    """
    frames = mouth.open.shape[0]
    if mouth.round.shape[0] != frames or speaking.shape[0] != frames:
        raise ParamError(
            f"mouth.open, mouth.round and speaking must have one value per frame; got {frames}, "
            f"{mouth.round.shape[0]}, {speaking.shape[0]}"
        )
    blink = _blinks(frames, fps, rng)
    dx = _smooth_noise(frames, fps, rng, 2.0)
    dy = _smooth_noise(frames, fps, rng, 1.2)
    tilt = _smooth_noise(frames, fps, rng, 0.035)
    yaw = _smooth_noise(frames, fps, rng, 0.08)
    # Nods: the head dips a little with the smoothed speech energy (emphasis), ~1 px at full voice.
    energy = mouth.open.float() * speaking.float()
    k = max(1, int(0.12 * fps))
    kernel = torch.ones(1, 1, 2 * k + 1) / (2 * k + 1)
    energy = F.conv1d(F.pad(energy.view(1, 1, -1), (k, k), mode="replicate"), kernel).view(-1)
    dy = dy + rng.uniform(0.6, 1.2) * energy
    tilt = tilt + rng.uniform(-0.01, 0.01) * energy
    dx, dy = dx.clamp(-MAX_SHIFT_PX, MAX_SHIFT_PX), dy.clamp(-MAX_SHIFT_PX, MAX_SHIFT_PX)
    tilt, yaw = tilt.clamp(-MAX_TILT, MAX_TILT), yaw.clamp(-MAX_YAW, MAX_YAW)
    return [
        FaceState(
            mouth_open=float(mouth.open[i]),
            mouth_round=float(mouth.round[i]),
            blink=float(blink[i]),
            dx=float(dx[i]),
            dy=float(dy[i]),
            tilt=float(tilt[i]),
            yaw=float(yaw[i]),
        )
        for i in range(frames)
    ]


def _shift(words: list[WordSpan], offset: float) -> list[WordSpan]:
    return [
        WordSpan(
            w.word,
            w.start + offset,
            w.end + offset,
            tuple(PhonemeSpan(p.phoneme, p.start + offset, p.end + offset) for p in w.phonemes),
        )
        for w in words
    ]


def talking_clip(
    identity: FaceIdentity,
    speech: TimedSpeech,
    rng: random.Random,
    *,
    fps: float = 25.0,
    size: int = 128,
    lead_s: float = 0.3,
    tail_s: float = 0.5,
    text: str | None = None,
) -> TalkingClip:
    """``identity`` saying ``speech``, with ``lead_s`` of silence before and ``tail_s`` after (idle motion)."""
    if speech.sample_rate != SAMPLE_RATE:
        raise ParamError(f"speech must be at {SAMPLE_RATE} Hz; got {speech.sample_rate} (use speak_timed)")
    if lead_s < 0 or tail_s < 0:
        raise ParamError(f"lead_s and tail_s must be >= 0; got {lead_s}, {tail_s}")
    spf = _samples_per_frame(fps)
    lead = round(lead_s * fps)
    body = math.ceil(speech.audio.shape[-1] / spf)
    frames = lead + body + round(tail_s * fps)
    audio = torch.zeros(frames * spf)
    audio[lead * spf : lead * spf + speech.audio.shape[-1]] = speech.audio
    words = _shift(speech.words, lead / fps)
    placed = TimedSpeech(audio=audio, sample_rate=SAMPLE_RATE, words=words)
    mouth = mouth_track(placed, fps=fps, frames=frames)
    t = (torch.arange(frames, dtype=torch.float64) + 0.5) / fps
    speaking = torch.zeros(frames, dtype=torch.bool)
    for w in words:
        speaking |= (t >= w.start) & (t < w.end)
    states = motion_states(mouth, rng, speaking, fps=fps)
    video = render_faces(identity, states, size=size)
    return TalkingClip(
        identity=identity,
        frames=video,
        audio=audio,
        mouth=mouth.open,
        words=words,
        text=text if text is not None else " ".join(w.word for w in speech.words),
        fps=fps,
        mouth_xy=_mouth_positions(identity, states, size),
    )


def _mouth_positions(identity: FaceIdentity, states: list[FaceState], size: int) -> torch.Tensor:
    return torch.tensor([mouth_centre(identity, s, size) for s in states], dtype=torch.float32)


def idle_clip(
    identity: FaceIdentity, seconds: float, rng: random.Random, *, fps: float = 25.0, size: int = 128
) -> TalkingClip:
    """``seconds`` of a silent face: mouth shut, still blinking and drifting (the listening state)."""
    if seconds <= 0:
        raise ParamError(f"seconds must be positive; got {seconds}")
    spf = _samples_per_frame(fps)
    frames = max(1, round(seconds * fps))
    zeros = torch.zeros(frames)
    states = motion_states(MouthTrack(open=zeros, round=zeros), rng, zeros.bool(), fps=fps)
    return TalkingClip(
        identity=identity,
        frames=render_faces(identity, states, size=size),
        audio=torch.zeros(frames * spf),
        mouth=zeros.clone(),
        words=[],
        text="",
        fps=fps,
        mouth_xy=_mouth_positions(identity, states, size),
    )


def reply_clips(
    n: int, seed: int, split: str, *, cache_dir: Path | None = None, progress: bool = False
) -> list[TalkingClip]:
    """``n`` clips of dialogue replies (``dialogue_pairs(n, seed, split)``), each on a fresh identity of ``split``.

    Training clips use ``TRAIN_VOICES``; held-out clips ``HELD_OUT_VOICES`` and, for a quarter of them, festival
    when it is installed. Speed (140-185 wpm) and pitch (30-70) vary per clip. Deterministic in ``seed``.
    """
    if split not in ("train", "held_out"):
        raise ParamError(f"unknown split {split!r}; use 'train' or 'held_out'")
    from tqdm.auto import tqdm

    rng = random.Random(f"reply-clips|{seed}|{split}")
    fest = festival_voices() if split == "held_out" else []
    voices = TRAIN_VOICES if split == "train" else HELD_OUT_VOICES
    out = []
    for turn in tqdm(dialogue_pairs(n, seed, split), desc=f"{split} clips", disable=not progress):
        identity = sample_identity(rng, split)
        speed, pitch = rng.randint(140, 185), rng.randint(30, 70)
        if fest and rng.random() < FESTIVAL_SHARE:
            engine, voice = "festival", rng.choice(fest)
        else:
            engine, voice = "espeak", rng.choice(voices)
        speech = speak_timed(
            turn.reply, voice=voice, engine=engine, speed=speed, pitch=pitch, cache_dir=cache_dir
        )
        out.append(talking_clip(identity, speech, rng, text=turn.reply))
    return out


def seconds_per_clip(n: int = 4, seed: int = 0) -> float:
    """Wall time to make one training clip (synthesis uncached + rendering); a measurement helper."""
    t0 = time.perf_counter()
    reply_clips(n, seed, "train")
    return (time.perf_counter() - t0) / max(n, 1)
