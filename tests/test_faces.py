"""Procedural talking faces (streamrt.faces): determinism, what each state changes, identities and splits."""

from __future__ import annotations

import random

import pytest
import torch

from streamrt.errors import ParamError
from streamrt.faces import (
    HEAD_A,
    HEAD_SCALE,
    NEUTRAL,
    FaceState,
    mouth_centre,
    portrait,
    render_face,
    render_faces,
    sample_identity,
    split_of,
)

torch.set_num_threads(1)


def _ids(n: int, split: str = "train", seed: int = 0):
    rng = random.Random(seed)
    return [sample_identity(rng, split) for _ in range(n)]


def test_deterministic_shapes_and_range():
    ident = sample_identity(random.Random(3))
    assert sample_identity(random.Random(3)) == ident
    states = [NEUTRAL, FaceState(mouth_open=0.7, blink=0.5, dx=2, tilt=0.1, yaw=0.3)]
    a, b = render_faces(ident, states), render_faces(ident, states)
    assert a.shape == (2, 3, 128, 128) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(portrait(ident), a[0])
    assert render_face(ident, states[1], size=64).shape == (3, 64, 64)
    assert render_faces(ident, []).shape == (0, 3, 128, 128)


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().amax(0) > 0.05  # (S, S)


def test_mouth_open_changes_pixels_only_near_the_mouth_and_clearly():
    for ident in _ids(6):
        closed, wide = render_faces(ident, [NEUTRAL, FaceState(mouth_open=1.0)])
        changed = _changed(closed, wide)
        assert changed.sum() > 120, "mouth opening must be clearly visible"
        ys, xs = torch.nonzero(changed, as_tuple=True)
        cx, cy = mouth_centre(ident, FaceState(mouth_open=1.0))
        # the lips, the inside of the mouth and the dropping jaw (the chin and the lower cheeks' outline)
        half_face = HEAD_A * HEAD_SCALE * ident.face_w * 64 + 2  # px
        assert float((xs + 0.5 - cx).abs().max()) < half_face and float((ys + 0.5 - cy).abs().max()) < 30
        # nothing above the nose moves (the jaw's stretch starts under it, ~22 px above the mouth's centre)
        assert float(ys.float().min()) > cy - 24, "the eyes and the upper face must not move"
        # ... and still changes the 8x-down image (the frame autoencoder's latent grid) substantially
        pool = torch.nn.functional.avg_pool2d(torch.stack([closed, wide]), 8)
        assert float((pool[0] - pool[1]).abs().amax()) > 0.08


def test_mouth_round_narrows_the_mouth():
    ident = _ids(1)[0]
    spread, rounded = render_faces(
        ident, [FaceState(mouth_open=0.6), FaceState(mouth_open=0.6, mouth_round=1)]
    )
    dark = lambda img: (img - torch.tensor([0.25, 0.05, 0.07]).view(3, 1, 1)).abs().sum(0) < 0.1  # noqa: E731
    width = lambda m: int(m.any(0).sum())  # noqa: E731
    assert width(dark(rounded)) < width(dark(spread))


def test_blink_changes_only_the_eyes():
    for ident in _ids(6, seed=1):
        opened, closed = render_faces(ident, [NEUTRAL, FaceState(blink=1.0)])
        changed = _changed(opened, closed)
        assert changed.sum() > 30
        ys, xs = torch.nonzero(changed, as_tuple=True)
        mx, my = mouth_centre(ident, NEUTRAL)
        assert float(ys.float().max()) < my - 20, "blinking must not touch the mouth region"
        assert float(ys.float().min()) > 20 and float((xs + 0.5 - 64).abs().max()) < 30


def test_dx_shifts_the_face():
    ident = _ids(1, seed=2)[0]
    base, moved = render_faces(ident, [NEUTRAL, FaceState(dx=4.0)])
    # The head region of the moved frame matches the neutral one shifted by 4 px far better than unshifted.
    rows = slice(10, 90)
    shifted = base[:, rows, 20:104]
    assert (moved[:, rows, 24:108] - shifted).abs().mean() < 0.3 * (
        moved[:, rows, 20:104] - shifted
    ).abs().mean()
    x0, _ = mouth_centre(ident, NEUTRAL)
    x1, _ = mouth_centre(ident, FaceState(dx=4.0))
    assert abs(x1 - x0 - 4.0) < 1e-6


def test_identities_differ_clearly():
    ids = _ids(8, seed=4)
    frames = torch.stack([portrait(i) for i in ids])
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            assert (frames[i] - frames[j]).abs().mean() > 0.05


def test_held_out_and_train_identities_are_disjoint():
    train = _ids(300, "train", seed=5)
    held = _ids(300, "held_out", seed=6)
    assert all(split_of(i) == "train" for i in train) and all(split_of(i) == "held_out" for i in held)
    combo = lambda i: (i.hair_style, i.hair_colour, i.shirt_colour, i.shirt_pattern)  # noqa: E731
    assert not {combo(i) for i in train} & {combo(i) for i in held}
    with pytest.raises(ParamError):
        sample_identity(random.Random(0), "test")  # type: ignore[arg-type]
