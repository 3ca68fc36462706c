"""Speech with word and phoneme timing, and the mouth track that follows it.

X-Streamer's Actor learns to move a face's mouth with its own speech, so its training clips need to know *when*
each phoneme sounds. Rather than estimating the timing after the fact (word-by-word synthesis and spreading
phonemes by class weights), we ask the synthesisers themselves, which know it exactly:

- **espeak-ng** through its C library (``libespeak-ng.so.1``, loaded with ctypes): in synchronous mode with
  ``espeakINITIALIZE_PHONEME_EVENTS`` every phoneme and every word is reported with the sample at which it starts.
  (``espeak-ng --pho`` needs an mbrola voice, which Debian's espeak-ng does not ship, and the command line prints
  no SSML marks; the library callback is the only exact source.)
- **festival** through a Scheme script: after ``SynthText`` the utterance's ``Segment`` relation holds each phone's
  end time and the word it belongs to.

A phoneme ends where the next one starts; a word spans its first to its last non-pause phoneme. Phonemes keep the
engine's own alphabet (espeak mnemonics such as ``aI``, festival's radio phones such as ``ay``); ``viseme`` knows
both. Audio is returned at 16 kHz mono. Results are cached on disk (a 16-bit wav and a JSON of the spans) under a
name that hashes every setting, so a corpus costs its synthesis once.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamrt.errors import InputError, MissingDependencyError, ParamError
from streamrt.resample import resample
from streamrt.speech import FESTIVAL_VOICES, require_engine

SAMPLE_RATE = 16_000
_PCM = 32767.0  # 16-bit full scale, for the cache and the engines' wav files
_MAX_CHARS = 2000  # one reply; longer text belongs in several calls


@dataclass(frozen=True)
class PhonemeSpan:
    phoneme: str
    start: float  # seconds from the start of the audio
    end: float


@dataclass(frozen=True)
class WordSpan:
    word: str
    start: float
    end: float
    phonemes: tuple[PhonemeSpan, ...]


@dataclass
class TimedSpeech:
    audio: torch.Tensor  # (T,) float32 in [-1, 1]
    sample_rate: int
    words: list[WordSpan]

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


@dataclass
class MouthTrack:
    open: torch.Tensor  # (F,) in [0, 1]: 0 = lips together, 1 = wide open
    round: torch.Tensor  # (F,) in [0, 1]: lip rounding / protrusion


# ---------------------------------------------------------------------------------------------------------------
# Synthesis with timing
# ---------------------------------------------------------------------------------------------------------------


def speak_timed(
    text: str,
    *,
    voice: str = "en-us+m3",
    engine: str = "espeak",
    speed: int = 160,
    pitch: int = 50,
    cache_dir: Path | None = None,
) -> TimedSpeech:
    """Synthesise ``text`` -> 16 kHz audio with exact word and phoneme spans (see the module docstring).

    ``voice``: an espeak ``language+variant`` (e.g. ``en-gb+f2``) or a festival voice from ``FESTIVAL_VOICES``.
    ``speed`` is in words per minute (espeak's unit; festival stretches durations by 160 / speed), ``pitch`` 0-99
    (espeak only).
    """
    text = " ".join(str(text).split())
    if not text:
        raise InputError("speak_timed needs some text to say; got an empty string")
    if len(text) > _MAX_CHARS:
        raise InputError(f"text is {len(text)} characters; split it into parts of at most {_MAX_CHARS}")
    if not 80 <= speed <= 450:
        raise ParamError(f"speed {speed} words per minute is out of range; use 80-450")
    if not 0 <= pitch <= 99:
        raise ParamError(f"pitch {pitch} is out of range; use 0-99")
    if engine not in ("espeak", "festival"):
        raise ParamError(f"unknown speech engine {engine!r}; use 'espeak' or 'festival'")
    if engine == "festival" and voice not in FESTIVAL_VOICES:
        raise ParamError(f"unknown festival voice {voice!r}; use one of {', '.join(FESTIVAL_VOICES)}")

    path = None
    if cache_dir is not None:
        key = hashlib.sha1(f"timed1|{engine}|{voice}|{speed}|{pitch}|{text}".encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"timed-{engine}-{key}"
        cached = _load_cached(path)
        if cached is not None:
            return cached

    if engine == "espeak":
        audio, rate, words = _espeak_timed(text, voice, speed, pitch)
    else:
        audio, rate, words = _festival_timed(text, voice, speed)
    # Rounded to 16-bit levels here, as the cache stores them, so a cached and a fresh call give equal audio.
    audio = _quantize(resample(audio[None], rate, SAMPLE_RATE)[0])
    speech = TimedSpeech(audio=audio, sample_rate=SAMPLE_RATE, words=words)
    if path is not None:
        _save_cached(path, speech)
    return speech


def _words_from_events(
    words: list[tuple[str, float]], phonemes: list[tuple[str, float, int]], total: float
) -> list[WordSpan]:
    """Word events (text, start) and phoneme events (symbol, start, word index) -> WordSpans.

    A phoneme ends at the next phoneme's start (the last at the end of the audio); pauses are dropped from words.
    """
    out = []
    for wi, (word, _) in enumerate(words):
        spans = []
        for pi, (sym, start, owner) in enumerate(phonemes):
            if owner != wi or _is_pause(sym):
                continue
            end = phonemes[pi + 1][1] if pi + 1 < len(phonemes) else total
            spans.append(PhonemeSpan(sym, round(start, 5), round(max(end, start), 5)))
        if spans:  # a word with no sound (a stray symbol) carries no timing
            out.append(WordSpan(word, spans[0].start, spans[-1].end, tuple(spans)))
    return out


# espeak-ng's C interface (speak_lib.h of 1.51). Only what the synthesis needs.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_PARAM_RATE, _PARAM_PITCH = 1, 3


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word in the text
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index at the engine's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Espeak:
    """The process's espeak-ng library handle. The library keeps global state, hence one instance and a lock."""

    lock = threading.Lock()
    _instance: _Espeak | None = None

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as exc:
            raise MissingDependencyError(
                "libespeak-ng.so.1 was not found; install it with: apt-get install espeak-ng"
            ) from exc
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS)
        if self.rate <= 0:
            raise MissingDependencyError(
                "espeak-ng failed to initialise; reinstall it: apt-get install espeak-ng"
            )
        self.samples: list[np.ndarray] = []
        self.events: list[tuple[int, int, int, int, bytes]] = []
        self._cb = _Callback(self._on_audio)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._cb)
        self.pid = os.getpid()

    @classmethod
    def get(cls) -> _Espeak:
        if cls._instance is None or cls._instance.pid != os.getpid():  # a forked worker initialises its own
            cls._instance = cls()
        return cls._instance

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if wav and n > 0:
            self.samples.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            ident = bytes(e.id.string).split(b"\0")[0] if e.type == _EV_PHONEME else b""
            self.events.append((e.type, e.text_position, e.length, e.sample, ident))
            i += 1
        return 0  # 0 = continue

    def synth(self, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, list]:
        lang, _, variant = voice.partition("+")
        # Some languages (en-gb) are served by a voice file of another name (en): the command line falls back to a
        # search by language; the library call does not, so try the base language with the same variant.
        fallback = lang.split("-")[0] + (f"+{variant}" if variant else "")
        if (
            self.lib.espeak_SetVoiceByName(voice.encode()) != 0
            and self.lib.espeak_SetVoiceByName(fallback.encode()) != 0
        ):
            raise ParamError(f"espeak-ng has no voice {voice!r}; use language+variant, e.g. en-us+m3")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(speed), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self.samples, self.events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise InputError(f"espeak-ng could not synthesise the text (error {err}); simplify the text")
        audio = np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)
        return audio, self.events


def _espeak_timed(text: str, voice: str, speed: int, pitch: int) -> tuple[torch.Tensor, int, list[WordSpan]]:
    require_engine("espeak")
    with _Espeak.lock:
        eng = _Espeak.get()
        pcm, events = eng.synth(text, voice, speed, pitch)
        rate = eng.rate
    total = len(pcm) / rate
    # Word events carry a character position, which after a sentence break may point at the space before the
    # word; so each event is matched to the text token at or after its position (a token such as "12" may be
    # spoken as several words: they merge into one span).
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    words: list[tuple[str, float]] = []
    phonemes: list[tuple[str, float, int]] = []
    token_of_word: list[int] = []
    for kind, pos, _length, sample, ident in events:
        if kind == _EV_WORD:
            at = max(pos - 1, 0)
            ti = next((i for i, (a, b, _) in enumerate(tokens) if b > at), len(tokens) - 1)
            if token_of_word and token_of_word[-1] == ti:
                continue  # another spoken word of the same token
            token_of_word.append(ti)
            words.append((_clean_word(tokens[ti][2]), sample / rate))
        elif kind == _EV_PHONEME:
            phonemes.append((ident.decode("utf-8", "replace"), sample / rate, len(words) - 1))
    audio = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    return audio, rate, _words_from_events(words, phonemes, total)


def festival_voices() -> list[str]:
    """The festival voices of ``FESTIVAL_VOICES`` that are installed here (none when festival is missing)."""
    roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
    found = {p.name for r in roots if r.is_dir() for p in r.glob("*/*") if p.is_dir()}
    return [v for v in FESTIVAL_VOICES if v in found] if shutil.which("festival") else []


def _clean_word(token: str) -> str:
    """A text token as a word: lower case, surrounding punctuation removed (inner apostrophes kept)."""
    return token.lower().strip(".,;:!?\"()[]{}'`-") or token.lower()


def _festival_timed(text: str, voice: str, speed: int) -> tuple[torch.Tensor, int, list[WordSpan]]:
    require_engine("festival")
    safe = text.replace("\\", " ").replace('"', " ")  # the text goes inside a Scheme string literal
    with tempfile.TemporaryDirectory(prefix="streamrt-festival-") as tmp:
        wav, script = Path(tmp) / "out.wav", Path(tmp) / "say.scm"
        script.write_text(
            f"(voice_{voice})\n"
            f"(Parameter.set 'Duration_Stretch {160.0 / speed:.4f})\n"
            f'(set! utt (SynthText "{safe}"))\n'
            f'(utt.save.wave utt "{wav}" \'riff)\n'
            # each segment with its end time and its text token (name and id: repeated words stay apart)
            '(set! tok "R:SylStructure.parent.parent.R:Token.parent")\n'
            '(mapcar (lambda (s) (format t "S\\t%s\\t%f\\t%s\\t%s\\n" (item.name s) (item.feat s "end")'
            ' (item.feat s (string-append tok ".name")) (item.feat s (string-append tok ".id"))))'
            " (utt.relation.items utt 'Segment))\n"
        )
        run = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=120)
        if f"unbound variable : voice_{voice}" in run.stderr:
            raise MissingDependencyError(
                f"festival voice {voice} is not installed; install it with: apt-get install festvox-us-slt-hts"
            )
        if run.returncode != 0 or not wav.exists():
            raise InputError(f"festival could not synthesise the text: {run.stderr.strip()[-300:]}")
        pcm, rate = _read_wav(wav)
    # Segments arrive in order with their end times; consecutive segments of one word form that word.
    words: list[tuple[str, float]] = []
    phonemes: list[tuple[str, float, int]] = []
    start, last_word = 0.0, None
    for line in run.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] != "S":
            continue
        sym, end, word, token_id = parts[1], float(parts[2]), parts[3], parts[4]
        if _is_pause(sym) or token_id == "0":
            last_word = None
        elif token_id != last_word:
            words.append((_clean_word(word), start))
            last_word = token_id
        phonemes.append((sym, start, len(words) - 1 if last_word is not None else -1))
        start = end
    return pcm, rate, _words_from_events(words, phonemes, len(pcm) / rate)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1.0, 1.0) * _PCM).round() / _PCM


def _read_wav(path: Path) -> tuple[torch.Tensor, int]:
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise InputError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
    x = torch.from_numpy(np.frombuffer(raw, np.int16).astype(np.float32) / _PCM)
    return x.view(-1, channels).mean(1), rate


def _save_cached(path: Path, speech: TimedSpeech) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (speech.audio.clamp(-1, 1) * _PCM).round().to(torch.int16).numpy()
    tmp_wav, tmp_json = path.with_suffix(".part.wav"), path.with_suffix(".part.json")
    with wave.open(str(tmp_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes(pcm.tobytes())
    spans = [
        {
            "word": w.word,
            "start": w.start,
            "end": w.end,
            "phonemes": [[p.phoneme, p.start, p.end] for p in w.phonemes],
        }
        for w in speech.words
    ]
    tmp_json.write_text(json.dumps({"version": 1, "words": spans}))
    tmp_wav.replace(path.with_suffix(".wav"))  # the json is written last: its presence marks a complete entry
    tmp_json.replace(path.with_suffix(".json"))


def _load_cached(path: Path) -> TimedSpeech | None:
    meta, wav = path.with_suffix(".json"), path.with_suffix(".wav")
    if not (meta.exists() and wav.exists()):
        return None
    try:
        spans = json.loads(meta.read_text())["words"]
        audio, rate = _read_wav(wav)
    except (OSError, ValueError, KeyError, EOFError, wave.Error):
        return None  # a damaged entry is re-synthesised
    words = [
        WordSpan(s["word"], s["start"], s["end"], tuple(PhonemeSpan(p, a, b) for p, a, b in s["phonemes"]))
        for s in spans
    ]
    return TimedSpeech(audio=audio, sample_rate=rate, words=words)


# ---------------------------------------------------------------------------------------------------------------
# Visemes and the mouth track
# ---------------------------------------------------------------------------------------------------------------

# Viseme classes -> (target opening, target rounding). Both alphabets: espeak mnemonics and festival radio phones.
_VISEMES: dict[str, tuple[float, float]] = {
    "closed": (0.0, 0.0),  # p b m: the lips meet
    "labiodental": (0.12, 0.0),  # f v: lower lip on the teeth
    "open": (1.0, 0.0),  # a-like vowels: jaw drops
    "mid": (0.6, 0.0),  # other vowels
    "round": (0.45, 1.0),  # o u w: lips pushed forward, moderate opening
    "postalveolar": (0.3, 0.5),  # sh zh ch j: lips slightly protruded
    "consonant": (0.3, 0.0),  # tongue consonants: the jaw stays near half-closed
    "silence": (0.0, 0.0),
}
_CLASS_OF: dict[str, str] = {}
for _cls, _syms in {
    "closed": "p b m em",
    "labiodental": "f v",
    "open": "a a# aI aU A: A@ A V 0 E & e@ aa ae ah ay aw eh",
    "mid": "I I# I2 i i: i@ e eI @ @2 @5 3 3: @L @r 3r ih iy ey ax er axr",
    "round": "u: U oU O: O o o@ OI U@ u w uw uh ow ao oy",
    "postalveolar": "S Z tS dZ sh zh ch jh",
    "silence": "_ _: _! _| _; pau h# brth",
}.items():
    for _s in _syms.split():
        _CLASS_OF[_s] = _cls


def _is_pause(symbol: str) -> bool:
    return _CLASS_OF.get(symbol) == "silence" or symbol.startswith("_")


def viseme(symbol: str) -> str:
    """The mouth-shape class of a phoneme symbol (espeak mnemonic or festival phone); stress marks are ignored."""
    s = symbol.strip("'ˈˌ,%=")
    if s in _CLASS_OF:
        return _CLASS_OF[s]
    if s.startswith("_"):
        return "silence"
    if s[:1] in "aAV0E&":  # unlisted vowel variants: classify by the vowel's first letter
        return "open"
    if s[:1] in "oOuU":
        return "round"
    if s[:1] in "iIe@3":
        return "mid"
    return "consonant"


_STEP = 0.005  # seconds: the mouth is computed at 200 Hz, then averaged per video frame


def mouth_track(speech: TimedSpeech, fps: float = 25.0, frames: int | None = None) -> MouthTrack:
    """Per-video-frame mouth opening and rounding from the phoneme spans and the sound.

    1. each phoneme sets a target (``_VISEMES``) over its span; silence targets 0;
    2. co-articulation: the targets are smoothed with a ~30 ms Gaussian, so the mouth moves towards the next shape
       before a phoneme starts; bilabials are then re-imposed as closures (the lips must actually meet);
    3. the opening is scaled by the audio's RMS envelope (normalised to the utterance), so loud vowels open wider
       and the mouth is shut wherever the audio is silent;
    4. the 200 Hz track is averaged over each frame's 1/fps interval.
    """
    if fps <= 0:
        raise ParamError(f"fps must be positive; got {fps}")
    duration = speech.audio.shape[-1] / speech.sample_rate
    if frames is None:
        frames = max(1, math.ceil(duration * fps - 1e-9))
    steps = max(1, math.ceil(frames / fps / _STEP))
    t = (torch.arange(steps, dtype=torch.float64) + 0.5) * _STEP
    open_t = torch.zeros(steps)
    round_t = torch.zeros(steps)
    closed = torch.zeros(steps, dtype=torch.bool)
    for word in speech.words:
        for ph in word.phonemes:
            cls = viseme(ph.phoneme)
            sel = (t >= ph.start) & (t < ph.end)
            o, r = _VISEMES[cls]
            open_t[sel], round_t[sel] = o, r
            if cls == "closed":
                # the closure is held for the middle of the span (release and approach are co-articulated)
                mid, half = (ph.start + ph.end) / 2, max((ph.end - ph.start) * 0.3, 0.012)
                closed |= (t >= mid - half) & (t < mid + half)

    open_s = _gauss_smooth(open_t, sigma=0.03 / _STEP)
    round_s = _gauss_smooth(round_t, sigma=0.04 / _STEP)
    open_s = open_s.masked_fill(closed, 0.0)

    env = _rms_envelope(speech.audio, speech.sample_rate, steps)
    ref = torch.quantile(env, 0.95) if env.numel() else torch.tensor(0.0)
    if ref > 1e-6:
        level = (env / ref).clamp(0, 1)
        gate = ((env / ref - 0.03) / 0.07).clamp(0, 1)  # below ~3% of the loud level: silence
        open_s = open_s * (0.4 + 0.6 * level.sqrt()) * gate
        round_s = round_s * _gauss_smooth(gate, sigma=0.04 / _STEP)
    else:
        open_s, round_s = open_s * 0, round_s * 0
    # Per frame: the mean over the frame's interval.
    idx = torch.clamp((t * fps).floor().long(), max=frames - 1)
    count = torch.zeros(frames).index_add_(0, idx, torch.ones(steps)).clamp_min(1)
    out_open = torch.zeros(frames).index_add_(0, idx, open_s) / count
    out_round = torch.zeros(frames).index_add_(0, idx, round_s) / count
    return MouthTrack(open=out_open.clamp(0, 1), round=out_round.clamp(0, 1))


def _gauss_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    y = F.conv1d(F.pad(x.view(1, 1, -1), (radius, radius), mode="replicate"), k)
    return y.view(-1)


def _rms_envelope(audio: torch.Tensor, rate: int, steps: int) -> torch.Tensor:
    """RMS over 20 ms windows centred on each 5 ms step -> (steps,)."""
    hop, win = int(round(_STEP * rate)), int(round(0.02 * rate))
    x = audio.reshape(-1).float()
    need = steps * hop
    x = F.pad(x, (win // 2, max(0, need - x.shape[0]) + win))
    frames = x.unfold(0, win, hop)[:steps]
    return frames.pow(2).mean(-1).sqrt()
