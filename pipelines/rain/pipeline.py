"""RAIN behind the generator contract: driving video (or a keypoint file) in, the animated reference out.

The pose of each input frame comes from a pose estimator (``estimator``: ``puppet``, the project's puppet keypoint
detector, or ``mediapipe``, MediaPipe 0.10.14's offline pose model) or from a keypoint file (``poses``: JSON or
CSV, see ``streamrt.poses``; then the video only gives the timing, and without input the file drives ``pull``).
Poses become OpenPose-style pose maps for the guider; the stream is ``streamrt.animation.AnimationStream``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamrt.animation.generator import LATENCY_FRAMES, LOOKAHEAD_FRAMES, AnimationGenerator, common_params
from streamrt.errors import InputError
from streamrt.frames import VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet


def pose_map(keypoints: torch.Tensor, size: int) -> torch.Tensor:
    """(18, 3) keypoints -> (3, size, size) float pose map in [0, 1] (the guider's input)."""
    from streamrt.poses import render_pose_map

    return render_pose_map(keypoints, size).permute(2, 0, 1).float() / 255


def pose_maps_of_clip(frames: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """A training clip's condition images: (T, S, S, 3) uint8 pose maps of its true keypoints."""
    from streamrt.poses import render_pose_maps

    return render_pose_maps(keypoints, frames.shape[1])


class RainGenerator(AnimationGenerator, Generator):
    pipeline = "rain"
    spec = GeneratorSpec(
        name="rain",
        description="RAIN: animate a reference image from a pose stream (driving video or keypoint file); 4 groups "
        "of 4 frames at t = 999/749/499/249, one UNet pass per group.",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(
            (
                *common_params(),
                Param(
                    "poses",
                    str,
                    None,
                    "Keypoint file (JSON/CSV, COCO-18; see streamrt.poses) driving the "
                    "animation instead of estimating poses from the input.",
                    live=False,
                    optional=True,
                ),
                Param(
                    "estimator",
                    str,
                    "puppet",
                    "Pose estimator for driving video: puppet (the project's puppet "
                    "keypoint detector) or mediapipe (real people; pip install 'streamrt[pose]').",
                    live=False,
                    choices=("puppet", "mediapipe"),
                ),
            )
        ),  # fmt: skip
        input_optional=True,  # a keypoint file can drive it alone
        latency=LATENCY_FRAMES,
        lookahead=LOOKAHEAD_FRAMES,
    )

    def on_stream_start(self) -> None:
        from streamrt.poses import load_keypoints

        self._keypoints = load_keypoints(self.params["poses"]) if self.params["poses"] else None
        if self.params["estimator"] == "mediapipe" and self._keypoints is None:
            if getattr(self, "_estimator", None) is None:
                from streamrt.poses import PoseEstimator

                self._estimator = PoseEstimator()
            self._estimator.reset()

    def condition_at(self, index: int) -> torch.Tensor:
        if self._keypoints is None:
            raise InputError("rain needs driving video input (-i) or a keypoint file (poses=FILE / --poses)")
        if index >= self._keypoints.shape[0]:
            raise InputError(
                f"the keypoint file {self.params['poses']} has {self._keypoints.shape[0]} frames; frame {index} "
                "was asked for (render at most that many frames, e.g. --frames N)"
            )
        return pose_map(self._keypoints[index], self.size)

    def condition_of(self, frame: VideoFrame, index: int) -> torch.Tensor:
        if self._keypoints is not None:
            return self.condition_at(index)
        return pose_map(self.estimate(frame.data), self.size)

    def estimate(self, image: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 -> (18, 3) keypoints."""
        if self.params["estimator"] == "mediapipe":
            return self._estimator.estimate(image)
        from streamrt.puppets import detect_keypoints

        if image.shape[0] != self.size or image.shape[1] != self.size:
            x = image.permute(2, 0, 1)[None].float()
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )
            image = x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        return detect_keypoints(image[None])[0]

    def close(self) -> None:
        est = getattr(self, "_estimator", None)
        if est is not None:
            est.close()
            self._estimator = None
