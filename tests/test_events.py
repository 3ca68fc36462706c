"""The ESIM-style event simulator, slicing and event files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamrt.errors import InputError, ParamError
from streamrt.events import (
    Events,
    EventSimulator,
    EventSlicer,
    load_events,
    normalise_slice,
    save_events,
    simulate_frames,
    slice_events,
)
from streamrt.puppets import MotionSpec, PuppetSpec, puppet_clip


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    frames, _ = puppet_clip(PuppetSpec(), MotionSpec("arm_swing", speed=1 / 12), 12, 64)
    return frames


def _grey(value: float, size: int = 8) -> np.ndarray:
    return np.full((size, size), value, dtype=np.float64)


def test_static_scene_gives_zero_events(clip) -> None:
    sim = EventSimulator(0.1, 0.1, sigma=0.03)
    for i in range(6):
        assert len(sim.push(clip[0], i / 24)) == 0


def test_event_count_falls_monotonically_as_the_threshold_rises(clip) -> None:
    counts = [
        len(simulate_frames(clip, 24, EventSimulator(c, c))) for c in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8)
    ]
    assert counts[0] > 0
    assert all(a > b for a, b in zip(counts, counts[1:], strict=False)), counts


def test_polarity_follows_the_brightness_change_and_flips_when_it_reverses() -> None:
    sim = EventSimulator(0.2, 0.2)
    sim.push(_grey(0.2), 0.0)
    up = sim.push(_grey(0.6), 1.0)
    down = sim.push(_grey(0.2), 2.0)
    assert len(up) > 0 and (up.p == 1).all()
    assert len(down) > 0 and (down.p == -1).all()


def test_several_events_per_pixel_and_exact_count_and_times() -> None:
    sim = EventSimulator(0.2, 0.3, eps=1e-3)
    a, b = 0.1, 0.5
    sim.push(_grey(a, 1), 1.0)
    ev = sim.push(_grey(b, 1), 2.0)
    la, lb = math.log(1e-3 + a), math.log(1e-3 + b)
    n = math.floor((lb - la) / 0.2)
    assert len(ev) == n and n >= 5
    # Crossing k is at level la + k C, its time interpolated linearly between the frames.
    want = [1.0 + (k * 0.2) / (lb - la) for k in range(1, n + 1)]
    assert ev.t.tolist() == pytest.approx(want)
    # Going back down uses C- and starts from the last crossed level, not from the frame's level.
    back = sim.push(_grey(a, 1), 3.0)
    ref = la + n * 0.2
    assert len(back) == math.floor((ref - la) / 0.3) and (back.p == -1).all()


def test_timestamps_stay_inside_the_frame_interval_and_are_sorted(clip) -> None:
    sim = EventSimulator(0.1, 0.1, sigma=0.02, seed=3)
    times = [0.5 + i * 0.04 for i in range(len(clip))]
    sim.push(clip[0], times[0])
    for i in range(1, len(clip)):
        ev = sim.push(clip[i], times[i])
        assert len(ev) > 0
        assert (ev.t > times[i - 1]).all() and (ev.t <= times[i]).all()
        assert (np.diff(ev.t) >= 0).all()


def test_refractory_period_drops_close_events() -> None:
    frames = [_grey(0.1, 2), _grey(0.9, 2)]
    free = simulate_frames(frames, 1.0, EventSimulator(0.1, 0.1))
    gated = simulate_frames(frames, 1.0, EventSimulator(0.1, 0.1, refractory=0.3))
    assert len(gated) < len(free)
    for pixel in range(4):
        t = gated.t[(gated.y * 2 + gated.x) == pixel]
        assert (np.diff(t) >= 0.3 - 1e-9).all()


def test_threshold_noise_changes_counts_but_not_the_static_invariant() -> None:
    frames = [_grey(0.1, 16), _grey(0.8, 16)]
    plain = simulate_frames(frames, 1.0, EventSimulator(0.2, 0.2))
    noisy = simulate_frames(frames, 1.0, EventSimulator(0.2, 0.2, sigma=0.05, seed=1))
    per_pixel_plain = np.bincount(plain.y * 16 + plain.x, minlength=256)
    per_pixel_noisy = np.bincount(noisy.y * 16 + noisy.x, minlength=256)
    assert len(set(per_pixel_plain.tolist())) == 1 and len(set(per_pixel_noisy.tolist())) > 1


def test_input_checks() -> None:
    sim = EventSimulator()
    sim.push(_grey(0.5), 1.0)
    with pytest.raises(InputError, match="increase"):
        sim.push(_grey(0.5), 1.0)
    with pytest.raises(InputError, match="size changed"):
        sim.push(_grey(0.5, 4), 2.0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        EventSimulator().push(np.full((4, 4, 3), 200.0), 0.0)
    with pytest.raises(ParamError):
        EventSimulator(0.0, 0.2)


def test_slicing_conserves_event_counts(clip) -> None:
    ev = simulate_frames(clip, 24, EventSimulator(0.1, 0.1))
    h, w = clip.shape[1:3]
    edges = np.linspace(0.0, len(clip) / 24, 7)
    total = 0
    for t0, t1 in zip(edges[:-1], edges[1:], strict=True):
        s = slice_events(ev, h, w, float(t0), float(t1))
        sub = ev.between(float(t0), float(t1))
        assert s[0].sum() == (sub.p > 0).sum() and s[1].sum() == (sub.p < 0).sum()
        assert 0 <= s[2].min() and s[2].max() <= 1
        assert ((s[2] > 0) <= (s[:2].sum(0) > 0)).all()  # a time only where something fired
        total += int(s[:2].sum())
    assert total == len(ev)


def test_time_surface_holds_the_latest_event() -> None:
    ev = Events(
        np.array([0.1, 0.3, 0.9]), np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([1, -1, 1], np.int8)
    )
    s = slice_events(ev, 1, 2, 0.0, 1.0)
    assert s[0].tolist() == [[1.0, 1.0]] and s[1].tolist() == [[1.0, 0.0]]
    assert s[2, 0].tolist() == pytest.approx([0.3, 0.9])
    n = normalise_slice(s, saturation=2.0)
    assert n[0].tolist() == [[0.5, 0.5]] and n[2, 0].tolist() == pytest.approx([0.3, 0.9])


def test_balanced_slices_hold_a_fixed_density(clip) -> None:
    ev = simulate_frames(clip, 24, EventSimulator(0.1, 0.1))
    h, w = clip.shape[1:3]
    density = 300
    for end in (3 / 24, 6 / 24, 11 / 24):
        s = slice_events(ev, h, w, end - 1 / 24, end, "balanced", density=density)
        available = int((ev.t < end).sum())
        assert int(s[:2].sum()) == min(density, available)
    with pytest.raises(ParamError, match="density"):
        slice_events(ev, h, w, 0.0, 0.1, "balanced")


def test_slicer_cuts_a_live_stream_at_its_rate(clip) -> None:
    sim = EventSimulator(0.1, 0.1)
    h, w = clip.shape[1:3]
    slicer = EventSlicer(12.0, height=h, width=w)
    slices, parts = [], []
    for i, frame in enumerate(clip):
        ev = sim.push(frame, i / 24)
        parts.append(ev)
        slicer.push(ev)
        slices.extend(slicer.slices_until(i / 24))
    assert len(slices) == int((len(clip) - 1) / 24 * 12)
    everything = Events.concat(parts)
    covered = everything.between(0.0, len(slices) / 12)
    assert int(sum(s[:2].sum() for s in slices)) == len(covered)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_event_files_round_trip(tmp_path, clip, suffix) -> None:
    ev = simulate_frames(clip[:4], 24, EventSimulator(0.15, 0.15))
    path = tmp_path / f"events{suffix}"
    save_events(path, ev)
    back = load_events(path)
    assert len(back) == len(ev)
    assert np.array_equal(back.x, ev.x) and np.array_equal(back.y, ev.y) and np.array_equal(back.p, ev.p)
    assert np.allclose(back.t, ev.t, rtol=0, atol=1e-12)


def test_zero_one_polarity_is_read_as_minus_plus_one(tmp_path) -> None:
    path = tmp_path / "e.npz"
    np.savez(path, t=np.array([0.2, 0.1]), x=np.array([1, 2]), y=np.array([3, 4]), p=np.array([0, 1]))
    ev = load_events(path)
    assert ev.t.tolist() == [0.1, 0.2] and ev.p.tolist() == [1, -1]  # sorted by time


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "t,x,y\n0.1,1,2\n", "header"),
        ("b.csv", "t,x,y,p\n0.1,1,2\n", "3 fields"),
        ("c.csv", "t,x,y,p\nsoon,1,2,1\n", "t is a number"),
        ("d.csv", "t,x,y,p\n0.1,1,2,5\n", "polarity"),
        ("e.csv", "t,x,y,p\n0.1,-1,2,1\n", ">= 0"),
        ("f.txt", "t,x,y,p\n", ".npz or .csv"),
    ],
)
def test_malformed_event_files_give_clear_errors(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_events(path)


def test_malformed_npz_files(tmp_path) -> None:
    path = tmp_path / "missing.npz"
    np.savez(path, t=np.zeros(2), x=np.zeros(2, int))
    with pytest.raises(InputError, match="lacks"):
        load_events(path)
    path = tmp_path / "ragged.npz"
    np.savez(path, t=np.zeros(2), x=np.zeros(3, int), y=np.zeros(2, int), p=np.ones(2, int))
    with pytest.raises(InputError, match="one length"):
        load_events(path)
    path = tmp_path / "pickled.npz"
    np.savez(path, t=np.array([object()], dtype=object), x=np.zeros(1), y=np.zeros(1), p=np.ones(1))
    with pytest.raises(InputError, match="npz"):
        load_events(path)
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError):
        load_events(path)


def test_events_outside_the_frame_are_an_input_error() -> None:
    ev = Events(np.array([0.1]), np.array([9]), np.array([0]), np.array([1], np.int8))
    with pytest.raises(InputError, match="outside"):
        slice_events(ev, 4, 4, 0.0, 1.0)


def test_video_file_offline(tmp_path, clip) -> None:
    from streamrt.events import simulate_video
    from streamrt.frames import VideoFrame
    from transport.files import MediaWriter

    path = tmp_path / "clip.mp4"
    with MediaWriter(path, width=64, height=64, rate=24) as out:
        for i, f in enumerate(clip):
            out.write(VideoFrame(data=f.contiguous(), pts=i * 3750))
    ev, w, h = simulate_video(path, EventSimulator(0.15, 0.15))
    assert (w, h) == (64, 64) and len(ev) > 0
    assert ev.t.min() > 0 and ev.t.max() <= (len(clip) - 1) / 24 + 1e-6
