"""Talking-head clips: speech, mouth and face motion on one clock (streamrt.talking_clips)."""

from __future__ import annotations

import random

import pytest
import torch

from streamrt.faces import FaceState, sample_identity
from streamrt.speech_timing import MouthTrack, speak_timed
from streamrt.talking_clips import (
    HELD_OUT_VOICES,
    TRAIN_VOICES,
    idle_clip,
    motion_states,
    reply_clips,
    talking_clip,
)

torch.set_num_threads(1)


def test_clip_audio_video_and_words_share_one_clock():
    speech = speak_timed("hello, my name is nova.")
    rng = random.Random(0)
    clip = talking_clip(sample_identity(rng, "train"), speech, rng, lead_s=0.4, tail_s=0.6)
    F = clip.num_frames
    assert clip.frames.shape == (F, 3, 128, 128) and 0 <= clip.frames.min() and clip.frames.max() <= 1
    assert clip.audio.shape == (F * 640,) and clip.mouth.shape == (F,)
    assert F == 10 + -(-speech.audio.shape[0] // 640) + 15
    # the speech sits after the lead: audio silent before, words shifted by exactly 0.4 s
    assert clip.audio[: 10 * 640].abs().max() == 0
    assert clip.words[0].start == pytest.approx(speech.words[0].start + 0.4)
    assert clip.words[-1].end <= F / 25
    # the mouth is shut in the lead and tail and moves during the words
    assert clip.mouth[:9].max() < 0.02 and clip.mouth[-12:].max() < 0.02
    assert clip.mouth.max() > 0.5
    assert clip.text == "hello my name is nova"
    # the picture follows the mouth: the widest-open frame differs from a shut speaking-time frame near the mouth
    assert (clip.frames[int(clip.mouth.argmax())] - clip.frames[0]).abs().max() > 0.2


def test_mouth_positions_are_where_the_mouth_is_drawn():
    speech = speak_timed("hello, my name is nova.")
    rng = random.Random(3)
    clip = talking_clip(sample_identity(rng, "train"), speech, rng, lead_s=0.4, tail_s=0.6)
    assert clip.mouth_xy is not None and clip.mouth_xy.shape == (clip.num_frames, 2)
    idle = idle_clip(clip.identity, 0.4, rng)
    assert idle.mouth_xy is not None and idle.mouth_xy.shape == (10, 2)
    # Opening the mouth changes the picture around the recorded position: the centroid of the change between the
    # widest-open frame and its shut neighbour in time lies within a few pixels of it.
    k = int(clip.mouth.argmax())
    shut = int((clip.mouth[:k] < 0.05).nonzero().max())
    change = (clip.frames[k] - clip.frames[shut]).abs().sum(0)
    change = change * (change > 0.3 * change.max())
    ys, xs = torch.meshgrid(torch.arange(128.0) + 0.5, torch.arange(128.0) + 0.5, indexing="ij")
    centroid = torch.stack([(change * xs).sum(), (change * ys).sum()]) / change.sum()
    assert (centroid - clip.mouth_xy[k]).norm() < 6.0, (centroid, clip.mouth_xy[k])


def test_motion_blinks_and_drifts_within_bounds():
    frames = 25 * 30  # 30 s
    zeros = torch.zeros(frames)
    states = motion_states(MouthTrack(zeros, zeros), random.Random(3), zeros.bool())
    assert len(states) == frames and all(isinstance(s, FaceState) for s in states)
    blink = torch.tensor([s.blink for s in states])
    shut = blink > 0.5
    starts = int((shut[1:] & ~shut[:-1]).sum()) + int(shut[0])
    assert 30 / 6 - 1 <= starts <= 30 / 2 + 1, starts  # one every 2-6 s
    assert int(shut.sum()) <= starts * 5  # each ~150 ms: a few frames
    dx = torch.tensor([s.dx for s in states])
    dy = torch.tensor([s.dy for s in states])
    tilt = torch.tensor([s.tilt for s in states])
    assert dx.abs().max() <= 3 and dy.abs().max() <= 3 and tilt.abs().max() <= 0.05
    assert dx.std() > 0.2 and tilt.std() > 0.003  # it does move...
    assert dx.diff().abs().max() < 0.3 and dy.diff().abs().max() < 0.3  # ...slowly and smoothly
    assert all(s.mouth_open == 0 for s in states)


def test_nods_follow_speech_energy():
    frames = 100
    open_ = torch.zeros(frames)
    open_[40:70] = 0.8
    mouth = MouthTrack(open_, torch.zeros(frames))
    speaking = open_ > 0
    talk = motion_states(mouth, random.Random(7), speaking)
    quiet = motion_states(mouth, random.Random(7), torch.zeros(frames, dtype=torch.bool))
    nod = torch.tensor([a.dy - b.dy for a, b in zip(talk, quiet, strict=True)])
    assert nod[50:60].mean() > 0.3 and nod[:30].abs().max() < 1e-6
    assert [s.blink for s in talk] == [s.blink for s in quiet]  # same draw; only the nod differs


def test_idle_clip_is_silent_but_alive():
    rng = random.Random(1)
    clip = idle_clip(sample_identity(rng, "train"), 4.0, rng)
    assert clip.num_frames == 100 and clip.audio.shape == (64000,) and clip.audio.abs().max() == 0
    assert clip.mouth.max() == 0 and clip.words == []
    assert (clip.frames[1:] - clip.frames[:-1]).abs().amax(dim=(1, 2, 3)).max() > 0.05  # blinks and drift


def test_reply_clips_deterministic_per_seed_and_split_voices(tmp_path):
    a = reply_clips(2, seed=11, split="train", cache_dir=tmp_path)
    b = reply_clips(2, seed=11, split="train", cache_dir=tmp_path)
    for x, y in zip(a, b, strict=True):
        assert (
            x.text == y.text
            and torch.equal(x.frames, y.frames)
            and torch.allclose(x.audio, y.audio, atol=1e-4)
        )
        assert x.audio.shape[0] == x.num_frames * 640
    c = reply_clips(2, seed=12, split="train")
    assert [x.text for x in c] != [x.text for x in a] or not torch.equal(c[0].frames, a[0].frames)
    assert not set(TRAIN_VOICES) & set(HELD_OUT_VOICES)
    held = reply_clips(1, seed=11, split="held_out")
    assert held[0].audio.shape[0] == held[0].num_frames * 640 and held[0].mouth.max() > 0.3
