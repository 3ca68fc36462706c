"""Procedural talking faces: portraits of characters that can open their mouth, blink and move their head.

X-Streamer's Actor learns to animate one portrait with its own speech, so its training set needs many characters
(identity) and exact control of what changes over time (state). A character (``FaceIdentity``) is a cartoon head and
shoulders: skin tone, hair colour and style (short, long, bun, bald, curly), eye colour, eyebrow shape, face
width/height, eye spacing, nose, lip colour, a patterned shirt, a patterned background (optionally a photo shipped by
scikit-image), optional glasses and beard, and a texture seed for skin/hair/shirt noise. A frame's ``FaceState`` is
mouth opening and rounding, blink, head shift, roll and a small yaw.

Drawing is vectorised over all frames in torch on a coordinate grid: every part is a signed-distance shape whose
edge is anti-aliased by a one-pixel linear ramp (cheaper than supersampling and as smooth), painted back to front.
Head parts are drawn in head-local coordinates (shift, roll, yaw applied to the grid), so their textures move with
the head. The mouth opens by a lip gap with a dark inside, upper teeth and a tongue, and the jaw drops with it (the
chin moves down), so opening is visible at 128 px and still changes the 16x16 latent of the frame autoencoder.

Held-out characters: an identity's (hair style, hair colour, shirt colour, shirt pattern) combination is hashed
(CRC-32); combinations with hash % 5 == 0 are held out (``split_of``), the rest are for training. The two splits
therefore never share a combination, so a held-out character never appears in training, whatever the continuous
attributes.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from streamrt.errors import ParamError

log = logging.getLogger(__name__)

Split = Literal["train", "held_out"]
RGB = tuple[float, float, float]


def _rgb(r: int, g: int, b: int) -> RGB:
    return (r / 255, g / 255, b / 255)


SKIN: tuple[RGB, ...] = tuple(
    _rgb(*c)
    for c in (
        (255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90),
        (161, 102, 66), (120, 75, 48), (88, 55, 36), (236, 188, 180),
    )
)  # fmt: skip
HAIR: dict[str, RGB] = {
    "black": _rgb(25, 22, 22),
    "dark_brown": _rgb(60, 38, 25),
    "brown": _rgb(110, 70, 40),
    "auburn": _rgb(140, 60, 30),
    "blonde": _rgb(225, 190, 110),
    "grey": _rgb(160, 160, 165),
    "ginger": _rgb(200, 90, 35),
    "blue": _rgb(60, 90, 200),
}
EYES: dict[str, RGB] = {
    "brown": _rgb(100, 60, 30),
    "blue": _rgb(60, 120, 200),
    "green": _rgb(60, 140, 80),
    "grey": _rgb(120, 130, 140),
    "hazel": _rgb(140, 110, 50),
}
SHIRT: dict[str, RGB] = {
    "red": _rgb(200, 40, 45),
    "orange": _rgb(235, 130, 30),
    "yellow": _rgb(230, 205, 50),
    "green": _rgb(50, 160, 70),
    "teal": _rgb(30, 150, 150),
    "blue": _rgb(45, 80, 200),
    "purple": _rgb(120, 60, 170),
    "pink": _rgb(230, 120, 170),
    "white": _rgb(235, 235, 235),
    "black": _rgb(35, 35, 40),
}
HAIR_STYLES = ("short", "long", "bun", "bald", "curly")
BROWS = ("flat", "arched", "angled", "thick")
NOSES = ("dots", "line", "round")
SHIRT_PATTERNS = ("plain", "stripes", "checks", "dots")
BACKGROUNDS = ("plain", "gradient", "stripes", "dots", "bokeh", "photo")
# Photos scikit-image ships in its wheel (no download); used as backgrounds when scikit-image is importable,
# otherwise "photo" falls back to a gradient. None of them shows a face.
PHOTOS = ("coffee", "rocket", "brick", "grass", "gravel", "immunohistochemistry", "hubble_deep_field")
HELD_OUT_MODULUS = 5


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that makes a character look like itself (colours are RGB in [0, 1])."""

    skin: RGB
    hair_style: str  # one of HAIR_STYLES
    hair_colour: str  # a HAIR name
    eye_colour: str  # an EYES name
    brow: str  # one of BROWS
    face_w: float  # face width relative to the average (0.85 .. 1.12)
    face_h: float  # face height relative to the average (0.92 .. 1.08)
    eye_spacing: float  # half the distance between the eyes, in frame half-widths (0.13 .. 0.17)
    nose: str  # one of NOSES
    lip: RGB
    shirt_colour: str  # a SHIRT name
    shirt_accent: str  # a SHIRT name (pattern colour)
    shirt_pattern: str  # one of SHIRT_PATTERNS
    background: RGB
    background2: RGB
    background_pattern: str  # one of BACKGROUNDS
    glasses: bool = False
    beard: bool = False
    texture_seed: int = 0


def split_of(identity: FaceIdentity) -> Split:
    """The split a character belongs to: a CRC-32 of its (hair style, hair colour, shirt colour, shirt pattern)."""
    key = f"{identity.hair_style}|{identity.hair_colour}|{identity.shirt_colour}|{identity.shirt_pattern}"
    return "held_out" if zlib.crc32(key.encode()) % HELD_OUT_MODULUS == 0 else "train"


def _jitter(rng: random.Random, c: RGB, amount: float) -> RGB:
    return tuple(min(1.0, max(0.0, v + rng.uniform(-amount, amount))) for v in c)  # type: ignore[return-value]


def sample_identity(rng: random.Random, split: Split = "train") -> FaceIdentity:
    """A random character of ``split`` (rejection-sampled on the combination rule of ``split_of``)."""
    if split not in ("train", "held_out"):
        raise ParamError(f"split must be 'train' or 'held_out'; got {split!r}")
    while True:
        skin = _jitter(rng, rng.choice(SKIN), 0.03)
        shirt = rng.choice(list(SHIRT))
        lip_base = (skin[0] * 0.85 + 0.1, skin[1] * 0.55, skin[2] * 0.6)
        if rng.random() < 0.3:  # lipstick
            lip_base = rng.choice((_rgb(180, 30, 50), _rgb(150, 40, 90), _rgb(200, 80, 80)))
        bg = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9))
        ident = FaceIdentity(
            skin=skin,
            hair_style=rng.choice(HAIR_STYLES),
            hair_colour=rng.choice(list(HAIR)),
            eye_colour=rng.choice(list(EYES)),
            brow=rng.choice(BROWS),
            face_w=rng.uniform(0.85, 1.12),
            face_h=rng.uniform(0.92, 1.08),
            eye_spacing=rng.uniform(0.13, 0.17),
            nose=rng.choice(NOSES),
            lip=_jitter(rng, lip_base, 0.03),  # type: ignore[arg-type]
            shirt_colour=shirt,
            shirt_accent=rng.choice([c for c in SHIRT if c != shirt]),
            shirt_pattern=rng.choice(SHIRT_PATTERNS),
            background=bg,
            background2=_jitter(rng, bg, 0.35),
            background_pattern=rng.choice(BACKGROUNDS),
            glasses=rng.random() < 0.25,
            beard=rng.random() < 0.2,
            texture_seed=rng.randrange(2**31),
        )
        if split_of(ident) == split:
            return ident


@dataclass(frozen=True)
class FaceState:
    """Everything that changes over time."""

    mouth_open: float = 0.0  # 0 closed .. 1 wide open (jaw drop + lip gap; teeth/tongue/dark mouth inside)
    mouth_round: float = 0.0  # 0 spread .. 1 rounded ("o", "u": narrower, rounder lips)
    blink: float = 0.0  # 0 eyes open .. 1 closed
    dx: float = 0.0  # head shift in pixels (of a 128 frame)
    dy: float = 0.0
    tilt: float = 0.0  # head roll in radians (small, |tilt| < 0.2)
    yaw: float = 0.0  # -1..1 small turn (features shift sideways, face narrows slightly)


NEUTRAL = FaceState()

# Geometry, in frame half-widths (the frame spans -1..1 on both axes).
HEAD_Y = -0.12  # head centre
HEAD_SCALE = 1.3  # head-local units -> frame units
HEAD_A, HEAD_B = 0.36, 0.46  # face half-width and half-height at face_w = face_h = 1 (head-local)
SHOULDER_Y = 0.62  # top of the shoulders
EYE_V = -0.06  # eye line (head-local, times face_h)
MOUTH_V = 0.27  # upper lip line (head-local, times face_h)
JAW_DROP = 0.3  # the face below JAW_PIVOT stretches by this fraction at full opening
JAW_PIVOT = 0.1  # head-local v where the jaw's stretch starts (under the nose)
MOUTH_GAP = 0.075  # the lip gap's half-height at full opening
YAW_SHIFT = 0.09  # feature shift at yaw 1
YAW_NARROW = 0.08  # face narrowing at |yaw| 1


def _cover(d: torch.Tensor, px: float) -> torch.Tensor:
    """Coverage of a shape from its signed distance (negative inside): a one-pixel anti-aliasing ramp."""
    return (0.5 - d / px).clamp_(0.0, 1.0)


def _ellipse(u: torch.Tensor, v: torch.Tensor, a, b) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse centred at 0 (first-order: f / |grad f|)."""
    qu, qv = u / a, v / b
    q = torch.sqrt(qu * qu + qv * qv + 1e-12)
    grad = torch.sqrt((qu / a) ** 2 + (qv / b) ** 2 + 1e-12) / q
    # The first-order estimate undershoots far along a flat ellipse's axis (a closed mouth's gap would smear
    # sideways); the distance to the bounding box is a lower bound that fixes it.
    return torch.maximum((q - 1.0) / grad, torch.maximum(u.abs() - a, v.abs() - b))


def _paint(img: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> None:
    """img (F,3,S,S) <- colour over img with coverage alpha (F,S,S); colour (3,) or broadcastable to img."""
    if colour.ndim == 1:
        colour = colour.view(1, 3, 1, 1)
    img.add_(alpha.unsqueeze(1) * (colour - img))


def _t(c: RGB) -> torch.Tensor:
    return torch.tensor(c, dtype=torch.float32)


def _noise(u: torch.Tensor, v: torch.Tensor, rng: random.Random, freq: float, terms: int = 3) -> torch.Tensor:
    """Smooth pseudo-random texture in [-1, 1]: a sum of random plane waves (cheap and moves with its coordinates)."""
    out = torch.zeros_like(u)
    for _ in range(terms):
        ang = rng.uniform(0, math.pi)
        f = freq * rng.uniform(0.6, 1.4)
        out = out + torch.sin(f * (math.cos(ang) * u + math.sin(ang) * v) + rng.uniform(0, 2 * math.pi))
    return out / terms


@functools.lru_cache(maxsize=16)
def _photo(name: str, size: int) -> torch.Tensor | None:
    try:
        import skimage.data
    except ImportError:
        return None
    try:
        im = torch.from_numpy(getattr(skimage.data, name)().copy()).float() / 255
    except Exception:  # an image that needs a download, or an older scikit-image without it
        log.debug("skimage.data.%s unavailable", name, exc_info=True)
        return None
    im = im[..., None].expand(*im.shape, 3) if im.ndim == 2 else im[..., :3]
    h, w = im.shape[:2]
    s = min(h, w)
    im = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s].permute(2, 0, 1)[None]
    return F.interpolate(im, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


@functools.lru_cache(maxsize=64)
def _background(identity: FaceIdentity, size: int) -> torch.Tensor:
    """The static backdrop (3, S, S) of a character."""
    rng = random.Random(identity.texture_seed * 7 + 1)
    c = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    y, x = c[:, None].expand(size, size), c[None, :].expand(size, size)
    c1, c2 = _t(identity.background).view(3, 1, 1), _t(identity.background2).view(3, 1, 1)
    pattern = identity.background_pattern
    if pattern == "photo":
        photo = _photo(PHOTOS[identity.texture_seed % len(PHOTOS)], size)
        if photo is not None:
            # Tinted and softened so the character stands out from it.
            return (0.55 * photo + 0.45 * c1).clamp(0, 1)
        pattern = "gradient"
    if pattern == "plain":
        w = 0.5 + 0.5 * 0.15 * _noise(x, y, rng, 3.0)
        return c1 * (0.95 + 0.1 * w)
    if pattern == "gradient":
        return torch.lerp(c1, c2, ((y + 1) / 2)[None])
    if pattern == "stripes":
        ang = rng.uniform(0, math.pi)
        s = torch.sin(rng.uniform(8, 16) * (math.cos(ang) * x + math.sin(ang) * y))
        return torch.lerp(c1, c2, (s * 3).clamp(-1, 1).add(1).div(2)[None])
    if pattern == "dots":
        f = rng.uniform(5, 9)
        d = torch.sqrt(torch.sin(f * x) ** 2 + torch.sin(f * y) ** 2)
        return torch.lerp(c1, c2, ((0.5 - d) * 6).clamp(0, 1)[None])
    # bokeh: a few soft discs
    img = c1.expand(3, size, size).clone()
    for _ in range(8):
        cx, cy, r = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.08, 0.25)
        a = (1 - torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) / r).clamp(0, 1) * 0.6
        img = torch.lerp(img, c2, a[None])
    return img


def _states_tensor(states: Sequence[FaceState]) -> dict[str, torch.Tensor]:
    for s in states:
        if not isinstance(s, FaceState):
            raise ParamError(f"states must be FaceState values; got {type(s).__name__}")
    names = ("mouth_open", "mouth_round", "blink", "dx", "dy", "tilt", "yaw")
    t = torch.tensor([[getattr(s, n) for n in names] for s in states], dtype=torch.float32)
    out = {n: t[:, i].view(-1, 1, 1) for i, n in enumerate(names)}
    for n in ("mouth_open", "mouth_round", "blink"):
        out[n] = out[n].clamp(0, 1)
    out["yaw"] = out["yaw"].clamp(-1, 1)
    return out


class _Head:
    """The head's pose per frame: maps between frame coordinates and head-local (u, v) coordinates.

    Frame point = head centre + HEAD_SCALE * R(tilt) @ (u * narrow, v); ``uf`` is ``u`` with the yaw's feature shift
    removed (eyes, nose and mouth slide sideways when the head turns), ``vl`` the face below the nose un-stretched by
    the jaw's drop.
    """

    def __init__(self, p: dict[str, torch.Tensor]) -> None:
        self.hx, self.hy = p["dx"] * (2 / 128), HEAD_Y + p["dy"] * (2 / 128)
        self.ct, self.st = torch.cos(p["tilt"]), torch.sin(p["tilt"])
        self.yaw = p["yaw"]
        self.narrow = 1 - YAW_NARROW * self.yaw.abs()
        self.stretch = 1 + JAW_DROP * p["mouth_open"]
        self.max_tilt = float(p["tilt"].abs().max())

    def local(self, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xr, yr = X - self.hx, Y - self.hy
        u = (self.ct * xr + self.st * yr) / (HEAD_SCALE * self.narrow)
        v = (-self.st * xr + self.ct * yr) / HEAD_SCALE
        uf = u - YAW_SHIFT * self.yaw
        vl = torch.where(v > JAW_PIVOT, JAW_PIVOT + (v - JAW_PIVOT) / self.stretch, v)
        return u, v, uf, vl

    def box(
        self, uf: float, v_lower: float, half_w: float, half_h: float
    ) -> tuple[float, float, float, float]:
        """Frame-unit bounds over all frames of a head-local box (centre (uf, v), half sizes), any tilt/yaw."""
        v = self.stretch * (v_lower - JAW_PIVOT) + JAW_PIVOT
        if v_lower <= JAW_PIVOT:  # above the jaw's pivot nothing stretches
            v = torch.full_like(self.stretch, v_lower)
        u = (uf + YAW_SHIFT * self.yaw) * self.narrow
        x = self.hx + HEAD_SCALE * (self.ct * u - self.st * v)
        y = self.hy + HEAD_SCALE * (self.st * u + self.ct * v)
        c, s = math.cos(self.max_tilt), math.sin(self.max_tilt)
        stretch = float(self.stretch.max())
        ew = HEAD_SCALE * (half_w * c + half_h * stretch * s)
        eh = HEAD_SCALE * (half_w * s + half_h * stretch * c)
        return float(x.min()) - ew, float(x.max()) + ew, float(y.min()) - eh, float(y.max()) + eh


def _crop(img: torch.Tensor, coords: torch.Tensor, box: tuple[float, float, float, float]):
    """The part of ``img`` (a view) and its coordinates inside a frame-unit box (x0, x1, y0, y1)."""
    size = coords.shape[0]
    i0 = max(0, math.floor((box[0] + 1) / 2 * size) - 1)
    i1 = min(size, math.ceil((box[1] + 1) / 2 * size) + 1)
    j0 = max(0, math.floor((box[2] + 1) / 2 * size) - 1)
    j1 = min(size, math.ceil((box[3] + 1) / 2 * size) + 1)
    i1, j1 = max(i1, i0 + 1), max(j1, j0 + 1)
    return img[..., j0:j1, i0:i1], coords[i0:i1].view(1, 1, -1), coords[j0:j1].view(1, -1, 1)


def render_faces(identity: FaceIdentity, states: Sequence[FaceState], size: int = 128) -> torch.Tensor:
    """Frames (F, 3, S, S) in [0, 1] of ``identity`` in each of ``states``.

    Each part is computed only inside its bounding box over all frames (eyes and mouth are small), which is what
    keeps a batch of frames at a few milliseconds each.
    """
    if size < 16:
        raise ParamError(f"size must be at least 16 px; got {size}")
    if len(states) == 0:
        return torch.zeros(0, 3, size, size)
    p = _states_tensor(states)
    n = len(states)
    px = 2.0 / size
    lpx = px / HEAD_SCALE  # one pixel in head-local units
    coords = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    rng = random.Random(identity.texture_seed)
    skin, hair = _t(identity.skin), _t(HAIR[identity.hair_colour])
    fa, fb = HEAD_A * identity.face_w, HEAD_B * identity.face_h
    head = _Head(p)
    full = _background(identity, size).unsqueeze(0).repeat(n, 1, 1, 1)

    # ---- body: neck and shoulders follow half of the head's shift (the head moves on the neck)
    img, X, Y = _crop(full, coords, (-1, 1, SHOULDER_Y - 0.45, 1))
    bx = X - 0.5 * head.hx
    by = Y - 0.5 * (head.hy - HEAD_Y)
    neck = torch.maximum(bx.abs() - 0.14 * identity.face_w, head.hy + 0.1 - Y)
    _paint(img, _cover(neck, px), skin * 0.82)
    shirt_d = _ellipse(bx, by - SHOULDER_Y - 0.5, 0.9, 0.5)
    shirt_col = _t(SHIRT[identity.shirt_colour]).view(1, 3, 1, 1)
    accent = _t(SHIRT[identity.shirt_accent]).view(1, 3, 1, 1)
    pat = identity.shirt_pattern
    if pat != "plain":
        f = rng.uniform(14, 22)
        if pat == "stripes":
            m = (torch.sin(f * by) * 3).clamp(-1, 1).add(1).div(2)
        elif pat == "checks":
            m = ((torch.sin(f * bx) * torch.sin(f * by)) * 4).clamp(-1, 1).add(1).div(2) * 0.7
        else:
            m = ((0.45 - torch.sqrt(torch.sin(f * bx) ** 2 + torch.sin(f * by) ** 2)) * 5).clamp(0, 1)
        shirt_col = shirt_col + (accent - shirt_col) * m.unsqueeze(1)
    shirt_col = shirt_col * (1 + 0.06 * _noise(bx, by, rng, 40.0)).unsqueeze(1)
    shirt_a = _cover(shirt_d, px)
    _paint(img, shirt_a, shirt_col)
    collar = torch.maximum(bx.abs() * 1.3 + (by - SHOULDER_Y - 0.2), -shirt_d - 0.5)  # a skin-coloured V neck
    _paint(img, _cover(collar, px) * shirt_a, skin * 0.82)

    # ---- head: hair behind, ears, face, beard, hair in front
    style = identity.hair_style
    img, X, Y = _crop(full, coords, head.box(0.0, -0.08, fa * 1.3 + 0.06, fb * 1.4))
    u, v, uf, vl = head.local(X, Y)
    strands = 1 + 0.18 * torch.sin(70 * u + 6 * _noise(u, v, rng, 6.0))
    hair_tex = hair.view(1, 3, 1, 1) * strands.unsqueeze(1)
    hair_tex = hair_tex + 0.06 * (1 - hair.view(1, 3, 1, 1)) * (-v).clamp(0, 1).unsqueeze(1)  # sheen on top
    if style == "long":
        back = torch.maximum(_ellipse(u, v + 0.05, fa * 1.22, fb * 1.15), v - 0.5)
        _paint(img, _cover(back, lpx), hair_tex * 0.85)
    if style == "bun":
        _paint(img, _cover(_ellipse(u, v + fb * 1.08, 0.13, 0.1), lpx), hair_tex)
    for side in (-1.0, 1.0):  # ears slide opposite to the features when the head turns
        ear = _ellipse(u - side * fa * 0.98 + 0.04 * head.yaw, v - 0.02, 0.06, 0.1)
        _paint(img, _cover(ear, lpx), skin * 0.9)
    taper = 1 - 0.22 * (vl / fb).clamp(0, 1) ** 2  # a narrower jaw below the centre line
    face_d = _ellipse(u / taper, vl, fa, fb)
    shade = 1 - 0.1 * ((u / fa) ** 2 + (vl / fb) ** 2).clamp(0, 1.2) + 0.03 * _noise(u, v, rng, 30.0)
    _paint(img, _cover(face_d, lpx), skin.view(1, 3, 1, 1) * shade.unsqueeze(1))
    if identity.beard:
        beard = torch.maximum(face_d, MOUTH_V * identity.face_h - 0.06 - vl)
        _paint(img, _cover(beard, lpx) * 0.92, hair_tex)
    if style == "bald":  # a fringe at the sides and back, above the ears
        sides = torch.maximum(_ellipse(u, v, fa * 1.05, fb * 1.01), 0.75 * fa - u.abs())
        sides = torch.maximum(sides, (v + 0.1).abs() - 0.13)
        _paint(img, _cover(sides, lpx) * 0.9, hair_tex)
    else:  # a cap above a hairline that drops at the sides (sideburns)
        vol = 1.14 if style == "curly" else 1.07
        cap_outer = _ellipse(u, v + 0.03, fa * vol, fb * vol)
        if style == "curly":
            cap_outer = cap_outer - 0.025 * torch.sin(14 * torch.atan2(v, u))
        hairline = -0.52 * fb + 0.75 * fb * (uf / fa) ** 2 + 0.03 * torch.sin(9 * uf + rng.uniform(0, 6))
        cap = torch.maximum(cap_outer, v - hairline.clamp(max=0.05))
        _paint(img, _cover(cap, lpx), hair_tex)

    # ---- eyes, eyebrows, glasses
    ev, es = EYE_V * identity.face_h, identity.eye_spacing
    ea, eb = 0.062, 0.04
    img, X, Y = _crop(full, coords, head.box(0.0, ev - 0.035, es + ea * 1.5 + 0.02, 0.13))
    u, v, uf, vl = head.local(X, Y)
    eye_col = _t(EYES[identity.eye_colour])
    dark = torch.zeros(3) + 0.1
    lid_y = -eb * 1.15 + p["blink"] * eb * 2.3
    gaze = 0.25 * YAW_SHIFT * head.yaw
    for side in (-1.0, 1.0):
        eu, evv = uf - side * es, v - ev
        white = _ellipse(eu, evv, ea, eb)
        wa = _cover(white, lpx)
        _paint(img, wa, torch.tensor([0.96, 0.96, 0.94]))
        r = torch.sqrt((eu - gaze) ** 2 + evv**2)
        _paint(img, _cover(r - 0.03, lpx) * wa, eye_col)
        _paint(img, _cover(r - 0.013, lpx) * wa, torch.zeros(3) + 0.05)
        glint = torch.sqrt((eu - gaze - 0.01) ** 2 + (evv + 0.012) ** 2) - 0.006
        _paint(img, _cover(glint, lpx) * wa, torch.ones(3))
        # the lid comes down from the top; its edge is a dark lash line
        lid_a = _cover(_ellipse(eu, evv, ea + lpx, eb + lpx), lpx) * _cover(evv - lid_y, lpx)
        _paint(img, lid_a, skin * 0.88)
        _paint(img, _cover(torch.maximum(white.abs() - 0.006, evv + eb * 0.2), lpx), dark)
        _paint(img, _cover(torch.maximum((evv - lid_y).abs() - 0.007, white - 0.004), lpx), dark)
        bu = eu / 0.085
        arch = {"flat": 0.0, "arched": 0.03, "angled": 0.0, "thick": 0.015}[identity.brow]
        slant = 0.03 * side * bu if identity.brow == "angled" else 0.0
        thick = 0.02 if identity.brow == "thick" else 0.012
        curve = ev - 0.085 - arch * (1 - bu**2) + slant
        _paint(img, _cover(torch.maximum((v - curve).abs() - thick, bu.abs() - 1.0), lpx), hair * 0.8)
        if identity.glasses:
            ring = _ellipse(eu, evv, ea * 1.45, eb * 1.9).abs() - 0.008
            _paint(img, _cover(ring, lpx), torch.tensor([0.12, 0.1, 0.1]))
    if identity.glasses:
        bridge = torch.maximum((v - ev + 0.02).abs() - 0.007, uf.abs() - (es - ea * 1.45))
        _paint(img, _cover(bridge, lpx), torch.tensor([0.12, 0.1, 0.1]))

    # ---- nose
    nv = 0.13 * identity.face_h
    img, X, Y = _crop(full, coords, head.box(0.0, nv - 0.05, 0.07, 0.11))
    u, v, uf, vl = head.local(X, Y)
    if identity.nose == "round":
        _paint(img, _cover(_ellipse(uf, v - nv, 0.045, 0.035), lpx) * 0.6, skin * 0.8)
        _paint(img, _cover(_ellipse(uf + 0.012, v - nv + 0.012, 0.012, 0.009), lpx) * 0.5, torch.ones(3))
    elif identity.nose == "line":
        line = torch.maximum((uf + 0.01).abs() - 0.006, (v - nv * 0.55).abs() - nv * 0.45)
        _paint(img, _cover(line, lpx) * 0.5, skin * 0.7)
        tip = torch.maximum(_ellipse(uf, v - nv, 0.04, 0.02).abs() - 0.005, nv - v)
        _paint(img, _cover(tip, lpx), skin * 0.7)
    else:
        for side in (-1.0, 1.0):
            _paint(img, _cover(_ellipse(uf - side * 0.02, v - nv, 0.012, 0.008), lpx), skin * 0.55)

    # ---- mouth: lips around a gap that opens downwards (the jaw drops); narrower and rounder for "o"/"u"
    mv = MOUTH_V * identity.face_h
    img, X, Y = _crop(full, coords, head.box(0.0, mv + MOUTH_GAP * 0.6, 0.18 * identity.face_w, 0.14))
    u, v, uf, vl = head.local(X, Y)
    op, rnd = p["mouth_open"], p["mouth_round"]
    mw = 0.125 * identity.face_w * (1 - 0.35 * rnd) * (1 + 0.08 * op)
    gap = MOUTH_GAP * op * (1 + 0.25 * rnd)
    mu, mvv = uf, vl - (mv + 0.5 * gap)  # centred on the gap
    lip = _t(identity.lip)
    lips = _ellipse(mu, mvv, mw + 0.012, gap + 0.028)
    _paint(img, _cover(lips, lpx), lip.view(1, 3, 1, 1) * (1 + 0.05 * torch.tanh(mvv * 40)).unsqueeze(1))
    inner = _ellipse(mu, mvv, mw * 0.92, gap + 1e-3)
    _paint(img, _cover(inner, lpx), torch.tensor([0.25, 0.05, 0.07]))
    teeth = torch.maximum(inner, mvv + gap - 0.022 * (0.4 + 0.6 * op))
    _paint(img, _cover(teeth, lpx), torch.tensor([0.95, 0.94, 0.9]))
    tongue = torch.maximum(_ellipse(mu, mvv - gap, mw * 0.6, 0.03 + 0.4 * gap), inner)
    _paint(img, _cover(tongue, lpx), torch.tensor([0.8, 0.35, 0.4]))
    seam = torch.maximum(mvv.abs() - 0.005 - gap, mu.abs() / (mw * 0.95) - 1)  # where closed lips meet
    _paint(img, _cover(seam * 0.7, lpx) * (1 - op), lip * 0.45)
    return full.clamp_(0, 1)


def render_face(identity: FaceIdentity, state: FaceState = NEUTRAL, size: int = 128) -> torch.Tensor:
    """One frame (3, S, S) in [0, 1]."""
    return render_faces(identity, [state], size)[0]


def portrait(identity: FaceIdentity, size: int = 128) -> torch.Tensor:
    """The neutral frame (3, S, S): the reference image a call starts from."""
    return render_face(identity, NEUTRAL, size)


def mouth_centre(identity: FaceIdentity, state: FaceState, size: int = 128) -> tuple[float, float]:
    """Pixel position (x, y) of the middle of the mouth's gap in a ``size`` frame (pixel centres at i + 0.5)."""
    op = min(1.0, max(0.0, state.mouth_open))
    rnd = min(1.0, max(0.0, state.mouth_round))
    yaw = min(1.0, max(-1.0, state.yaw))
    gap = MOUTH_GAP * op * (1 + 0.25 * rnd)
    v = JAW_PIVOT + (MOUTH_V * identity.face_h + 0.5 * gap - JAW_PIVOT) * (1 + JAW_DROP * op)
    u = YAW_SHIFT * yaw * (1 - YAW_NARROW * abs(yaw))
    ct, st = math.cos(state.tilt), math.sin(state.tilt)
    x = HEAD_SCALE * (ct * u - st * v) + state.dx * 2 / 128
    y = HEAD_SCALE * (st * u + ct * v) + HEAD_Y + state.dy * 2 / 128
    return ((x + 1) / 2 * size, (y + 1) / 2 * size)
