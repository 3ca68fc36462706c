"""The face probe (streamrt.face_probe): lip-sync and identity measures, the committed probe, the recipe."""

from __future__ import annotations

import argparse
import json
import math
import random

import pytest
import torch

from streamrt.errors import ModelLoadError
from streamrt.face_probe import (
    ASSET,
    FaceProbe,
    add_arguments,
    audio_envelope,
    blur_frames,
    face_detail,
    identity_distance,
    lip_sync,
    run,
)
from streamrt.faces import FaceState, portrait, render_faces, sample_identity

torch.set_num_threads(1)
SR, FPS, SPF = 16000, 25.0, 640


def _modulated(amps: torch.Tensor) -> torch.Tensor:
    """A 200 Hz tone whose amplitude is ``amps`` per video frame (8 whole periods a frame: RMS = amp / sqrt 2)."""
    t = torch.arange(amps.shape[0] * SPF, dtype=torch.float64) / SR
    return (amps.double().repeat_interleave(SPF) * torch.sin(2 * math.pi * 200 * t)).float()


def _smooth_random(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n + 4, generator=g)
    return torch.nn.functional.avg_pool1d(x.view(1, 1, -1), 5, 1).view(-1)[:n]


def test_audio_envelope_is_the_rms_per_frame():
    amps = _smooth_random(50, 0)
    env = audio_envelope(_modulated(amps), SR, FPS, 52)  # two frames past the end: silence
    assert env.shape == (52,)
    assert torch.allclose(env[:50], amps / math.sqrt(2), atol=1e-4)
    assert float(env[50:].abs().max()) == 0.0


@pytest.mark.parametrize("lag", [3, -2, 0])
def test_lip_sync_finds_a_known_lag(lag: int):
    amps = _smooth_random(300, 1)
    audio = _modulated(amps)
    # mouth[t] follows the audio at t - lag: the video is ``lag`` frames late
    mouth = torch.roll(amps, lag)
    sync = lip_sync(mouth, audio, SR, FPS)
    assert sync.offset_ms == pytest.approx(lag * 40.0)
    assert sync.corr > 0.98


def test_lip_sync_does_not_correlate_independent_noise():
    g = torch.Generator().manual_seed(2)
    audio = torch.randn(500 * SPF, generator=g) * torch.rand(500, generator=g).repeat_interleave(SPF)
    mouth = torch.rand(500, generator=g)
    assert lip_sync(mouth, audio, SR, FPS).corr < 0.3


def test_identity_distance_same_character_is_closer_than_another():
    rng = random.Random(7)
    ids = [sample_identity(rng, "held_out") for _ in range(6)]
    talking = [
        FaceState(mouth_open=1.0, mouth_round=0.5),
        FaceState(blink=1.0, dx=3, dy=-2),
        FaceState(mouth_open=0.6, tilt=0.05, yaw=0.12),
    ]
    for i, ident in enumerate(ids):
        same = identity_distance(render_faces(ident, talking), portrait(ident))
        for j, other in enumerate(ids):
            if j != i:
                d = identity_distance(render_faces(other, talking), portrait(ident))
                assert float(same.max()) < float(d.min()), (i, j)


def test_face_detail_is_about_one_when_crisp_and_falls_as_the_face_dissolves():
    rng = random.Random(3)
    talking = [FaceState(mouth_open=0.8), FaceState(blink=1.0, dx=2), FaceState(mouth_round=0.7, yaw=0.1)]
    for _ in range(3):
        ident = sample_identity(rng, "held_out")
        frames, still = render_faces(ident, talking), portrait(ident)
        crisp = float(face_detail(frames, still).mean())
        soft = float(face_detail(blur_frames(frames, sigma=1.0, noise=0.0), still).mean())
        melted = float(face_detail(blur_frames(frames, sigma=2.0, noise=0.0), still).mean())
        noisy = float(face_detail(blur_frames(frames, sigma=0.01, noise=0.04), still).mean())
        assert 0.7 < crisp < 1.3
        assert melted < 0.25 < soft < 0.5 < crisp < noisy
    # the portrait may come at another size than the frames
    ident = sample_identity(rng, "held_out")
    small = face_detail(render_faces(ident, talking), portrait(ident, 64))
    assert float(small.mean()) > 0.5


def test_load_names_the_fix_when_missing(tmp_path):
    with pytest.raises(ModelLoadError, match="streamrt train face-probe"):
        FaceProbe.load(tmp_path / "nowhere")


def _held_out_frames(n: int = 12, per: int = 8, seed: int = 11):
    rng = random.Random(seed)
    frames, truth = [], []
    for _ in range(n):
        ident = sample_identity(rng, "held_out")
        states = [
            FaceState(
                mouth_open=rng.random(),
                mouth_round=rng.random() * 0.8,
                blink=rng.choice((0.0, 0.0, 1.0)),
                dx=rng.uniform(-3, 3),
                dy=rng.uniform(-3, 3),
                tilt=rng.uniform(-0.05, 0.05),
                yaw=rng.uniform(-0.12, 0.12),
            )
            for _ in range(per)
        ]
        frames.append(render_faces(ident, states))
        truth += [(s.mouth_open, s.blink) for s in states]
    return torch.cat(frames), torch.tensor(truth)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_committed_probe_reads_mouth_opening_on_held_out_renders():
    probe = FaceProbe.load()
    frames, truth = _held_out_frames()
    m = probe.measure(frames)
    assert m["mouth_open"].shape == (frames.shape[0],) and m["centre"].shape == (frames.shape[0], 2)
    assert _corr(m["mouth_open"], truth[:, 0]) > 0.9
    assert float(((m["blink"] > 0.5) == (truth[:, 1] > 0.5)).float().mean()) > 0.9
    blurred = probe.measure(blur_frames(frames, 1.5))
    assert _corr(blurred["mouth_open"], truth[:, 0]) > 0.85
    # and at a generator's other sizes (the probe resizes to its input)
    small = torch.nn.functional.interpolate(frames, size=(96, 96), mode="bilinear", antialias=True)
    assert _corr(probe.measure(small)["mouth_open"], truth[:, 0]) > 0.85


def test_committed_card_and_metrics_exist():
    metrics = json.loads((ASSET / "eval_metrics.json").read_text())
    assert metrics["mouth_open_corr"] > 0.9
    assert (ASSET / "model.safetensors").stat().st_size <= 2_000_000
    assert "face-probe" in (ASSET / "README.md").read_text()


def test_recipe_quick_run(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "probe")])
    assert run(args) == 0
    for name in ("model.safetensors", "config.json", "README.md", "eval_metrics.json"):
        assert (tmp_path / "probe" / name).is_file()
    probe = FaceProbe.load(tmp_path / "probe")
    assert probe.measure(torch.rand(2, 3, 128, 128))["blink"].shape == (2,)
