"""Word/phoneme-timed speech and the mouth track (streamrt.speech_timing)."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from streamrt.errors import InputError, ParamError
from streamrt.speech_timing import (
    SAMPLE_RATE,
    TimedSpeech,
    WordSpan,
    festival_voices,
    mouth_track,
    speak_timed,
    viseme,
)

torch.set_num_threads(1)
TEXT = "bob, my mum made a map of papa's boat."


def _check_spans(speech: TimedSpeech, text: str) -> None:
    assert speech.sample_rate == SAMPLE_RATE and speech.audio.dim() == 1
    assert speech.audio.abs().max() > 0.05  # real sound, not silence
    dur = speech.audio.shape[0] / SAMPLE_RATE
    last = 0.0
    for w in speech.words:
        assert 0.0 <= w.start < w.end <= dur + 1e-3
        assert w.start >= last - 1e-6  # words follow one another
        last = w.end
        assert w.phonemes and w.phonemes[0].start == w.start and w.phonemes[-1].end == w.end
        for a, b in pairwise(w.phonemes):
            assert a.start <= a.end <= b.start + 1e-6
    spoken = [w.word for w in speech.words]
    assert spoken == ["bob", "my", "mum", "made", "a", "map", "of", "papa's", "boat"], spoken


@pytest.mark.parametrize("voice", ["en-us+m3", "en-gb+f2", "en-gb-scotland+m5"])
def test_espeak_word_spans_are_monotone_and_inside_the_audio(voice):
    _check_spans(speak_timed(TEXT, voice=voice), TEXT)


@pytest.mark.skipif(
    not festival_voices(), reason="festival is not installed (apt-get install festival festvox-kallpc16k)"
)
def test_festival_word_spans():
    _check_spans(speak_timed(TEXT, engine="festival", voice=festival_voices()[0]), TEXT)


def test_speed_changes_timing_and_sentence_breaks_keep_words():
    slow = speak_timed("hello there. what colour do you like?", speed=120)
    fast = speak_timed("hello there. what colour do you like?", speed=240)
    assert [w.word for w in slow.words] == ["hello", "there", "what", "colour", "do", "you", "like"]
    assert slow.words[-1].end > 1.4 * fast.words[-1].end


def test_cache_round_trip(tmp_path):
    a = speak_timed("the small dog found seven coins.", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    b = speak_timed("the small dog found seven coins.", cache_dir=tmp_path)
    assert b.words == a.words
    assert torch.equal(a.audio, b.audio)  # fresh audio is rounded to the 16-bit levels the cache stores


def test_errors():
    with pytest.raises(InputError, match="empty"):
        speak_timed("   ")
    with pytest.raises(ParamError, match="voice"):
        speak_timed("hello", voice="xx-nowhere+m3")
    with pytest.raises(ParamError, match="speed"):
        speak_timed("hello", speed=10)


def test_viseme_classes_in_both_alphabets():
    assert {viseme(s) for s in ("p", "b", "m")} == {"closed"}
    assert viseme("aI") == viseme("ay") == viseme("A:") == "open"
    assert viseme("u:") == viseme("uw") == viseme("oU") == viseme("w") == "round"
    assert viseme("_:") == viseme("pau") == "silence"
    assert viseme("t") == "consonant"


def _padded(speech: TimedSpeech, seconds: float) -> TimedSpeech:
    """The speech placed after ``seconds`` of silence (and followed by as much)."""
    pad = int(seconds * SAMPLE_RATE)
    audio = torch.cat([torch.zeros(pad), speech.audio, torch.zeros(pad)])
    words = [
        WordSpan(
            w.word,
            w.start + seconds,
            w.end + seconds,
            tuple(type(p)(p.phoneme, p.start + seconds, p.end + seconds) for p in w.phonemes),
        )
        for w in speech.words
    ]
    return TimedSpeech(audio, SAMPLE_RATE, words)


def test_mouth_is_shut_in_silence_opens_on_vowels_and_closes_on_bilabials():
    speech = _padded(speak_timed(TEXT), 0.6)
    mouth = mouth_track(speech)
    frames = round(speech.audio.shape[0] / SAMPLE_RATE * 25)
    assert mouth.open.shape == mouth.round.shape == (frames,)
    assert 0 <= mouth.open.min() and mouth.open.max() <= 1
    assert mouth.open[:12].max() < 0.02 and mouth.open[-12:].max() < 0.02  # 0.5 s of silence each side
    at = lambda t: float(mouth.open[int(t * 25)])  # noqa: E731
    opens, closes = [], []
    for w in speech.words:
        for p in w.phonemes:
            mid = (p.start + p.end) / 2
            if viseme(p.phoneme) == "open" and p.end - p.start > 0.06:
                opens.append(at(mid))
            if viseme(p.phoneme) == "closed" and p.end - p.start > 0.06:
                closes.append(at(mid))
    assert len(opens) >= 5 and len(closes) >= 4
    assert min(opens) > 0.45, opens
    assert max(closes) < 0.2, closes
    # rounding: the long "oa" of "boat" rounds the lips; the open "a" of "map" does not
    boat = next(w for w in speech.words if w.word == "boat")
    mapw = next(w for w in speech.words if w.word == "map")
    oa = next(p for p in boat.phonemes if viseme(p.phoneme) == "round")
    a = next(p for p in mapw.phonemes if viseme(p.phoneme) == "open")
    assert float(mouth.round[int((oa.start + oa.end) / 2 * 25)]) > 0.5
    assert float(mouth.round[int((a.start + a.end) / 2 * 25)]) < 0.2


def test_mouth_follows_the_sound():
    speech = speak_timed("papa saw a large car far away.")
    vowel = max(
        (p for w in speech.words for p in w.phonemes if viseme(p.phoneme) == "open"),
        key=lambda p: p.end - p.start,
    )
    muted = speech.audio.clone()
    a, b = int(vowel.start * SAMPLE_RATE), int(vowel.end * SAMPLE_RATE)
    muted[a:b] = 0  # same phonemes, but no sound during this vowel
    f = int((vowel.start + vowel.end) / 2 * 25)
    loud = mouth_track(speech).open[f]
    quiet = mouth_track(TimedSpeech(muted, SAMPLE_RATE, speech.words)).open[f]
    assert loud > 0.4 and quiet < 0.5 * loud


def test_frames_argument_pads_with_closed_mouth():
    speech = speak_timed("hello")
    mouth = mouth_track(speech, frames=100)
    assert mouth.open.shape == (100,) and mouth.open[-40:].max() == 0
