"""Head-related impulse responses from OpenAL Soft's ``.mhr`` files (Debian's ``libopenal-data``).

The file format is OpenAL Soft's "MinPHR02" (read from its loader, ``LoadHrtf02``), all little-endian::

    magic "MinPHR02" | rate u32 | sample type u8 (0: s16, 1: s24) | channel type u8 (0: left only, 1: left+right)
    | ir size u8 | field count u8
    per field: distance u16 (mm) | elevation count u8 | azimuth count u8 per elevation
    coefficients: per IR (fields, then elevations from -90 deg up, then azimuths), ir-size samples (x2 if stereo)
    delays: per IR one u8 (x2 if stereo), whole samples

Left-only sets hold the left ear; the right ear of azimuth index ``a`` is the left ear of index ``(n - a) % n`` (the
head is taken as symmetric, as OpenAL Soft mirrors it). The impulse responses are minimum phase; the delays carry the
interaural time difference.

Angles here use the project's frame: the listener at the origin facing +x, +y to the left, +z up; azimuth is
measured from +x towards +y (a source on the left has azimuth +90 deg), elevation from the horizontal plane up.
OpenAL's azimuth index runs clockwise seen from above (towards the right ear), which ``HrtfSet`` converts.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from streamrt.errors import ModelLoadError

DEFAULT_MHR = Path("/usr/share/openal/hrtf/default-48000.mhr")
_MAGIC = b"MinPHR02"


@dataclass(frozen=True)
class HrtfSet:
    """One field of a left-only or stereo HRTF set: impulse responses and onset delays per direction."""

    sample_rate: int
    distance: float  # metres from the head centre at which the set was measured
    az_counts: tuple[int, ...]  # azimuths per elevation, elevations from -90 to +90 deg
    left: np.ndarray  # (n_ir, ir_size) float32, OpenAL's IR order
    right: np.ndarray  # (n_ir, ir_size)
    delay_left: np.ndarray  # (n_ir,) int samples
    delay_right: np.ndarray  # (n_ir,)

    @property
    def ir_size(self) -> int:
        return int(self.left.shape[1])

    @property
    def max_delay(self) -> int:
        return int(max(self.delay_left.max(), self.delay_right.max()))

    def index(self, azimuth: float, elevation: float) -> int:
        """IR index of the measured direction nearest to (azimuth, elevation) in radians (project frame)."""
        n_ev = len(self.az_counts)
        ev = int(round((elevation + math.pi / 2) / math.pi * (n_ev - 1)))
        ev = min(max(ev, 0), n_ev - 1)
        n_az = self.az_counts[ev]
        # OpenAL counts azimuth clockwise (towards the right); ours is counter-clockwise (towards +y, the left).
        az = int(round((-azimuth % (2 * math.pi)) / (2 * math.pi) * n_az)) % n_az
        return sum(self.az_counts[:ev]) + az

    def hrir(self, azimuth: float, elevation: float) -> torch.Tensor:
        """(2, ir_size + max_delay) left/right impulse responses with the onset delays applied."""
        i = self.index(azimuth, elevation)
        out = np.zeros((2, self.ir_size + self.max_delay), dtype=np.float32)
        dl, dr = int(self.delay_left[i]), int(self.delay_right[i])
        out[0, dl : dl + self.ir_size] = self.left[i]
        out[1, dr : dr + self.ir_size] = self.right[i]
        return torch.from_numpy(out)

    def hrir_towards(self, direction: torch.Tensor | np.ndarray) -> torch.Tensor:
        """HRIR pair for a direction vector (x, y, z) in the listener's frame (any length > 0)."""
        x, y, z = (float(v) for v in direction)
        azimuth = math.atan2(y, x)
        elevation = math.atan2(z, math.hypot(x, y))
        return self.hrir(azimuth, elevation)


def parse_mhr(data: bytes, *, source: str = "<bytes>") -> HrtfSet:
    """Parse a MinPHR02 file (the first, nearest field when there are several)."""

    def fail(why: str) -> ModelLoadError:
        return ModelLoadError(f"{source} is not a usable OpenAL Soft MinPHR02 HRTF file: {why}")

    if data[:8] != _MAGIC:
        raise fail(f"magic {data[:8]!r}, expected {_MAGIC!r} (other .mhr versions are not supported)")
    pos = 8
    try:
        rate, sample_type, channel_type, ir_size, field_count = struct.unpack_from("<IBBBB", data, pos)
        pos += 8
        if sample_type not in (0, 1):
            raise fail(f"sample type {sample_type}")
        if channel_type not in (0, 1):
            raise fail(f"channel type {channel_type}")
        if not 8 <= ir_size <= 512 or field_count < 1:
            raise fail(f"ir size {ir_size}, {field_count} fields")
        fields: list[tuple[float, tuple[int, ...]]] = []
        for _ in range(field_count):
            distance_mm, ev_count = struct.unpack_from("<HB", data, pos)
            pos += 3
            az = tuple(data[pos : pos + ev_count])
            pos += ev_count
            if len(az) != ev_count or min(az) < 1:
                raise fail("truncated or empty azimuth table")
            fields.append((distance_mm / 1000.0, az))
    except struct.error as exc:
        raise fail("truncated header") from exc
    n_ir = sum(sum(az) for _, az in fields)
    ears = 2 if channel_type == 1 else 1
    width = 2 if sample_type == 0 else 3
    coeff_bytes = n_ir * ir_size * ears * width
    if len(data) != pos + coeff_bytes + n_ir * ears:
        raise fail(f"{len(data)} bytes, expected {pos + coeff_bytes + n_ir * ears} for {n_ir} responses")
    raw = np.frombuffer(data, dtype=np.uint8, count=coeff_bytes, offset=pos)
    if width == 2:
        values = raw.view("<i2").astype(np.float32) / 32768.0
    else:
        b = raw.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        values = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / 8388608.0
    coeffs = values.reshape(n_ir, ir_size, ears)
    delays = (
        np.frombuffer(data, dtype=np.uint8, offset=pos + coeff_bytes).reshape(n_ir, ears).astype(np.int64)
    )
    # The first field only: the nearest one in a MinPHR02 file (fields are stored nearest first).
    distance, az_counts = fields[0]
    n_first = sum(az_counts)
    left = coeffs[:n_first, :, 0].copy()
    delay_left = delays[:n_first, 0].copy()
    if ears == 2:
        right = coeffs[:n_first, :, 1].copy()
        delay_right = delays[:n_first, 1].copy()
    else:
        mirror = _mirror_index(az_counts)
        right = left[mirror].copy()
        delay_right = delay_left[mirror].copy()
    return HrtfSet(rate, distance, az_counts, left, right, delay_left, delay_right)


def _mirror_index(az_counts: tuple[int, ...]) -> np.ndarray:
    """For each IR, the IR of the mirror direction (azimuth reflected through the median plane)."""
    out = []
    base = 0
    for n in az_counts:
        out += [base + (n - a) % n for a in range(n)]
        base += n
    return np.asarray(out)


@lru_cache(maxsize=4)
def load_mhr(path: str | Path = DEFAULT_MHR) -> HrtfSet:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"HRTF file {path} not found; install Debian's libopenal-data (apt-get install libopenal-data) "
            "or pass the path of an OpenAL Soft .mhr file"
        )
    return parse_mhr(path.read_bytes(), source=str(path))
