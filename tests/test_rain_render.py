"""`streamrt render rain`: a driving video (poses estimated per frame) or a keypoint file, a reference image; and,
with the trained default, a still driving video gives a nearly still output and a moving one a moving output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _animation import SIZE, puppet_clip_frames, read_video, tiny_model_folder, write_video

from streamrt.errors import ParamError
from streamrt.poses import save_keypoints
from streamrt.render import render
from streamrt.video.folder import default_folder

torch.set_num_threads(1)
TRAINED = (default_folder("rain") / "config.json").is_file()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("rain-render"))


def test_render_driving_video_with_reference(folder, tmp_path) -> None:
    frames, _ = puppet_clip_frames(10, SIZE)
    video = write_video(tmp_path / "driving.mp4", frames)
    ref = tmp_path / "ref.png"
    from streamrt.animation.folder import write_image

    write_image(ref, frames[0])
    out = tmp_path / "out.mp4"
    render("rain", out, input=video, files={"reference": ref}, model=str(folder))
    got = read_video(out)
    assert got.shape == (10, SIZE, SIZE, 3)


def test_render_keypoint_file_without_video(folder, tmp_path) -> None:
    _, kps = puppet_clip_frames(9, SIZE)
    poses = tmp_path / "poses.json"
    save_keypoints(poses, kps)
    out = tmp_path / "out.mp4"
    render("rain", out, files={"poses": poses}, frames=9, model=str(folder))
    assert read_video(out).shape[0] == 9


def test_file_flag_for_a_pipeline_without_that_parameter(tmp_path) -> None:
    with pytest.raises(ParamError, match="--poses"):
        render("passthrough", tmp_path / "o.mp4", files={"poses": tmp_path / "p.json"}, frames=2)


def _mean_change(frames: torch.Tensor) -> float:
    """Mean absolute difference between consecutive frames (0..255)."""
    f = frames.float()
    return float((f[1:] - f[:-1]).abs().mean())


def _pose_spread(frames: torch.Tensor) -> float:
    """How much the pose moves: per joint, the spread (px) of its detected position over the frames, averaged
    over the joints the puppet detector finds in every frame."""
    from streamrt.puppets import detect_keypoints

    k = detect_keypoints(frames)
    found = (k[..., 2] > 0.5).all(dim=0)
    return float((k[..., :2] * frames.shape[1]).std(dim=0).norm(dim=-1)[found].mean())


@pytest.mark.skipif(not TRAINED, reason="needs the trained default assets/rain-tiny (`streamrt train rain`)")
def test_static_driving_gives_static_output_and_moving_gives_moving(tmp_path: Path) -> None:
    moving, _ = puppet_clip_frames(40, 128, seed=11, motion="walk")
    still = moving[:1].expand(40, -1, -1, -1).contiguous()
    ref = tmp_path / "ref.png"
    from streamrt.animation.folder import write_image

    write_image(ref, moving[0])
    outs = {}
    for name, clip in (("still", still), ("moving", moving)):
        video = write_video(tmp_path / f"{name}.mp4", clip)
        render("rain", tmp_path / f"{name}-out.mp4", input=video, files={"reference": ref})
        outs[name] = read_video(tmp_path / f"{name}-out.mp4")[16:]  # from frame 16 on the window is full
    still_change, moving_change = _mean_change(outs["still"]), _mean_change(outs["moving"])
    still_spread, moving_spread = _pose_spread(outs["still"]), _pose_spread(outs["moving"])
    truth_spread = _pose_spread(moving[16:])
    assert still_change < 1.0 and still_spread < 1.0, (
        f"a still driving video moved the output: {still_change:.2f} per frame, pose spread {still_spread:.2f} px"
    )
    assert moving_spread > max(3 * still_spread, 0.3 * truth_spread), (
        f"a moving driving video (pose spread {truth_spread:.2f} px) gave a pose spread of {moving_spread:.2f} px "
        f"(still: {still_spread:.2f})"
    )
    assert moving_change > 2 * still_change
