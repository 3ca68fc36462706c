"""An ESIM-style event-camera simulator, event slicing into 3-channel images, and event files.

Simulation (``EventSimulator``), as in ESIM (Rebecq et al. 2018): each pixel keeps a reference log intensity, the
level at which it last fired. Between two frames the pixel's log intensity is taken to change linearly in time; every
time it crosses the reference plus or minus the contrast threshold (C+ upwards, C- downwards) an event fires with
polarity +1 or -1, the reference moves to the crossed level, and the event's timestamp is interpolated linearly
between the two frames' times. A change that crosses several thresholds fires several events. Optional per-pixel
threshold noise draws C from N(C, sigma) for each pixel and frame pair (clipped at 0.01); an optional refractory
period drops events that follow the pixel's previous event too closely (the reference still moves, as in ESIM).
The first frame only initialises the references. Log intensity is ``log(eps + luminance)`` with luminance in [0, 1].

Slicing (``slice_events``, ``EventSlicer``): a slice covers a time window and holds 3 channels (docs/events.md)::

    channel 0: number of positive events at each pixel in the window
    channel 1: number of negative events at each pixel in the window
    channel 2: time surface: (t_last - t_start) / (t_end - t_start) of the pixel's latest event in the window
               (1 = fired at the end of the window, towards 0 = early in it; 0 also where nothing fired)

``mode="counts"`` uses the window [t0, t1) as given. ``mode="balanced"`` (time-count balanced) keeps the slice
density steady: it takes the ``density`` most recent events before t1, whether that reaches back before t0 (slow
motion: the window grows until it holds enough events) or not all of [t0, t1) (fast motion: only the latest
``density``), so slices look alike at any motion speed. ``normalise_slice`` maps counts to [0, 1] for networks.

Files (``load_events`` / ``save_events``): ``.npz`` with 1-D arrays ``t`` (seconds, float), ``x``, ``y`` (pixel
column and row, integers), ``p`` (polarity +1/-1; 0/1 is read as -1/+1); or ``.csv`` with the header ``t,x,y,p``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrt.errors import InputError, ParamError

SLICE_MODES = ("counts", "balanced")


@dataclass
class Events:
    """A batch of events sorted by time: ``t`` float64 seconds, ``x``/``y`` int32 pixel column/row, ``p`` int8 +-1."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray

    @staticmethod
    def empty() -> Events:
        return Events(
            np.zeros(0, np.float64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8)
        )

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        """Join time-ordered batches (each later than the previous) into one."""
        if not parts:
            return Events.empty()
        return Events(*(np.concatenate([getattr(e, k) for e in parts]) for k in ("t", "x", "y", "p")))

    def between(self, t0: float, t1: float) -> Events:
        """The events with t0 <= t < t1."""
        i0, i1 = np.searchsorted(self.t, [t0, t1], side="left")
        return self[i0:i1]

    def __getitem__(self, index: slice) -> Events:
        return Events(self.t[index], self.x[index], self.y[index], self.p[index])


# ---------------------------------------------------------------------------------------------------- simulation
class EventSimulator:
    """Frames in, events out (see the module docstring for the model).

    ``push(frame, t)`` takes a frame (H, W, 3) or (H, W), uint8 or float in [0, 1], numpy or torch, and its time
    in seconds (strictly increasing), and returns the events fired since the previous frame, sorted by time.
    """

    def __init__(
        self,
        c_pos: float = 0.2,
        c_neg: float = 0.2,
        *,
        sigma: float = 0.0,
        refractory: float = 0.0,
        eps: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if not (c_pos > 0 and c_neg > 0):
            raise ParamError(f"contrast thresholds must be positive; got C+={c_pos}, C-={c_neg}")
        if sigma < 0 or refractory < 0 or eps <= 0:
            raise ParamError("sigma and refractory must be >= 0 and eps > 0")
        self.c_pos, self.c_neg, self.sigma, self.refractory, self.eps = c_pos, c_neg, sigma, refractory, eps
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget the scene: the next frame initialises the references again."""
        self._rng = np.random.default_rng(self.seed)
        self._ref: np.ndarray | None = None  # level of the last crossing, per pixel
        self._last: np.ndarray | None = None  # log intensity of the previous frame
        self._last_event: np.ndarray | None = None  # time of the last emitted event (refractory period)
        self._t: float | None = None

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self._ref is None else self._ref.shape  # type: ignore[return-value]

    def log_intensity(self, frame: Any) -> np.ndarray:
        img = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        is_uint8 = img.dtype == np.uint8
        if not is_uint8 and img.size and float(np.max(img)) > 1.0 + 1e-3:
            raise InputError(
                "float frames must hold intensities in [0, 1]; pass uint8 frames for 0..255 values"
            )
        if img.ndim == 3 and img.shape[-1] == 3:
            img = img.astype(np.float64)
            lum = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
        elif img.ndim == 2:
            lum = img.astype(np.float64)
        else:
            raise InputError(f"EventSimulator takes frames (H, W, 3) or (H, W); got shape {img.shape}")
        if is_uint8:
            lum = lum / 255.0
        return np.log(self.eps + lum)

    def push(self, frame: Any, t: float) -> Events:
        level = self.log_intensity(frame)
        t = float(t)
        if self._ref is None:
            self._ref, self._last, self._t = level.copy(), level, t
            self._last_event = np.full(level.shape, -np.inf)
            return Events.empty()
        assert self._last is not None and self._t is not None and self._last_event is not None
        if level.shape != self._ref.shape:
            raise InputError(
                f"frame size changed from {self._ref.shape[::-1]} to {level.shape[::-1]} (w, h); reset() the "
                f"simulator for a new stream"
            )
        if not t > self._t:
            raise InputError(f"frame times must increase: got t={t} after t={self._t}")
        events = self._crossings(self._last, level, self._t, t)
        self._last, self._t = level, t
        return events

    def push_frame(self, frame: Any) -> Events:
        """A ``streamrt.frames.VideoFrame`` at its presentation time (live webcam frames)."""
        return self.push(frame.data, frame.time)

    def _crossings(self, before: np.ndarray, after: np.ndarray, t0: float, t1: float) -> Events:
        ref, last_event = self._ref, self._last_event
        assert ref is not None and last_event is not None
        delta = after - before
        pos = delta > 0
        c = np.where(pos, self.c_pos, self.c_neg)
        if self.sigma > 0:
            c = np.maximum(c + self._rng.normal(0.0, self.sigma, size=c.shape), 0.01)
        sign = np.where(pos, 1.0, -1.0)
        # Crossing k (k = 1, 2, ...) is at ref + sign*k*C; it fires if it lies in the frame pair's interval of
        # levels, (before, after]. Crossings are consecutive, so their number is how far `after` got past ref.
        first = ref + sign * c
        reachable = np.where(pos, (first > before) & (first <= after), (first < before) & (first >= after))
        count = np.where(reachable, np.floor((after - ref) * sign / c), 0).astype(np.int64)
        count = np.maximum(count, 0)
        rows, cols = np.nonzero(count)
        if rows.size == 0:
            return Events.empty()
        n = count[rows, cols]
        s = sign[rows, cols]
        cc = c[rows, cols]
        r0 = ref[rows, cols]
        b0 = before[rows, cols]
        d0 = delta[rows, cols]
        le = last_event[rows, cols]
        ts, xs, ys, ps = [], [], [], []
        span = t1 - t0
        # Loop over the k-th crossing (few iterations), vectorised over the pixels that have one: the refractory
        # period depends on each pixel's previous event, so crossings of one pixel are handled in order.
        for k in range(1, int(n.max()) + 1):
            live = n >= k
            level = r0[live] + s[live] * k * cc[live]
            tk = t0 + (level - b0[live]) / d0[live] * span
            keep = tk - le[live] >= self.refractory
            idx = np.nonzero(live)[0][keep]
            le[idx] = tk[keep]
            ts.append(tk[keep])
            xs.append(cols[idx])
            ys.append(rows[idx])
            ps.append(s[idx])
        ref[rows, cols] = r0 + s * n * cc
        last_event[rows, cols] = le
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return Events(
            np.clip(t[order], t0, t1),  # guards one-ulp rounding at the interval's ends
            np.concatenate(xs)[order].astype(np.int32),
            np.concatenate(ys)[order].astype(np.int32),
            np.concatenate(ps)[order].astype(np.int8),
        )


def simulate_frames(
    frames: Any, fps: float, simulator: EventSimulator | None = None, *, t0: float = 0.0
) -> Events:
    """Events of a clip (T, H, W, 3) at ``fps`` frames per second, frame i at ``t0 + i / fps``."""
    sim = simulator or EventSimulator()
    return Events.concat([sim.push(f, t0 + i / fps) for i, f in enumerate(frames)])


def simulate_video(path: str | Path, simulator: EventSimulator | None = None) -> tuple[Events, int, int]:
    """Events of a video file (read with the project's PyAV reader) at its frames' presentation times:
    (events, width, height)."""
    from transport.files import open_input

    sim = simulator or EventSimulator()
    parts = []
    with open_input(path) as reader:
        for frame in reader.frames(audio=False):
            parts.append(sim.push_frame(frame))
    if sim.shape is None:
        raise InputError(f"{path}: the video has no frames")
    h, w = sim.shape
    return Events.concat(parts), w, h


# ---------------------------------------------------------------------------------------------------- slicing
def slice_events(
    events: Events,
    height: int,
    width: int,
    t0: float,
    t1: float,
    mode: str = "counts",
    *,
    density: int | None = None,
) -> torch.Tensor:
    """One (3, H, W) float32 slice of the events in a window (channels in the module docstring).

    ``counts``: events with t0 <= t < t1. ``balanced``: the ``density`` latest events with t < t1 (needs
    ``density``). Channels 0 and 1 are raw counts, so their sum is the number of events sliced."""
    if mode not in SLICE_MODES:
        raise ParamError(f"unknown slice mode {mode!r}; choose from {', '.join(SLICE_MODES)}")
    if not t1 > t0:
        raise ParamError(f"a slice needs t1 > t0; got [{t0}, {t1})")
    if mode == "counts":
        ev = events.between(t0, t1)
        start = t0
    else:
        if density is None or density < 1:
            raise ParamError("mode='balanced' needs density >= 1 (events per slice)")
        end = int(np.searchsorted(events.t, t1, side="left"))
        ev = events[max(0, end - density) : end]
        start = min(t0, float(ev.t[0])) if len(ev) else t0
    return _accumulate(ev, height, width, start, t1)


def _accumulate(ev: Events, height: int, width: int, t0: float, t1: float) -> torch.Tensor:
    out = torch.zeros(3, height * width, dtype=torch.float32)
    if len(ev):
        if ev.x.min() < 0 or ev.y.min() < 0 or ev.x.max() >= width or ev.y.max() >= height:
            raise InputError(
                f"events lie outside the {width}x{height} frame (x up to {ev.x.max()}, y up to {ev.y.max()}); "
                f"give the sensor's size"
            )
        flat = torch.from_numpy(ev.y.astype(np.int64) * width + ev.x.astype(np.int64))
        polarity = torch.from_numpy(ev.p.astype(np.int64))
        ones = torch.ones(len(ev))
        out[0].index_add_(0, flat[polarity > 0], ones[polarity > 0])
        out[1].index_add_(0, flat[polarity < 0], ones[polarity < 0])
        # Events are time-sorted, so scattering in order leaves each pixel's latest time.
        tn = torch.from_numpy((ev.t - t0) / (t1 - t0)).float().clamp(0, 1)
        out[2].scatter_reduce_(0, flat, tn, reduce="amax")
    return out.view(3, height, width)


def normalise_slice(slice_: torch.Tensor, saturation: float = 4.0) -> torch.Tensor:
    """Counts -> [0, 1] (``min(count / saturation, 1)``); the time surface is already in [0, 1]. Works on
    (..., 3, H, W)."""
    out = slice_.clone()
    out[..., :2, :, :] = (out[..., :2, :, :] / saturation).clamp(max=1.0)
    return out


class EventSlicer:
    """Cuts a live event stream into slices at ``rate_hz`` slices per second.

    ``density``: with ``mode="balanced"`` the number of events per slice (see ``slice_events``); with
    ``mode="counts"`` it is unused. ``push(events)`` adds time-ordered events; ``slices_until(t)`` returns the
    slices of every whole window that ended by ``t``. Events older than the balanced window are dropped, so
    memory stays bounded.
    """

    def __init__(
        self,
        rate_hz: float,
        density: int = 2000,
        *,
        height: int,
        width: int,
        mode: str = "counts",
        start: float = 0.0,
    ) -> None:
        if rate_hz <= 0:
            raise ParamError(f"rate_hz must be positive; got {rate_hz}")
        if mode not in SLICE_MODES:
            raise ParamError(f"unknown slice mode {mode!r}; choose from {', '.join(SLICE_MODES)}")
        if density < 1:
            raise ParamError(f"density must be >= 1 event per slice; got {density}")
        self.height, self.width, self.rate_hz, self.density, self.mode = height, width, rate_hz, density, mode
        self.next_start = start
        self._buffer = Events.empty()

    def push(self, events: Events) -> None:
        if len(events) and len(self._buffer) and events.t[0] < self._buffer.t[-1]:
            raise InputError("events must arrive in time order")
        self._buffer = Events.concat([self._buffer, events])

    def slices_until(self, t: float) -> Iterator[torch.Tensor]:
        step = 1.0 / self.rate_hz
        while self.next_start + step <= t + 1e-12:
            t0, t1 = self.next_start, self.next_start + step
            yield slice_events(self._buffer, self.height, self.width, t0, t1, self.mode, density=self.density)
            self.next_start = t1
            self._trim()

    def _trim(self) -> None:
        cut = int(np.searchsorted(self._buffer.t, self.next_start, side="left"))
        if self.mode == "balanced":
            cut = max(0, cut - self.density)
        self._buffer = self._buffer[cut:]


class FrameSlicer:
    """One normalised slice per video frame, for generators conditioned on events (EvAnimate).

    ``push(events, t)`` adds the events that arrived up to frame time ``t`` and returns the frame's (3, H, W) slice
    in [0, 1]: ``counts`` slices cover (previous frame time, t]; ``balanced`` slices hold the ``density`` latest
    events up to t. Counts are normalised by ``saturation`` (``normalise_slice``). Training and inference use this
    one class, so the condition images match exactly."""

    def __init__(
        self, height: int, width: int, *, mode: str = "balanced", density: int = 600, saturation: float = 3.0
    ) -> None:
        if mode not in SLICE_MODES:
            raise ParamError(f"unknown slice mode {mode!r}; choose from {', '.join(SLICE_MODES)}")
        if density < 1 or saturation <= 0:
            raise ParamError(f"density must be >= 1 and saturation > 0; got {density}, {saturation}")
        self.height, self.width, self.mode, self.density, self.saturation = (
            height,
            width,
            mode,
            density,
            saturation,
        )
        self.reset()

    def reset(self) -> None:
        self._buffer = Events.empty()
        self._t: float | None = None

    def push(self, events: Events, t: float) -> torch.Tensor:
        if self._t is not None and not t > self._t:
            raise InputError(f"frame times must increase: got t={t} after t={self._t}")
        if len(events) and len(self._buffer) and events.t[0] < self._buffer.t[-1]:
            raise InputError("events must arrive in time order")
        self._buffer = Events.concat([self._buffer, events])
        # Window (previous frame time, t]: the simulator stamps a frame pair's events in (t_prev, t].
        end = float(np.nextafter(t, np.inf))
        start = (
            self._t if self._t is not None else (float(self._buffer.t[0]) if len(self._buffer) else t - 1.0)
        )
        start = min(start, end - 1e-9)
        raw = slice_events(self._buffer, self.height, self.width, float(np.nextafter(start, np.inf)), end, self.mode,
                           density=self.density)  # fmt: skip
        self._t = t
        # Keep only what a later slice can still use (bounded memory over long streams).
        cut = int(np.searchsorted(self._buffer.t, end, side="left"))
        if self.mode == "balanced":
            cut = max(0, cut - self.density)
        self._buffer = self._buffer[cut:]
        return normalise_slice(raw, self.saturation)


# ---------------------------------------------------------------------------------------------------- files
def save_events(path: str | Path, events: Events) -> None:
    """Write events as .npz (arrays t, x, y, p) or .csv (header t,x,y,p)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez_compressed(path, t=events.t, x=events.x, y=events.y, p=events.p)
    elif suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "x", "y", "p"])
            for row in zip(
                events.t.tolist(), events.x.tolist(), events.y.tolist(), events.p.tolist(), strict=True
            ):
                w.writerow([repr(row[0]), row[1], row[2], row[3]])
    else:
        raise InputError(f"{path}: save events as .npz or .csv, not {suffix or 'no suffix'}")


def load_events(path: str | Path) -> Events:
    """Read events from .npz (arrays t, x, y, p) or .csv (header t,x,y,p); sorted by time on return."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such event file (give a .npz or .csv file)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        columns = _read_npz(path)
    elif suffix == ".csv":
        columns = _read_csv(path)
    else:
        raise InputError(
            f"{path}: event files are .npz or .csv (see docs/events.md), not {suffix or 'no suffix'}"
        )
    return _check_columns(columns, path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:  # no pickle from files
            missing = [k for k in ("t", "x", "y", "p") if k not in data.files]
            if missing:
                raise InputError(
                    f"{path}: the npz lacks array(s) {', '.join(missing)}; it needs t, x, y, p (has "
                    f"{', '.join(data.files) or 'none'})"
                )
            return {k: np.asarray(data[k]) for k in ("t", "x", "y", "p")}
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable npz of plain arrays ({exc})") from exc


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != ["t", "x", "y", "p"]:
                raise InputError(f"{path}: an event CSV starts with the header t,x,y,p; got {header}")
            rows = [r for r in reader if r and any(cell.strip() for cell in r)]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from exc
    for line, r in enumerate(rows, start=2):
        if len(r) != 4:
            raise InputError(f"{path}: line {line} has {len(r)} fields; expected t,x,y,p")
    try:
        t = np.array([float(r[0]) for r in rows], dtype=np.float64)
        xyp = np.array([[int(r[1]), int(r[2]), int(r[3])] for r in rows], dtype=np.int64).reshape(-1, 3)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}; t is a number of seconds, x, y, p integers") from exc
    return {"t": t, "x": xyp[:, 0], "y": xyp[:, 1], "p": xyp[:, 2]}


def _check_columns(c: dict[str, np.ndarray], path: Path) -> Events:
    n = c["t"].shape
    if any(v.ndim != 1 for v in c.values()) or any(v.shape != n for v in c.values()):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in c.items())
        raise InputError(f"{path}: t, x, y, p must be 1-D arrays of one length; got {shapes}")
    for k in ("x", "y", "p"):
        if not (np.issubdtype(c[k].dtype, np.integer) or np.issubdtype(c[k].dtype, np.bool_)):
            if not np.all(np.mod(c[k], 1) == 0):
                raise InputError(f"{path}: {k} must hold integers")
    t = c["t"].astype(np.float64)
    if not np.isfinite(t).all():
        raise InputError(f"{path}: t holds NaN or infinite times")
    x, y, p = (c[k].astype(np.int64) for k in ("x", "y", "p"))
    if x.size and (x.min() < 0 or y.min() < 0):
        raise InputError(f"{path}: pixel coordinates x, y must be >= 0")
    values = set(np.unique(p).tolist())
    if values <= {0, 1} and 0 in values:
        p = np.where(p > 0, 1, -1)  # the 0/1 polarity convention of several datasets
    elif not values <= {-1, 1}:
        raise InputError(f"{path}: polarity p must be +1/-1 (or 0/1); got values {sorted(values)[:5]}")
    order = np.argsort(t, kind="stable")
    return Events(t[order], x[order].astype(np.int32), y[order].astype(np.int32), p[order].astype(np.int8))


def expected_events(delta_log: float, c: float) -> int:
    """Events one pixel fires for a log-intensity change of ``delta_log`` starting at its reference (no noise)."""
    return int(math.floor(abs(delta_log) / c + 1e-12))
