"""Offline speech for training and evaluating the audio generators' defaults.

Nothing here downloads: the speech comes from Debian's synthesisers, installed with
``apt-get install espeak-ng festival festvox-kallpc16k festvox-us-slt-hts``.

- ``espeak-ng`` (formant synthesis, 22,050 Hz): varied by language voice, speaker variant, speed and pitch.
- ``festival`` (diphone ``kal_diphone`` and HTS ``cmu_us_slt_arctic_hts``): a different synthesiser, which makes it
  useful as held-out data for a model trained on espeak-ng.

Sentences are drawn from a built-in word list with a seed, so a corpus is reproducible. Synthesised files are cached in
the output folder under names that encode every setting, so a second call with the same arguments costs nothing.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from streamrt.errors import InputError, MissingDependencyError
from streamrt.resample import resample

Engine = Literal["espeak", "festival"]

ESPEAK_LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")

_INSTALL = {
    "espeak": "apt-get install espeak-ng",
    "festival": "apt-get install festival festvox-kallpc16k festvox-us-slt-hts",
}
_BINARY = {"espeak": "espeak-ng", "festival": "text2wave"}

_SUBJECTS = (
    "the old man",
    "a young girl",
    "my neighbour",
    "the teacher",
    "our captain",
    "the small dog",
    "a tired farmer",
    "the doctor",
    "his brother",
    "the quiet student",
    "a busy waiter",
    "the singer",
    "every child",
    "the pilot",
)
_VERBS = (
    "carried",
    "painted",
    "found",
    "watched",
    "opened",
    "cleaned",
    "followed",
    "dropped",
    "borrowed",
    "fixed",
    "described",
    "remembered",
    "measured",
    "ordered",
    "repaired",
    "counted",
)
_OBJECTS = (
    "a heavy basket",
    "the blue window",
    "seven golden coins",
    "the broken chair",
    "a long letter",
    "the river boat",
    "twelve green apples",
    "the kitchen table",
    "a strange machine",
    "the morning paper",
    "her silver watch",
    "the tall ladder",
    "a bowl of soup",
    "the wooden bridge",
    "three paper lanterns",
)
_PLACES = (
    "near the station",
    "before sunrise",
    "in the garden",
    "after the storm",
    "under the bridge",
    "at the market",
    "during the concert",
    "behind the school",
    "on a cold evening",
    "beside the lake",
    "in the empty hall",
)
_QUESTIONS = ("why did", "where did", "when did", "how often did")


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct-looking English sentences (statements and questions), reproducible from ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s, v, o, p = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_PLACES)
        if rng.random() < 0.2:
            base = {"carried": "carry", "painted": "paint", "found": "find"}.get(v, v.removesuffix("ed"))
            out.append(f"{rng.choice(_QUESTIONS).capitalize()} {s} {base} {o} {p}?")
        else:
            out.append(f"{s.capitalize()} {v} {o} {p}.")
    return out


def available(engine: Engine) -> bool:
    return shutil.which(_BINARY[engine]) is not None


def require_engine(engine: Engine) -> None:
    if engine not in _BINARY:
        raise InputError(f"unknown speech engine {engine!r}; use one of {', '.join(_BINARY)}")
    if not available(engine):
        raise MissingDependencyError(
            f"{_BINARY[engine]} is not installed; install it with: {_INSTALL[engine]}"
        )


def synthesize(
    out_dir: str | Path,
    n: int,
    *,
    engine: Engine = "espeak",
    seed: int = 0,
    voices: Sequence[str] | None = None,
) -> list[Path]:
    """Synthesise ``n`` utterances into ``out_dir`` (cached); returns the wav paths in order.

    espeak voices are ``language+variant`` strings (default: every combination of ``ESPEAK_LANGUAGES`` and
    ``ESPEAK_VARIANTS``); festival voices are names from ``FESTIVAL_VOICES``. Speed and pitch vary per utterance.
    """
    require_engine(engine)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 7919 + 1)
    if voices is None:
        voices = (
            [f"{lang}+{var}" for lang in ESPEAK_LANGUAGES for var in ESPEAK_VARIANTS]
            if engine == "espeak"
            else list(FESTIVAL_VOICES)
        )
    paths = []
    for text in sentences(n, seed):
        voice = rng.choice(list(voices))
        speed, pitch = rng.randint(130, 200), rng.randint(25, 75)
        key = hashlib.sha1(f"{engine}|{voice}|{speed}|{pitch}|{text}".encode()).hexdigest()[:16]
        path = out / f"{engine}-{key}.wav"
        if not path.exists():
            _run_engine(engine, voice, speed, pitch, text, path)
        paths.append(path)
    return paths


def _run_engine(engine: Engine, voice: str, speed: int, pitch: int, text: str, path: Path) -> None:
    tmp = path.with_suffix(".part.wav")
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp), text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    else:
        text_file = path.with_suffix(".txt")
        text_file.write_text(text)
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-o", str(tmp), str(text_file)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        finally:
            text_file.unlink(missing_ok=True)
    if not tmp.is_file():
        # text2wave exits 0 and writes nothing when the voice is not installed
        from streamrt.errors import MissingDependencyError

        raise MissingDependencyError(
            f"{engine} wrote no audio for voice {voice!r}; install the voice ({_INSTALL[engine]}) or pick another"
        )
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written file in the cache


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Decode a file's audio (anything PyAV reads) -> (float32 (C, S), rate), resampled to ``sample_rate`` if given."""
    from transport.files import open_input

    with open_input(path, need_video=False) as reader:
        if reader.info.audio is None:
            raise InputError(f"{path} has no audio stream")
        rate = reader.info.audio.sample_rate
        chunks = [f.data for f in reader.frames(video=False)]
    if not chunks:
        raise InputError(f"{path}: the audio stream is empty")
    x = torch.cat(chunks, dim=-1)
    if sample_rate is not None and sample_rate != rate:
        x, rate = resample(x, rate, sample_rate), sample_rate
    return x, rate


def corpus(
    out_dir: str | Path,
    n: int,
    *,
    engine: Engine = "espeak",
    sample_rate: int = 16_000,
    seed: int = 0,
    voices: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """``n`` synthesised utterances as mono float tensors (1, S) at ``sample_rate``."""
    return [
        load_audio(p, sample_rate)[0].mean(0, keepdim=True)
        for p in synthesize(out_dir, n, engine=engine, seed=seed, voices=voices)
    ]
