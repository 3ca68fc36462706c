"""Body keypoints in the OpenPose / COCO-18 layout (the layout DWPose's body maps use), their files and pose maps.

A pose is a ``(18, 3)`` float tensor, one row per joint in ``JOINTS`` order: ``(x, y, confidence)`` with x and y
fractions of the frame width and height (0 = left/top edge, 1 = right/bottom edge) and confidence in [0, 1]
(0 = the joint is missing). A pose track is ``(T, 18, 3)``.

Files (``load_keypoints`` / ``save_keypoints``; the format is described for users in docs/poses.md):

- JSON, the project's layout: ``{"format": "coco18", "frames": [[[x, y, c] x 18], ...]}`` with normalised x, y.
  Optional ``"width"``/``"height"`` mark pixel coordinates (they are divided by the size).
- JSON, OpenPose's per-frame layout: ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, ...]}]}`` (18 joints =
  COCO model, 25 joints = BODY_25, mapped to COCO-18), one such object, a list of them (one per frame), or
  ``{"frames": [ ... ]}`` of them. OpenPose writes pixels: give ``"width"``/``"height"`` in the file or
  ``frame_size=(w, h)``. The first person of each frame is used; a frame without people has every confidence 0.
- CSV with the header ``frame,joint,x,y,confidence``; ``joint`` is an index 0..17 or a name from ``JOINTS``. Joints a
  frame does not list get confidence 0.

``PoseEstimator`` runs MediaPipe 0.10.14's pose solution (its models ship inside the wheel, so it works offline) and
maps its 33 landmarks to COCO-18; MediaPipe is the optional extra ``pip install 'streamrt[pose]'``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrt.errors import InputError, require

log = logging.getLogger(__name__)

JOINTS: tuple[str, ...] = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
NUM_JOINTS = len(JOINTS)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINTS)}

# The 17 limbs OpenPose/DWPose draw for the body (0-based joint pairs, in their drawing order); the two
# ear-shoulder pairs of OpenPose's 19-pair list are not drawn there, so they are not here either.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
# OpenPose's 18 body colours (RGB): joint i uses COLOURS[i], limb k uses COLOURS[k] at 60 % brightness.
COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
# BODY_25 -> COCO-18: BODY_25 adds a mid-hip (8) and six foot points (19..24); the rest is COCO-18 in order.
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# MediaPipe Pose landmark index for each COCO-18 joint (the neck, -1, is the shoulders' midpoint). MediaPipe's
# "left" is the person's left, as in COCO.
MEDIAPIPE_TO_COCO18: tuple[int, ...] = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
# Joints drawn only above this confidence (DWPose's body threshold).
DRAW_THRESHOLD = 0.3


# ---------------------------------------------------------------------------------------------------- pose maps
def render_pose_maps(
    keypoints: torch.Tensor, size: int, *, threshold: float = DRAW_THRESHOLD
) -> torch.Tensor:
    """(T, 18, 3) keypoints -> (T, size, size, 3) uint8 OpenPose-style maps: limbs as 60 %-brightness coloured
    sticks, joints as full-colour discs, on black. Later limbs/joints paint over earlier ones, as OpenPose draws."""
    kp = check_keypoints(keypoints, batched=True).float()
    t = kp.shape[0]
    # OpenPose draws 4-pixel sticks on ~512-pixel maps; keep the proportion, at least one pixel.
    radius = max(1.0, 4.0 * size / 512.0)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)
    canvas = torch.zeros(t, size, size, 3)
    colours = torch.tensor(COLOURS, dtype=torch.float32)
    r2 = (radius / size) ** 2
    # Limbs: distance of every pixel to every segment, all frames at once. (T, L, S, S)
    a = kp[:, [i for i, _ in LIMBS], :]
    b = kp[:, [j for _, j in LIMBS], :]
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]
    dx, dy = (b[..., 0] - a[..., 0])[..., None, None], (b[..., 1] - a[..., 1])[..., None, None]
    seg2 = (dx**2 + dy**2).clamp_min(1e-12)
    u = (((xx - ax) * dx + (yy - ay) * dy) / seg2).clamp(0, 1)
    d2 = (xx - ax - u * dx) ** 2 + (yy - ay - u * dy) ** 2
    visible = (a[..., 2] > threshold) & (b[..., 2] > threshold)  # (T, L)
    limb_mask = (d2 <= r2) & visible[..., None, None]
    _paint_last(canvas, limb_mask, colours[: len(LIMBS)] * 0.6)
    # Joints. (T, 18, S, S)
    jd2 = (xx - kp[..., 0, None, None]) ** 2 + (yy - kp[..., 1, None, None]) ** 2
    joint_mask = (jd2 <= r2) & (kp[..., 2] > threshold)[..., None, None]
    _paint_last(canvas, joint_mask, colours)
    return canvas.round().to(torch.uint8)


def _paint_last(canvas: torch.Tensor, masks: torch.Tensor, colours: torch.Tensor) -> None:
    """Paint (T, K, S, S) masks in order K = 0..; where several cover a pixel the last one wins."""
    k = masks.shape[1]
    order = torch.arange(1, k + 1).view(1, k, 1, 1)
    top = (masks * order).amax(
        dim=1
    )  # (T, S, S): 1-based index of the last mask covering the pixel, 0 = none
    hit = top > 0
    canvas[hit] = colours[top[hit] - 1]


def render_pose_map(keypoints: torch.Tensor, size: int, *, threshold: float = DRAW_THRESHOLD) -> torch.Tensor:
    """(18, 3) keypoints -> (size, size, 3) uint8 OpenPose-style pose map."""
    return render_pose_maps(check_keypoints(keypoints)[None], size, threshold=threshold)[0]


def check_keypoints(keypoints: Any, *, batched: bool = False) -> torch.Tensor:
    """A pose (18, 3) or, with ``batched``, a track (T, 18, 3) as a float tensor, or an InputError."""
    kp = torch.as_tensor(keypoints)
    want = (NUM_JOINTS, 3)
    if kp.ndim != (3 if batched else 2) or tuple(kp.shape[-2:]) != want:
        shape = "(T, 18, 3)" if batched else "(18, 3)"
        raise InputError(f"keypoints must have shape {shape} in COCO-18 order; got {tuple(kp.shape)}")
    if not kp.is_floating_point():
        kp = kp.float()
    if not torch.isfinite(kp).all():
        raise InputError("keypoints contain NaN or infinite values")
    return kp


# ---------------------------------------------------------------------------------------------------- files
def load_keypoints(path: str | Path, *, frame_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a pose track (T, 18, 3) from a JSON or CSV keypoint file (layouts in the module docstring).

    ``frame_size`` = (width, height) converts pixel coordinates (OpenPose files) to fractions of the frame."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError(
                f"{path}: a keypoint folder must hold OpenPose per-frame *.json files; found none"
            )
        frames = [_read_json(f) for f in files]
        return _from_json({"frames": frames}, path, frame_size)
    if not path.is_file():
        raise InputError(f"{path}: no such keypoint file (give a .json or .csv file)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(_read_json(path), path, frame_size)
    if suffix == ".csv":
        return _from_csv(path, frame_size)
    raise InputError(
        f"{path}: keypoint files are .json or .csv (see docs/poses.md), not {suffix or 'no suffix'}"
    )


def save_keypoints(path: str | Path, keypoints: torch.Tensor) -> None:
    """Write a pose track (T, 18, 3) as the project's JSON layout (.json) or the CSV layout (.csv)."""
    path = Path(path)
    kp = check_keypoints(keypoints, batched=True).double()
    suffix = path.suffix.lower()
    if suffix == ".json":
        frames = [[[round(float(v), 6) for v in joint] for joint in frame] for frame in kp.tolist()]
        path.write_text(json.dumps({"format": "coco18", "frames": frames}) + "\n")
    elif suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["frame", "joint", "x", "y", "confidence"])
            for t, frame in enumerate(kp.tolist()):
                for j, (x, y, c) in enumerate(frame):
                    w.writerow([t, JOINTS[j], f"{x:.6f}", f"{y:.6f}", f"{c:.6f}"])
    else:
        raise InputError(f"{path}: save keypoints as .json or .csv, not {suffix or 'no suffix'}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc}); see docs/poses.md for the keypoint layouts"
        ) from exc


def _from_json(data: Any, path: Path, frame_size: tuple[int, int] | None) -> torch.Tensor:
    size = frame_size
    if isinstance(data, dict) and "width" in data and "height" in data:
        size = (_positive(data["width"], "width", path), _positive(data["height"], "height", path))
    if isinstance(data, dict) and data.get("format") == "coco18":
        frames = data.get("frames")
        if not isinstance(frames, list) or not frames:
            raise InputError(
                f'{path}: "frames" must be a non-empty list of frames, each 18 [x, y, confidence]'
            )
        rows = []
        for t, frame in enumerate(frames):
            arr = _number_array(frame, f"{path}: frame {t}")
            if arr.shape != (NUM_JOINTS, 3):
                raise InputError(
                    f"{path}: frame {t} has shape {arr.shape}; each frame is 18 joints of [x, y, confidence] "
                    f"in COCO-18 order"
                )
            rows.append(arr)
        kp = np.stack(rows)
        if size is not None:
            kp = _normalise(kp, size)
        return _finish(kp, path, pixels_hint=size is None)
    if isinstance(data, dict) and "format" in data:
        raise InputError(f'{path}: unknown keypoint format {data["format"]!r}; the supported one is "coco18"')
    # OpenPose: one frame object, a list of them, or {"frames": [...]} of them.
    if isinstance(data, dict) and "people" in data:
        frames = [data]
    elif isinstance(data, list):
        frames = data
    elif isinstance(data, dict) and isinstance(data.get("frames"), list):
        frames = data["frames"]
    else:
        raise InputError(
            f'{path}: unrecognised keypoint JSON; expected {{"format": "coco18", "frames": [...]}} or OpenPose\'s '
            f'{{"people": [{{"pose_keypoints_2d": [...]}}]}} (see docs/poses.md)'
        )
    if not frames:
        raise InputError(f"{path}: the file holds no frames")
    rows = [_openpose_frame(frame, t, path) for t, frame in enumerate(frames)]
    kp = np.stack(rows)
    missing = kp[..., 2] <= 0
    if size is None and (kp[..., :2][~missing] > 1.5).any():
        raise InputError(
            f'{path}: OpenPose coordinates are in pixels; add "width" and "height" to the file or pass the '
            f"frame size (frame_size=(w, h), or the driving video)"
        )
    if size is not None:
        kp = _normalise(kp, size)
    kp[missing] = 0.0
    return _finish(kp, path, pixels_hint=False)


def _openpose_frame(frame: Any, t: int, path: Path) -> np.ndarray:
    if not isinstance(frame, dict) or not isinstance(frame.get("people"), list):
        raise InputError(f'{path}: frame {t} is not an OpenPose frame object with a "people" list')
    if not frame["people"]:
        return np.zeros((NUM_JOINTS, 3))
    person = frame["people"][0]
    flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
    if flat is None:
        raise InputError(f'{path}: frame {t}: the first person has no "pose_keypoints_2d" list')
    arr = _number_array(flat, f"{path}: frame {t} pose_keypoints_2d").reshape(-1)
    if arr.size == NUM_JOINTS * 3:
        return arr.reshape(NUM_JOINTS, 3)
    if arr.size == 25 * 3:
        return arr.reshape(25, 3)[list(BODY25_TO_COCO18)]
    raise InputError(
        f"{path}: frame {t}: pose_keypoints_2d has {arr.size} numbers; expected 54 (COCO-18) or 75 (BODY_25)"
    )


def _from_csv(path: Path, frame_size: tuple[int, int] | None) -> torch.Tensor:
    want = ["frame", "joint", "x", "y", "confidence"]
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from exc
    if not rows or [h.strip().lower() for h in rows[0]] != want:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(f"{path}: a keypoint CSV starts with the header {','.join(want)}; got {got}")
    entries: dict[int, dict[int, tuple[float, float, float]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 5:
            raise InputError(
                f"{path}: line {line} has {len(row)} fields; expected frame,joint,x,y,confidence"
            )
        try:
            frame = int(row[0])
            x, y, c = (float(v) for v in row[2:])
        except ValueError as exc:
            raise InputError(
                f"{path}: line {line}: {exc}; frame is an integer, x, y, confidence numbers"
            ) from exc
        joint_text = row[1].strip()
        if joint_text.isdigit():
            joint = int(joint_text)
            if joint >= NUM_JOINTS:
                raise InputError(f"{path}: line {line}: joint index {joint} is out of range 0..17")
        elif joint_text in JOINT_INDEX:
            joint = JOINT_INDEX[joint_text]
        else:
            raise InputError(
                f"{path}: line {line}: unknown joint {joint_text!r}; use 0..17 or one of {', '.join(JOINTS)}"
            )
        if frame < 0:
            raise InputError(f"{path}: line {line}: frame numbers start at 0")
        entries.setdefault(frame, {})[joint] = (x, y, c)
    if not entries:
        raise InputError(f"{path}: the CSV has a header but no keypoint rows")
    kp = np.zeros((max(entries) + 1, NUM_JOINTS, 3))
    for frame, joints in entries.items():
        for joint, values in joints.items():
            kp[frame, joint] = values
    if frame_size is not None:
        kp = _normalise(kp, frame_size)
    return _finish(kp, path, pixels_hint=frame_size is None)


def _number_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: expected numbers ({exc})") from exc
    return arr


def _positive(value: Any, name: str, path: Path) -> int:
    if not isinstance(value, int | float) or value <= 0:
        raise InputError(f'{path}: "{name}" must be a positive number of pixels, not {value!r}')
    return int(value)


def _normalise(kp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = kp.copy()
    out[..., 0] /= size[0]
    out[..., 1] /= size[1]
    return out


def _finish(kp: np.ndarray, path: Path, *, pixels_hint: bool) -> torch.Tensor:
    if not np.isfinite(kp).all():
        raise InputError(f"{path}: keypoints contain NaN or infinite values")
    present = kp[..., 2] > 0
    if (kp[..., 2] < 0).any() or (kp[..., 2] > 1.0 + 1e-6).any():
        raise InputError(f"{path}: confidences must lie in [0, 1]")
    xy = kp[..., :2][present]
    if xy.size and ((xy < -0.5) | (xy > 1.5)).any():
        hint = (
            ' (they look like pixels: add "width" and "height" to the file or pass frame_size)'
            if pixels_hint
            else ""
        )
        raise InputError(f"{path}: x, y must be fractions of the frame in [0, 1]{hint}")
    return torch.from_numpy(kp).float()


# ---------------------------------------------------------------------------------------------------- estimation
class PoseEstimator:
    """MediaPipe Pose (0.10.14, legacy ``solutions`` API, models shipped in the wheel) in video mode, mapped to
    COCO-18. Video mode tracks the person between frames, so feed the frames of one stream in order and call
    ``reset()`` (or make a new estimator) for a new stream.

    ``estimate(frame)`` takes one RGB uint8 frame (H, W, 3) and returns (18, 3); no person -> all confidences 0.
    """

    def __init__(self, *, model_complexity: int = 1, min_confidence: float = 0.5) -> None:
        if model_complexity != 1:
            # The 0.10.14 wheel ships only the "full" landmark model; 0 (lite) and 2 (heavy) download at run time.
            raise InputError(
                "PoseEstimator runs offline with model_complexity=1 only (the model in the wheel)"
            )
        self._mp = require("mediapipe", "pose")
        if not hasattr(getattr(self._mp, "solutions", None), "pose"):
            raise InputError(
                "this mediapipe has no solutions.pose (releases after 0.10.14 dropped the bundled models); install "
                "the pinned one with: pip install 'streamrt[pose]'"
            )
        self.model_complexity = model_complexity
        self.min_confidence = min_confidence
        self._pose: Any = None
        self.reset()

    def reset(self) -> None:
        self.close()
        self._pose = self._mp.solutions.pose.Pose(
            static_image_mode=False,
            model_complexity=self.model_complexity,
            smooth_landmarks=True,
            enable_segmentation=False,
            min_detection_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
        )

    def estimate(self, frame: torch.Tensor | np.ndarray) -> torch.Tensor:
        image = frame.cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"PoseEstimator takes RGB uint8 frames (H, W, 3); got {image.shape} {image.dtype}"
            )
        result = self._pose.process(np.ascontiguousarray(image))
        landmarks = result.pose_landmarks
        if landmarks is None:
            return torch.zeros(NUM_JOINTS, 3)
        mp = np.array([(p.x, p.y, p.visibility) for p in landmarks.landmark], dtype=np.float64)  # (33, 3)
        return torch.from_numpy(mediapipe_to_coco18(mp)).float()

    __call__ = estimate

    def estimate_video(self, frames: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 18, 3), in order (video mode)."""
        return torch.stack([self.estimate(f) for f in frames])

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mediapipe_to_coco18(landmarks: np.ndarray) -> np.ndarray:
    """(33, 3) MediaPipe landmarks (x, y, visibility) -> (18, 3) COCO-18; the neck is the shoulders' midpoint with
    the lower of their two visibilities. Confidences are clipped to [0, 1]."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (33, 3):
        raise InputError(f"MediaPipe pose landmarks have shape (33, 3); got {lm.shape}")
    out = np.zeros((NUM_JOINTS, 3))
    for j, m in enumerate(MEDIAPIPE_TO_COCO18):
        if m >= 0:
            out[j] = lm[m]
    ls, rs = lm[11], lm[12]
    out[JOINT_INDEX["neck"]] = ((ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, min(ls[2], rs[2]))
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    return out


def keypoint_error(
    predicted: torch.Tensor, target: torch.Tensor, size: int, *, min_confidence: float = 0.5
) -> float:
    """Mean Euclidean distance in pixels (of a ``size``-pixel square frame) between predicted and target joints,
    over the joints the target marks present. The cards' pose-following metric."""
    p = torch.as_tensor(predicted, dtype=torch.float32)
    t = torch.as_tensor(target, dtype=torch.float32)
    if p.shape != t.shape or p.shape[-2:] != (NUM_JOINTS, 3):
        raise InputError(
            f"keypoint_error needs two (..., 18, 3) tracks of one shape; got {p.shape}, {t.shape}"
        )
    present = t[..., 2] > min_confidence
    if not present.any():
        return math.nan
    d = (p[..., :2] - t[..., :2]).mul(size).norm(dim=-1)
    return float(d[present].mean())
