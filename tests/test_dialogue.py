"""The synthetic dialogue corpus and the --script reader (streamrt.dialogue)."""

from __future__ import annotations

import pytest

from streamrt.dialogue import (
    NUMBER_WORDS,
    TOPICS,
    DialogueTurn,
    dialogue_pairs,
    read_script,
    user_templates,
    vocabulary,
    words,
)
from streamrt.errors import InputError, ParamError

TOPIC_NAMES = {
    "greetings",
    "names",
    "colours",
    "weather",
    "numbers",
    "feelings",
    "time_of_day",
    "food",
    "animals",
    "goodbye",
    "character",
}


def test_deterministic_and_seed_dependent():
    a, b = dialogue_pairs(50, seed=3), dialogue_pairs(50, seed=3)
    assert a == b and all(isinstance(t, DialogueTurn) for t in a)
    assert dialogue_pairs(50, seed=4) != a
    assert dialogue_pairs(50, seed=3, split="held_out") != a


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_replies_are_short_in_vocabulary_and_cover_every_topic(split):
    vocab = set(vocabulary())
    assert 300 <= len(vocab) <= 600
    pairs = dialogue_pairs(1500, seed=0, split=split)
    assert {p.topic for p in pairs} == set(TOPICS) == TOPIC_NAMES
    for p in pairs:
        assert p.user == p.user.lower() and p.reply == p.reply.lower()
        assert 3 <= len(words(p.reply)) <= 14, p.reply
        assert set(words(p.user)) | set(words(p.reply)) <= vocab, p
        assert "{" not in p.user + p.reply  # every slot was filled


def test_held_out_phrasings_are_disjoint_from_training():
    assert not user_templates("train") & user_templates("held_out")
    train = {p.user for p in dialogue_pairs(4000, seed=1, split="train")}
    held = {p.user for p in dialogue_pairs(1000, seed=1, split="held_out")}
    assert not train & held
    # same intents: the held-out replies are ones the training split also produces (slot values aside)
    train_replies = {p.reply for p in dialogue_pairs(6000, seed=2, split="train")}
    held_replies = [p.reply for p in dialogue_pairs(300, seed=2, split="held_out")]
    assert sum(r in train_replies for r in held_replies) > 0.8 * len(held_replies)


def test_slots_agree_between_turn_and_reply():
    checked = 0
    for p in dialogue_pairs(2000, seed=5):
        if p.user.startswith("what is ") and " plus " in p.user:  # the sum is computed, not templated
            a, b = p.user.removeprefix("what is ").rstrip("?").split(" plus ")
            assert words(p.reply)[-1] == NUMBER_WORDS[NUMBER_WORDS.index(a) + NUMBER_WORDS.index(b)]
            checked += 1
        if p.user.startswith("count to "):  # counting ends at the asked number
            n = NUMBER_WORDS.index(p.user.split()[-1])
            assert words(p.reply)[-n:] == list(NUMBER_WORDS[1 : n + 1])
            checked += 1
        if p.user.startswith("my name is "):
            assert p.user.split()[-1] in words(p.reply)
            checked += 1
    assert checked > 30


def test_bad_arguments():
    with pytest.raises(ParamError, match="split"):
        dialogue_pairs(3, split="test")  # type: ignore[arg-type]


def test_read_script(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("# a comment\n\nUser: hello there\n  what is your name?  \nuser:   \nUSER: bye\n")
    assert read_script(f) == ["hello there", "what is your name?", "bye"]


def test_read_script_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_script(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(InputError, match="no user turns"):
        read_script(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"hello\x00\x01\x02")
    with pytest.raises(InputError, match="binary"):
        read_script(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_script(latin)
    big = tmp_path / "big.txt"
    big.write_text("hello\n" * 12000)
    with pytest.raises(InputError, match="64 KiB"):
        read_script(big)
    long = tmp_path / "long.txt"
    long.write_text("hi\n" + "a" * 301 + "\n")
    with pytest.raises(InputError, match=":2:.*300"):
        read_script(long)
