"""The committed EvAnimate default (assets/evanimate-tiny): renders follow the driving events."""

from __future__ import annotations

import pytest
import torch

from pipelines.evanimate import EvAnimateGenerator
from streamrt.frames import VideoFrame
from streamrt.puppets import MotionSpec, make_puppet_dataset, puppet_clip, still

STEP = 3750  # 24 fps on the 90 kHz clock


@pytest.fixture(scope="module")
def gen() -> EvAnimateGenerator:
    torch.set_num_threads(1)
    return EvAnimateGenerator.load()


def _render(gen: EvAnimateGenerator, frames: torch.Tensor, reference=None) -> torch.Tensor:
    gen.prepare({} if reference is None else {"reference": reference})
    outs = []
    for i, f in enumerate(frames):
        outs += gen.push(VideoFrame(data=f, pts=i * STEP))
    outs += gen.flush()
    return torch.stack([o.data for o in outs]).float()


def _steady_motion(out: torch.Tensor) -> float:
    # frames 16..27 were made with the window full (the last 4 of 32 come from the drain at the end)
    return float((out[17:28] - out[16:27]).abs().mean())


def test_static_driving_video_gives_a_nearly_static_output_and_moving_a_moving_one(gen) -> None:
    spec = make_puppet_dataset(1, 1, gen.size, seed=3, held_out=True).specs[0]
    static, _ = puppet_clip(spec, MotionSpec("squat", speed=0.0, amplitude=0.8), 32, gen.size)
    moving, _ = puppet_clip(spec, MotionSpec("squat", speed=1 / 10, amplitude=0.8), 32, gen.size)
    out_static = _render(gen, static)
    out_moving = _render(gen, moving)
    truth = float((moving[17:28].float() - moving[16:27].float()).abs().mean())
    assert _steady_motion(out_static) < 0.25 * truth, (_steady_motion(out_static), truth)
    assert _steady_motion(out_moving) > 0.25 * truth, (_steady_motion(out_moving), truth)
    assert _steady_motion(out_moving) > 3 * _steady_motion(out_static)


def test_output_keeps_the_reference_identity(gen, tmp_path) -> None:
    """Two characters driven by the same motion: each output is closer in colour to its own reference."""
    from PIL import Image

    from streamrt.animation.training import identity_distance

    specs = make_puppet_dataset(2, 1, gen.size, seed=11, held_out=True).specs
    driving, _ = puppet_clip(specs[0], MotionSpec("wave", speed=1 / 12), 24, gen.size)
    distances = []
    for spec in specs:
        ref = still(spec, gen.size)
        path = tmp_path / f"{len(distances)}.png"
        Image.fromarray(ref.numpy()).save(path)
        out = _render(gen, driving, str(path)).to(torch.uint8)
        distances.append([identity_distance(out, still(s, gen.size)) for s in specs])
    assert distances[0][0] < distances[0][1] and distances[1][1] < distances[1][0], distances
