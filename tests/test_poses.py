"""COCO-18 poses: pose maps, keypoint files (JSON, OpenPose JSON, CSV) and the MediaPipe estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamrt.errors import InputError, MissingDependencyError
from streamrt.poses import (
    COLOURS,
    JOINT_INDEX,
    JOINTS,
    LIMBS,
    NUM_JOINTS,
    PoseEstimator,
    keypoint_error,
    load_keypoints,
    mediapipe_to_coco18,
    render_pose_map,
    render_pose_maps,
    save_keypoints,
)
from streamrt.puppets import MotionSpec, PuppetSpec, puppet_clip


def _pose(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(NUM_JOINTS, 3, generator=g) * 0.6 + 0.2
    kp[:, 2] = 1.0
    return kp


def test_layout_is_coco18() -> None:
    assert JOINTS[:3] == ("nose", "neck", "r_shoulder") and JOINTS[-1] == "l_ear" and NUM_JOINTS == 18
    assert len(LIMBS) == 17 and len(COLOURS) == 18
    assert all(0 <= a < 18 and 0 <= b < 18 for a, b in LIMBS)


def test_pose_map_draws_joints_and_limbs_in_openpose_colours() -> None:
    kp = torch.zeros(NUM_JOINTS, 3)
    kp[JOINT_INDEX["neck"]] = torch.tensor([0.25, 0.5, 1.0])
    kp[JOINT_INDEX["r_shoulder"]] = torch.tensor([0.75, 0.5, 1.0])
    img = render_pose_map(kp, 64)
    assert img.shape == (64, 64, 3) and img.dtype == torch.uint8
    assert img[5, 5].tolist() == [0, 0, 0]  # black background
    assert img[32, 16].tolist() == list(COLOURS[1])  # the neck joint: full colour
    limb = LIMBS.index((1, 2))
    assert img[32, 32].tolist() == [round(c * 0.6) for c in COLOURS[limb]]  # limb at 60 %
    # Only the one limb with both joints present is drawn.
    assert (img.sum(-1) > 0).float().mean() < 0.1


def test_pose_map_skips_low_confidence_joints() -> None:
    kp = _pose()
    full = render_pose_map(kp, 48)
    kp[:, 2] = 0.1
    assert render_pose_map(kp, 48).sum() == 0 and full.sum() > 0


def test_batched_maps_equal_single_maps() -> None:
    kps = torch.stack([_pose(0), _pose(1)])
    maps = render_pose_maps(kps, 40)
    assert torch.equal(maps[1], render_pose_map(kps[1], 40))


def test_bad_keypoint_shape_is_an_input_error() -> None:
    with pytest.raises(InputError, match="COCO-18"):
        render_pose_map(torch.zeros(17, 3), 32)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_keypoint_files_round_trip(tmp_path, suffix) -> None:
    kps = torch.stack([_pose(i) for i in range(3)])
    kps[1, 4, 2] = 0.0
    path = tmp_path / f"poses{suffix}"
    save_keypoints(path, kps)
    back = load_keypoints(path)
    assert back.shape == (3, 18, 3)
    assert torch.allclose(back, kps, atol=1e-5)


def test_openpose_json_in_pixels_body25_and_coco(tmp_path) -> None:
    kp = _pose()
    w, h = 640, 480
    pix = kp.clone()
    pix[:, 0] *= w
    pix[:, 1] *= h
    body25 = torch.zeros(25, 3)
    body25[[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]] = pix
    frames = [
        {"people": [{"pose_keypoints_2d": body25.flatten().tolist()}]},
        {"people": [{"pose_keypoints_2d": pix.flatten().tolist()}]},
        {"people": []},
    ]
    path = tmp_path / "openpose.json"
    path.write_text(json.dumps({"width": w, "height": h, "frames": frames}))
    got = load_keypoints(path)
    assert got.shape == (3, 18, 3)
    assert torch.allclose(got[0], kp, atol=1e-5) and torch.allclose(got[1], kp, atol=1e-5)
    assert got[2, :, 2].sum() == 0  # nobody in the frame
    # Pixels without a frame size: a clear error naming the fix; with frame_size it loads.
    path.write_text(json.dumps(frames))
    with pytest.raises(InputError, match="width"):
        load_keypoints(path)
    assert torch.allclose(load_keypoints(path, frame_size=(w, h))[0], kp, atol=1e-5)


def test_openpose_folder_of_frames(tmp_path) -> None:
    kp = _pose()
    for i in range(2):
        frame = {"people": [{"pose_keypoints_2d": kp.flatten().tolist()}]}
        (tmp_path / f"clip_{i:012d}_keypoints.json").write_text(json.dumps(frame))
    assert load_keypoints(tmp_path).shape == (2, 18, 3)


def test_csv_accepts_joint_names_and_fills_missing_joints(tmp_path) -> None:
    path = tmp_path / "k.csv"
    path.write_text("frame,joint,x,y,confidence\n0,neck,0.5,0.4,1\n1,3,0.2,0.3,0.9\n")
    kp = load_keypoints(path)
    assert kp.shape == (2, 18, 3)
    assert kp[0, 1].tolist() == pytest.approx([0.5, 0.4, 1.0]) and kp[1, 3].tolist() == pytest.approx(
        [0.2, 0.3, 0.9]
    )
    assert kp[0, 0, 2] == 0 and kp[1, 1, 2] == 0


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", "{not json", "not valid JSON"),
        ("b.json", '{"format": "coco18", "frames": [[[0.1, 0.2, 1.0]]]}', "18 joints"),
        ("c.json", '{"format": "body99", "frames": []}', "unknown keypoint format"),
        ("d.json", '{"hello": 1}', "unrecognised keypoint JSON"),
        ("e.json", '{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "54"),
        ("f.csv", "frame,x,y\n0,1,2\n", "header"),
        ("g.csv", "frame,joint,x,y,confidence\n0,elbow,0.1,0.1,1\n", "unknown joint"),
        ("h.csv", "frame,joint,x,y,confidence\n0,1,abc,0.1,1\n", "line 2"),
        ("i.csv", "frame,joint,x,y,confidence\n0,1,120,80,1\n", "look like pixels"),
        ("j.csv", "frame,joint,x,y,confidence\n0,1,0.1,0.1,3\n", "confidences"),
        ("k.txt", "", ".json or .csv"),
    ],
)
def test_malformed_keypoint_files_give_clear_errors(tmp_path, name, text, message) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_keypoints(path)


def test_missing_keypoint_file() -> None:
    with pytest.raises(InputError, match="no such keypoint file"):
        load_keypoints("/nonexistent/poses.json")


def test_mediapipe_landmarks_map_to_coco18() -> None:
    lm = np.zeros((33, 3))
    lm[:, 0] = np.arange(33) / 33
    lm[:, 1] = 0.5
    lm[:, 2] = 0.9
    lm[12, 2] = 0.4  # right shoulder less visible
    out = mediapipe_to_coco18(lm)
    assert out[JOINT_INDEX["nose"], 0] == pytest.approx(0 / 33)
    assert out[JOINT_INDEX["r_shoulder"], 0] == pytest.approx(12 / 33)  # person's right = MediaPipe 12
    assert out[JOINT_INDEX["l_wrist"], 0] == pytest.approx(15 / 33)
    assert out[JOINT_INDEX["r_ankle"], 0] == pytest.approx(28 / 33)
    assert out[JOINT_INDEX["l_ear"], 0] == pytest.approx(7 / 33)
    assert out[JOINT_INDEX["neck"]].tolist() == pytest.approx([(11 + 12) / 66, 0.5, 0.4])


def test_keypoint_error_in_pixels() -> None:
    a = _pose()
    b = a.clone()
    b[:, 0] += 0.1
    assert keypoint_error(b, a, 100) == pytest.approx(10.0, rel=1e-4)


def test_missing_mediapipe_names_the_install_command(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamrt\[pose\]'"):
        PoseEstimator()


def test_mediapipe_finds_the_puppets_pose() -> None:
    pytest.importorskip("mediapipe")
    frames, truth = puppet_clip(PuppetSpec(), MotionSpec("arm_swing", amplitude=0.8), 6, 256)
    with PoseEstimator() as est:
        found = est.estimate_video(frames)
        assert found.shape == (6, 18, 3)
        assert (found[:, :, 2] > 0.5).float().mean() > 0.8
        # Within a few pixels of the puppet's true joints (a 256-px frame), on every frame.
        assert keypoint_error(found, truth, 256) < 8.0
        est.reset()
        assert est.estimate(torch.zeros(128, 128, 3, dtype=torch.uint8))[:, 2].max() == 0
