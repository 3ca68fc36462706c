"""Speaker and listener poses: 7 degrees of freedom each (x, y, z in metres, then a unit quaternion qw, qx, qy, qz).

The frame is the listener's room frame: with the identity listener pose the listener sits at the origin facing +x,
+y to the left, +z up. Poses come as constants (``source_position=x,y,z``, ``source_pose``/``listener_pose`` with all
seven numbers) or as a trajectory CSV with one row per time::

    time_s, sx, sy, sz, sqw, sqx, sqy, sqz, lx, ly, lz, lqw, lqx, lqy, lqz

(an optional header line of names is skipped). Between rows positions are interpolated linearly and rotations by
spherical linear interpolation; before the first and after the last row the end poses hold.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from streamrt.errors import InputError, ParamError

POSE_DIM = 7
IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)
CSV_COLUMNS = (
    "time_s",
    *(f"s{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")),
    *(f"l{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")),
)


def parse_numbers(text: str, count: int, name: str) -> tuple[float, ...]:
    """``"1,0,0"`` -> (1.0, 0.0, 0.0), or ``ParamError`` naming the expected form."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ParamError(f"parameter {name!r} expects {count} comma-separated numbers, got {text!r}")
    return values


def normalize_quaternion(q: tuple[float, ...], name: str) -> tuple[float, float, float, float]:
    norm = math.sqrt(sum(v * v for v in q))
    if norm < 1e-6:
        raise ParamError(f"{name}: the quaternion (qw, qx, qy, qz) must not be zero; identity is 1,0,0,0")
    qw, qx, qy, qz = (v / norm for v in q)
    return (qw, qx, qy, qz)


def make_pose(position: tuple[float, ...], quaternion: tuple[float, ...], name: str) -> torch.Tensor:
    """(7,) float32 pose with a normalised quaternion."""
    return torch.tensor([*position, *normalize_quaternion(quaternion, name)], dtype=torch.float32)


def parse_pose(text: str, name: str) -> torch.Tensor:
    """``"x,y,z,qw,qx,qy,qz"`` -> (7,) pose."""
    v = parse_numbers(text, POSE_DIM, name)
    return make_pose(v[:3], v[3:], name)


def slerp(q0: torch.Tensor, q1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between unit quaternions (..., 4) with weights w (...), shortest arc."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the short way
    dot = dot.abs().clamp(max=1.0)
    w = w.unsqueeze(-1)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    near = sin < 1e-6  # nearly equal rotations: linear interpolation is exact enough and avoids 0/0
    a = torch.where(near, 1 - w, torch.sin((1 - w) * theta) / sin.clamp(min=1e-12))
    b = torch.where(near, w, torch.sin(w * theta) / sin.clamp(min=1e-12))
    q = a * q0 + b * q1
    return q / q.norm(dim=-1, keepdim=True)


def rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4) (qw, qx, qy, qz)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


def relative_position(speaker: torch.Tensor, listener: torch.Tensor) -> torch.Tensor:
    """The speaker's position in the listener's head frame (facing +x, +y left): (..., 3) from (..., 7) poses."""
    q = listener[..., 3:].clone()
    q[..., 1:] = -q[..., 1:]  # the inverse rotation of a unit quaternion is its conjugate
    return rotate(q, speaker[..., :3] - listener[..., :3])


def source_direction(poses: torch.Tensor) -> torch.Tensor:
    """(..., 14) speaker + listener poses -> (..., 4): the unit direction of the speaker in the listener's head frame
    (+x front, +y left, +z up) and the distance in metres."""
    rel = relative_position(poses[..., :7], poses[..., 7:])
    distance = torch.linalg.vector_norm(rel, dim=-1, keepdim=True)
    return torch.cat([rel / distance.clamp_min(1e-3), distance], dim=-1)


@dataclass(frozen=True)
class Trajectory:
    """Time-varying poses: ``times`` (N,) increasing seconds, ``speaker`` and ``listener`` (N, 7)."""

    times: torch.Tensor
    speaker: torch.Tensor
    listener: torch.Tensor

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """(T, 14) speaker and listener poses at times t (T,) seconds."""
        t = t.to(torch.float64)
        times = self.times.to(torch.float64)
        if len(times) == 1:
            return torch.cat([self.speaker, self.listener], -1).expand(len(t), -1).clone()
        t = t.clamp(times[0], times[-1])
        hi = torch.searchsorted(times, t, right=True).clamp(1, len(times) - 1)
        lo = hi - 1
        w = ((t - times[lo]) / (times[hi] - times[lo])).to(torch.float32)
        out = []
        for poses in (self.speaker, self.listener):
            p0, p1 = poses[lo], poses[hi]
            pos = p0[:, :3] + w[:, None] * (p1[:, :3] - p0[:, :3])
            out += [pos, slerp(p0[:, 3:], p1[:, 3:], w)]
        return torch.cat(out, -1)


def load_trajectory(path: str | Path) -> Trajectory:
    """Read a trajectory CSV (see the module docstring); malformed files raise ``InputError`` naming the row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trajectory file {path} not found")
    rows: list[list[float]] = []
    with path.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not cells or all(not c for c in cells) or cells[0].startswith("#"):
                continue
            if lineno == 1 and not _is_number(cells[0]):
                continue  # a header of column names
            if len(cells) != len(CSV_COLUMNS):
                raise InputError(
                    f"{path}:{lineno}: {len(cells)} columns; a trajectory row has {len(CSV_COLUMNS)}: "
                    + ", ".join(CSV_COLUMNS)
                )
            try:
                values = [float(c) for c in cells]
            except ValueError as exc:
                raise InputError(f"{path}:{lineno}: not a number ({exc})") from exc
            if not all(math.isfinite(v) for v in values):
                raise InputError(f"{path}:{lineno}: values must be finite numbers")
            if rows and values[0] <= rows[-1][0]:
                raise InputError(f"{path}:{lineno}: time_s must increase from row to row")
            rows.append(values)
    if not rows:
        raise InputError(f"{path}: no trajectory rows; expected columns {', '.join(CSV_COLUMNS)}")
    data = torch.tensor(rows, dtype=torch.float64)
    speaker, listener = [], []
    for k, row in enumerate(rows):
        try:
            speaker.append(make_pose(row[1:4], row[4:8], f"{path} row {k + 1} speaker"))
            listener.append(make_pose(row[8:11], row[11:15], f"{path} row {k + 1} listener"))
        except ParamError as exc:
            raise InputError(str(exc)) from exc
    return Trajectory(data[:, 0].contiguous(), torch.stack(speaker), torch.stack(listener))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
