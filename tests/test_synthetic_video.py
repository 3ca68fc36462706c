"""The synthetic captioned video: vocabulary, phrasings (held-out ones really unseen), motion, determinism, and the
measurement the cards' prompt-following metrics rely on."""

from __future__ import annotations

import pytest
import torch

from streamrt.synthetic_video import (
    COLOURS,
    HELD_OUT_TEMPLATES,
    MOTIONS,
    SHAPES,
    TRAIN_TEMPLATES,
    all_captions,
    centre,
    make_dataset,
    measure,
    render_clip,
    sample_spec,
)
from streamrt.video.text import words


def test_vocabulary_of_the_issue():
    assert set(COLOURS) >= {"red", "green", "blue", "yellow", "white"}
    assert set(SHAPES) >= {"circle", "square", "triangle"}
    assert set(MOTIONS) >= {"left", "right", "up", "down", "bouncing"}


def test_held_out_phrasings_use_unseen_words_and_orders():
    train_words = {w for c in all_captions() for w in words(c)}
    held_words = {w for c in all_captions(held_out=True) for w in words(c)}
    vocab = set(COLOURS) | set(SHAPES) | set(MOTIONS) | {"plain", "stripes", "checks", "dots"}
    assert held_words - train_words, "held-out phrasings bring words never seen in training"
    assert vocab <= train_words and vocab <= held_words
    assert not set(TRAIN_TEMPLATES) & set(HELD_OUT_TEMPLATES)
    train_caps = set(all_captions())
    assert not train_caps & set(all_captions(held_out=True))


def test_dataset_is_deterministic_and_captioned():
    a = make_dataset(4, 5, 32, seed=3)
    b = make_dataset(4, 5, 32, seed=3)
    assert torch.equal(a.clips, b.clips) and a.captions == b.captions
    assert a.clips.shape == (4, 5, 32, 32, 3) and a.clips.dtype == torch.uint8
    for cap, spec in zip(a.captions, a.specs, strict=True):
        assert spec.colour in cap and spec.shape in cap and spec.motion in cap
    assert not torch.equal(a.clips, make_dataset(4, 5, 32, seed=4).clips)


@pytest.mark.parametrize("motion", MOTIONS)
def test_motion_is_readable_back(motion):
    gen = torch.Generator().manual_seed(1)
    for colour in COLOURS:
        spec = sample_spec(gen, colour=colour, motion=motion)
        m = measure(render_clip(spec, 12, 48))
        assert m.colour == colour and m.motion == motion, (spec, m)


def test_linear_motion_wraps_so_streams_are_unbounded():
    spec = sample_spec(torch.Generator().manual_seed(0), motion="right")
    xs = [centre(spec, t)[0] for t in range(200)]
    assert all(0 <= x < 1 for x in xs)
    with pytest.raises(ValueError, match="unknown colour"):
        sample_spec(torch.Generator(), colour="purple")


def test_measure_sees_static_noise_as_nothing_in_particular():
    frames = torch.full((8, 32, 32, 3), 70, dtype=torch.uint8)
    assert measure(frames).motion == "static" and measure(frames).coverage == 0.0
