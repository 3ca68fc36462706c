"""Procedural puppets: forward kinematics, drawing, splits, and the committed keypoint detector."""

from __future__ import annotations

import pytest
import torch

from streamrt.errors import ParamError
from streamrt.poses import JOINT_INDEX, keypoint_error
from streamrt.puppets import (
    COLOURS,
    MOTIONS,
    SKINS,
    Clothing,
    MotionSpec,
    PuppetSpec,
    detect_keypoints,
    forward_kinematics,
    is_held_out_character,
    make_puppet_dataset,
    motion_angles,
    puppet_clip,
    sample_motion,
    still,
)

J = JOINT_INDEX
BONES = [("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("l_hip", "l_knee"), ("l_knee", "l_ankle")]


@pytest.mark.parametrize("motion", MOTIONS)
def test_every_motion_moves_and_keeps_the_skeleton_rigid(motion) -> None:
    spec = PuppetSpec()
    frames, kp = puppet_clip(spec, motion, 16, 64, seed=2)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == torch.uint8
    assert kp.shape == (16, 18, 3)
    assert (kp[..., :2] >= 0).all() and (kp[..., :2] <= 1).all()
    # It moves: joints travel and the pictures change.
    assert (kp[1:, :, :2] - kp[:-1, :, :2]).abs().amax() > 0.004
    assert (frames[1:].float() - frames[:-1].float()).abs().mean() > 0.1
    # Bones keep their lengths through the motion (forward kinematics, not free points).
    for a, b in BONES:
        length = (kp[:, J[a], :2] - kp[:, J[b], :2]).norm(dim=-1)
        assert (length.max() - length.min()) < 1e-4, (a, b)


def test_feet_stay_on_the_ground_except_in_jumps() -> None:
    spec = PuppetSpec()
    _, walk = puppet_clip(spec, MotionSpec("squat", speed=1 / 16), 16, 64)
    lowest = torch.maximum(walk[:, J["r_ankle"], 1], walk[:, J["l_ankle"], 1])
    assert (lowest.max() - lowest.min()) < 0.02
    _, jump = puppet_clip(spec, MotionSpec("jump", speed=1 / 16, amplitude=1.0), 16, 64)
    lowest = torch.maximum(jump[:, J["r_ankle"], 1], jump[:, J["l_ankle"], 1])
    assert (lowest.max() - lowest.min()) > 0.1


def test_still_motion_is_static_and_seeds_reproduce() -> None:
    spec = PuppetSpec()
    frames, _ = puppet_clip(spec, MotionSpec("wave", amplitude=0.0, speed=0.0), 4, 48)
    assert (frames == frames[:1]).all()
    a = puppet_clip(spec, "random", 6, 48, seed=5)
    b = puppet_clip(spec, "random", 6, 48, seed=5)
    c = puppet_clip(spec, "random", 6, 48, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_keypoints_lie_on_the_drawn_body() -> None:
    spec = PuppetSpec(shirt=Clothing("red", "red", "plain"), skin="dark", background="sky")
    size = 128
    frames, kp = puppet_clip(spec, MotionSpec("arm_swing", speed=1 / 12), 6, size)
    skin = torch.tensor(SKINS["dark"], dtype=torch.float32)
    for t in range(6):
        x, y = (kp[t, J["r_wrist"], :2] * size).long().tolist()
        assert (frames[t, y, x].float() - skin).abs().max() < 40  # a hand at the wrist
        mid = (kp[t, J["neck"], :2] + (kp[t, J["r_hip"], :2] + kp[t, J["l_hip"], :2]) / 2) / 2
        x, y = (mid * size).long().tolist()
        red = torch.tensor(COLOURS["red"], dtype=torch.float32)
        assert (frames[t, y, x].float() - red).abs().max() < 60  # the shirt at mid-torso


def test_turning_narrows_the_body_and_hides_the_far_ear() -> None:
    spec = PuppetSpec()
    skel = forward_kinematics(
        spec, motion_angles(MotionSpec("turn", speed=1 / 16, amplitude=1.0, phase=0.0), 5)
    )
    width = (skel.points[:, J["r_shoulder"], 0] - skel.points[:, J["l_shoulder"], 0]).abs()
    assert width[4] < 0.5 * width[0]  # a quarter cycle later the yaw is 1.1 rad
    assert skel.visible[0].all() and not skel.visible[4, [J["r_ear"], J["l_ear"]]].all()
    _, kp = puppet_clip(spec, MotionSpec("turn", speed=1 / 16, amplitude=1.0), 5, 64)
    assert kp[4, [J["r_ear"], J["l_ear"]], 2].min() == 0  # hidden joints get confidence 0


def test_held_out_split_is_disjoint_in_characters_and_motion_parameters() -> None:
    train = make_puppet_dataset(40, 2, 32, seed=0)
    held = make_puppet_dataset(40, 2, 32, seed=0, held_out=True)
    assert train.clips.shape == (40, 2, 32, 32, 3) and train.keypoints.shape == (40, 2, 18, 3)
    train_chars = {s.character() for s in train.specs}
    held_chars = {s.character() for s in held.specs}
    assert not train_chars & held_chars
    assert all(is_held_out_character(s) for s in held.specs) and not any(
        is_held_out_character(s) for s in train.specs
    )

    def bins(motions):
        return {int((m.speed - 1 / 40) / (1 / 12 - 1 / 40) * 8) for m in motions}

    assert bins(train.motions) <= {0, 2, 4, 6} and bins(held.motions) <= {1, 3, 5, 7}
    # Both splits use every texture and every motion.
    assert {s.shirt.texture for s in held.specs} == {s.shirt.texture for s in train.specs}
    assert {m.name for m in held.motions} == set(MOTIONS)


def test_bad_names_are_param_errors() -> None:
    with pytest.raises(ParamError, match="motion"):
        puppet_clip(PuppetSpec(), "moonwalk", 2, 32)
    with pytest.raises(ParamError, match="colour"):
        still(PuppetSpec(shirt=Clothing("mauve", "red", "plain")), 32)
    with pytest.raises(ParamError, match="motion"):
        sample_motion(torch.Generator(), "fly")


def test_detector_reads_held_out_poses() -> None:
    """The committed detector on held-out characters and motions, against their ground-truth keypoints."""
    held = make_puppet_dataset(24, 4, 128, seed=7, held_out=True)
    frames = held.clips.flatten(0, 1)
    truth = held.keypoints.flatten(0, 1)
    found = detect_keypoints(frames)
    assert found.shape == truth.shape
    err = keypoint_error(found, truth, 128)
    # A trivial baseline (every frame gets the mean pose) for scale.
    mean_pose = truth.mean(0, keepdim=True).expand_as(truth)
    baseline = keypoint_error(mean_pose, truth, 128)
    assert err < 4.0 and err < baseline / 3, (err, baseline)
    # It sees which face points a turned head hides.
    visible = truth[..., 2] > 0.5
    assert ((found[..., 2] > 0.5) == visible).float().mean() > 0.9


def test_detector_follows_a_moving_puppet_not_a_memorised_pose() -> None:
    spec = PuppetSpec(shirt=Clothing("green", "yellow", "dots"))
    frames, truth = puppet_clip(spec, MotionSpec("wave", speed=1 / 10), 8, 128)
    found = detect_keypoints(frames)
    wrist = J["r_wrist"]
    moved = (truth[:, wrist, :2] - truth[0, wrist, :2]).norm(dim=-1)
    tracked = (found[:, wrist, :2] - found[0, wrist, :2]).norm(dim=-1)
    assert moved.max() > 0.05
    assert torch.corrcoef(torch.stack([moved, tracked]))[0, 1] > 0.9


def test_detector_recipe_quick_run_writes_a_loadable_model(tmp_path) -> None:
    import argparse

    from streamrt import puppet_keypoints

    parser = argparse.ArgumentParser()
    puppet_keypoints.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "det")])
    assert puppet_keypoints.run(args) == 0
    for name in ("config.json", "model.safetensors", "README.md", "eval_metrics.json", "samples.png"):
        assert (tmp_path / "det" / name).is_file()
    frames, _ = puppet_clip(PuppetSpec(), "walk", 2, 64)
    assert detect_keypoints(frames, model=str(tmp_path / "det")).shape == (2, 18, 3)
