"""Procedurally drawn articulated 2D characters (puppets) in motion: training and evaluation data of the animation
generators (RAIN, EvAnimate), with exact COCO-18 keypoints for every frame.

A puppet is a front-facing figure built from capsules (rounded segments) with a skeleton in the COCO-18 layout of
``streamrt.poses``. Its identity (``PuppetSpec``) is its body proportions, skin and hair colours, a shirt and
trousers each with a colour, an accent colour and a texture (plain, stripes, checks, dots) drawn in every limb's own
coordinate frame (so the texture moves with the limb), shoes and a background. Its motion (``MotionSpec``) is a
joint-angle trajectory: walk, wave, jump, squat, arm swing, turn (a yaw that narrows the body and slides the face),
lean, or random smooth trajectories (sums of slow sinusoids per joint). Forward kinematics turns the angles into
joint positions; the feet stay on the ground except in jumps.

Held-out splits (``held_out=True``) draw characters whose (shirt colour, shirt texture, trousers colour, trousers
texture) combination never occurs in training, and motion speeds/amplitudes from interleaved bins training never
uses, so the cards measure generalisation to new characters and new motions, not memorisation.

Drawing is vectorised over all frames of a clip in torch (a 600-clip x 24-frame x 128-px dataset takes seconds per
hundred clips on one thread).

``detect_keypoints`` (a small heatmap CNN trained on puppet renders, ``streamrt.puppet_keypoints``) reads the pose back
from generated frames: the animation cards' measure of whether an output follows the driving pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from streamrt.errors import InputError, ParamError
from streamrt.poses import JOINT_INDEX, NUM_JOINTS

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 45),
    "orange": (235, 130, 30),
    "yellow": (230, 205, 50),
    "green": (50, 160, 70),
    "teal": (30, 150, 150),
    "blue": (45, 80, 200),
    "purple": (120, 60, 170),
    "pink": (230, 120, 170),
    "white": (235, 235, 230),
    "black": (35, 35, 40),
    "brown": (120, 75, 40),
    "grey": (130, 130, 135),
}
SKINS: dict[str, tuple[int, int, int]] = {
    "pale": (245, 215, 190),
    "light": (225, 185, 150),
    "tan": (195, 145, 100),
    "brown": (140, 95, 60),
    "dark": (90, 60, 40),
}
HAIRS: dict[str, tuple[int, int, int]] = {
    "black": (25, 20, 20),
    "brown": (95, 60, 30),
    "blond": (220, 190, 110),
    "red": (165, 65, 30),
    "grey": (170, 170, 170),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "sand": (205, 195, 170),
    "sky": (170, 200, 225),
    "mint": (180, 215, 190),
    "lilac": (200, 185, 215),
    "slate": (95, 105, 115),
}
TEXTURES = ("plain", "stripes", "checks", "dots")
MOTIONS = ("walk", "wave", "jump", "squat", "arm_swing", "turn", "lean", "random")
_CLOTH_COLOURS = tuple(COLOURS)


# ---------------------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class Clothing:
    colour: str
    accent: str  # colour of the texture's pattern
    texture: str  # one of TEXTURES


@dataclass(frozen=True)
class PuppetSpec:
    """A character's identity. Lengths are fractions of the figure's height (head top to soles)."""

    skin: str = "light"
    hair: str = "brown"
    shirt: Clothing = field(default_factory=lambda: Clothing("blue", "white", "stripes"))
    trousers: Clothing = field(default_factory=lambda: Clothing("black", "grey", "plain"))
    shoes: str = "brown"
    background: str = "sand"
    height: float = 0.78  # figure height, fraction of the frame
    torso: float = 0.31
    neck: float = 0.08
    head: float = 0.075  # head radius
    shoulder: float = 0.11  # half shoulder width
    hip: float = 0.065  # half hip width
    upper_arm: float = 0.15
    forearm: float = 0.14
    thigh: float = 0.21
    shin: float = 0.21
    limb: float = 0.032  # limb radius
    girth: float = 0.085  # torso radius
    pattern: float = 0.05  # texture period
    x: float = 0.5  # where the figure stands, fraction of the width

    def character(self) -> tuple[str, str, str, str]:
        """The colour/texture combination that defines the train / held-out split of characters."""
        return (self.shirt.colour, self.shirt.texture, self.trousers.colour, self.trousers.texture)


def is_held_out_character(spec: PuppetSpec) -> bool:
    """One fifth of the clothing combinations is reserved for evaluation (a fixed arithmetic rule, so both splits
    cover every colour and texture, only never in the same combination)."""
    sc, st, tc, tt = spec.character()
    code = (
        _CLOTH_COLOURS.index(sc) * 7
        + TEXTURES.index(st) * 3
        + _CLOTH_COLOURS.index(tc) * 5
        + TEXTURES.index(tt)
    )
    return code % 5 == 0


def sample_spec(gen: torch.Generator, *, held_out: bool = False) -> PuppetSpec:
    """A random character of the training split, or of the held-out split."""

    def pick(options):
        options = tuple(options)
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    def pick_other(options, other):
        return pick(o for o in options if o != other)

    while True:
        shirt_colour = pick(_CLOTH_COLOURS)
        trousers_colour = pick(_CLOTH_COLOURS)
        shirt = Clothing(shirt_colour, pick_other(_CLOTH_COLOURS, shirt_colour), pick(TEXTURES))
        trousers = Clothing(trousers_colour, pick_other(_CLOTH_COLOURS, trousers_colour), pick(TEXTURES))
        u = torch.rand(12, generator=gen).tolist()
        spec = PuppetSpec(
            skin=pick(SKINS),
            hair=pick(HAIRS),
            shirt=shirt,
            trousers=trousers,
            shoes=pick(("black", "brown", "white", "red", "blue")),
            background=pick(BACKGROUNDS),
            height=0.68 + 0.12 * u[0],
            torso=0.28 + 0.06 * u[1],
            neck=0.06 + 0.04 * u[2],
            head=0.065 + 0.025 * u[3],
            shoulder=0.09 + 0.04 * u[4],
            hip=0.055 + 0.025 * u[5],
            upper_arm=0.13 + 0.04 * u[6],
            forearm=0.12 + 0.04 * u[7],
            thigh=0.19 + 0.05 * u[8],
            shin=0.19 + 0.05 * u[8] * 0.5 + 0.025 * u[9],
            limb=0.026 + 0.014 * u[10],
            girth=0.07 + 0.035 * u[11],
            pattern=0.04 + 0.03 * float(torch.rand(1, generator=gen)),
            x=0.42 + 0.16 * float(torch.rand(1, generator=gen)),
        )
        if is_held_out_character(spec) == held_out:
            return spec


# ---------------------------------------------------------------------------------------------------- motion
@dataclass(frozen=True)
class MotionSpec:
    """One motion: ``name`` in MOTIONS, ``speed`` in cycles per frame, ``amplitude`` in [0.5, 1], a start phase,
    and (random motions) a seed for the per-joint sinusoids."""

    name: str
    speed: float = 1 / 24
    amplitude: float = 0.8
    phase: float = 0.0
    seed: int = 0


_SPEED_RANGE = (1 / 40, 1 / 12)
_AMPLITUDE_RANGE = (0.5, 1.0)
_BINS = 8  # motion parameters fall in 8 bins per range; even bins train, odd bins are held out


def _split_uniform(gen: torch.Generator, lo: float, hi: float, held_out: bool) -> float:
    b = 2 * int(torch.randint(_BINS // 2, (1,), generator=gen)) + int(held_out)
    u = (b + float(torch.rand(1, generator=gen))) / _BINS
    return lo + (hi - lo) * u


def sample_motion(gen: torch.Generator, name: str | None = None, *, held_out: bool = False) -> MotionSpec:
    """A motion of ``name`` (random name if None) with speed and amplitude from the split's bins."""
    if name is None:
        name = MOTIONS[int(torch.randint(len(MOTIONS), (1,), generator=gen))]
    elif name not in MOTIONS:
        raise ParamError(f"unknown puppet motion {name!r}; choose from {', '.join(MOTIONS)}")
    return MotionSpec(
        name=name,
        speed=_split_uniform(gen, *_SPEED_RANGE, held_out),
        amplitude=_split_uniform(gen, *_AMPLITUDE_RANGE, held_out),
        phase=float(torch.rand(1, generator=gen)) * 2 * math.pi,
        seed=int(torch.randint(2**31 - 1, (1,), generator=gen)),
    )


# Angles, radians. A direction angle a points along (sin a, cos a) in image coordinates: 0 = down, +pi/2 = image
# right. Arm angles are relative to the torso's "down", elbows/knees relative to their parent segment.
_ANGLES = (
    "lean",
    "tilt",
    "yaw",
    "r_shoulder",
    "r_elbow",
    "l_shoulder",
    "l_elbow",
    "r_hip",
    "r_knee",
    "l_hip",
    "l_knee",
    "lift",  # height above the ground (jumps), fraction of the figure height
    "sway",  # sideways offset of the pelvis, fraction of the figure height
)
_REST = {
    "r_shoulder": -0.18,
    "l_shoulder": 0.18,
    "r_hip": -0.06,
    "l_hip": 0.06,
    "r_elbow": -0.1,
    "l_elbow": 0.1,
}


def motion_angles(motion: MotionSpec, frames: int, start: int = 0) -> dict[str, torch.Tensor]:
    """Joint-angle trajectories (each (frames,) float64) of a motion."""
    t = torch.arange(start, start + frames, dtype=torch.float64)
    w = 2 * math.pi * motion.speed * t + motion.phase
    amp = motion.amplitude
    z = torch.zeros_like(t)
    a = {k: z + _REST.get(k, 0.0) for k in _ANGLES}
    s, c = torch.sin(w), torch.cos(w)
    name = motion.name
    if name == "walk":
        a["r_hip"] += 0.35 * amp * s
        a["l_hip"] -= 0.35 * amp * s
        a["r_knee"] += 0.45 * amp * torch.relu(-s)  # the knee bends while its leg swings back
        a["l_knee"] -= 0.45 * amp * torch.relu(s)
        a["r_shoulder"] -= 0.35 * amp * s
        a["l_shoulder"] -= 0.35 * amp * s
        a["r_elbow"] -= 0.25 * amp * torch.relu(s)
        a["l_elbow"] += 0.25 * amp * torch.relu(-s)
        a["sway"] += 0.06 * amp * torch.sin(w / 2)
        a["lift"] += 0.015 * amp * s.abs()
    elif name == "wave":
        a["r_shoulder"] = z - (2.2 + 0.15 * amp * c)
        a["r_elbow"] = z - (0.5 + 0.7 * amp * s)
        a["tilt"] += 0.12 * amp * s
    elif name == "jump":
        air = torch.relu(s)  # off the ground during the positive half of the cycle
        crouch = torch.relu(-s)
        a["lift"] += 0.22 * amp * air
        a["r_hip"] -= 0.5 * amp * crouch
        a["l_hip"] += 0.5 * amp * crouch
        a["r_knee"] += 1.0 * amp * crouch
        a["l_knee"] -= 1.0 * amp * crouch
        a["r_shoulder"] -= 2.4 * amp * air
        a["l_shoulder"] += 2.4 * amp * air
    elif name == "squat":
        d = amp * (0.5 - 0.5 * c)
        a["r_hip"] -= 0.9 * d
        a["l_hip"] += 0.9 * d
        a["r_knee"] += 1.8 * d
        a["l_knee"] -= 1.8 * d
        a["r_shoulder"] -= 1.3 * d
        a["l_shoulder"] += 1.3 * d
    elif name == "arm_swing":
        a["r_shoulder"] -= 2.6 * amp * (0.5 - 0.5 * c)
        a["l_shoulder"] += 2.6 * amp * (0.5 + 0.5 * c)
        a["r_elbow"] -= 0.4 * amp * s
        a["l_elbow"] += 0.4 * amp * s
    elif name == "turn":
        a["yaw"] += 1.1 * amp * s
        a["r_shoulder"] -= 0.25 * amp * s
        a["l_shoulder"] -= 0.25 * amp * s
        a["tilt"] += 0.08 * amp * s
    elif name == "lean":
        a["lean"] += 0.35 * amp * s
        a["tilt"] -= 0.2 * amp * s
        # arms hang: cancel the torso's rotation
        a["r_shoulder"] -= 0.35 * amp * s
        a["l_shoulder"] -= 0.35 * amp * s
        a["sway"] -= 0.05 * amp * s
    elif name == "random":
        gen = torch.Generator().manual_seed(motion.seed)
        limits = {
            "lean": 0.25,
            "tilt": 0.2,
            "yaw": 0.6,
            "r_shoulder": 1.4,
            "l_shoulder": 1.4,
            "r_elbow": 0.9,
            "l_elbow": 0.9,
            "r_hip": 0.4,
            "l_hip": 0.4,
            "r_knee": 0.6,
            "l_knee": 0.6,
            "sway": 0.05,
        }
        for k, lim in limits.items():
            u = torch.rand(3, 2, generator=gen, dtype=torch.float64)
            freqs = motion.speed * (0.5 + u[:, 0])  # slow sinusoids: smooth by construction
            phases = 2 * math.pi * u[:, 1]
            wave = sum(torch.sin(2 * math.pi * f * t + p) for f, p in zip(freqs, phases, strict=True)) / 3
            sign = -1.0 if k.startswith("r_") else 1.0
            if k.endswith("shoulder"):
                a[k] = a[k] + sign * lim * amp * (
                    0.5 + 0.5 * wave
                )  # arms rise outward, never through the body
            elif k.endswith("knee"):
                a[k] = a[k] - sign * lim * amp * (0.5 + 0.5 * wave)  # knees bend one way only
            else:
                a[k] = a[k] + lim * amp * wave
    else:
        raise ParamError(f"unknown puppet motion {name!r}; choose from {', '.join(MOTIONS)}")
    return a


def _direction(angle: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)


@dataclass
class Skeleton:
    """Joint positions (T, 18, 2) in fractions of the frame, face-point visibility (T, 18) and the yaw (T,)."""

    points: torch.Tensor
    visible: torch.Tensor
    yaw: torch.Tensor
    lean: torch.Tensor
    tilt: torch.Tensor
    head: torch.Tensor  # (T, 2) centre of the head


def forward_kinematics(spec: PuppetSpec, angles: dict[str, torch.Tensor]) -> Skeleton:
    """Joint-angle trajectories -> COCO-18 joint positions. The lowest ankle rests on the ground line; ``lift``
    raises the whole figure (jumps)."""
    scale = spec.height / (spec.head * 2 + spec.neck + spec.torso + spec.thigh + spec.shin)
    lean, tilt, yaw = angles["lean"], angles["tilt"], angles["yaw"]
    t = lean.shape[0]
    pelvis = torch.zeros(t, 2, dtype=torch.float64)
    pelvis[:, 0] = angles["sway"] * spec.height
    up = _direction(math.pi + lean)
    side = torch.stack([torch.cos(lean), -torch.sin(lean)], dim=-1)  # image right of the torso
    neck = pelvis + scale * spec.torso * up
    # Shoulders and hips sit on a circle around the spine: turning (yaw) narrows the figure.
    width = torch.cos(yaw)[:, None]
    r_sh = neck - side * scale * spec.shoulder * width
    l_sh = neck + side * scale * spec.shoulder * width
    r_hip = pelvis - side * scale * spec.hip * width
    l_hip = pelvis + side * scale * spec.hip * width
    r_el = r_sh + scale * spec.upper_arm * _direction(lean + angles["r_shoulder"])
    r_wr = r_el + scale * spec.forearm * _direction(lean + angles["r_shoulder"] + angles["r_elbow"])
    l_el = l_sh + scale * spec.upper_arm * _direction(lean + angles["l_shoulder"])
    l_wr = l_el + scale * spec.forearm * _direction(lean + angles["l_shoulder"] + angles["l_elbow"])
    r_kn = r_hip + scale * spec.thigh * _direction(angles["r_hip"])
    r_an = r_kn + scale * spec.shin * _direction(angles["r_hip"] + angles["r_knee"])
    l_kn = l_hip + scale * spec.thigh * _direction(angles["l_hip"])
    l_an = l_kn + scale * spec.shin * _direction(angles["l_hip"] + angles["l_knee"])
    head_angle = lean + tilt
    head_up = _direction(math.pi + head_angle)
    head_side = torch.stack([torch.cos(head_angle), -torch.sin(head_angle)], dim=-1)
    head = neck + scale * (spec.neck + spec.head) * head_up
    hr = scale * spec.head

    def face_point(azimuth: float, height: float) -> tuple[torch.Tensor, torch.Tensor]:
        # A point on the head's front hemisphere at an azimuth (0 = facing the camera), turned by the yaw.
        az = azimuth + yaw
        pos = head + head_side * (hr * torch.sin(az))[:, None] + head_up * hr * height
        return pos, torch.cos(az) > -0.05

    nose, nose_v = face_point(0.0, -0.15)
    r_eye, r_eye_v = face_point(-0.45, 0.15)
    l_eye, l_eye_v = face_point(0.45, 0.15)
    r_ear, r_ear_v = face_point(-math.pi / 2, 0.05)
    l_ear, l_ear_v = face_point(math.pi / 2, 0.05)
    pts = torch.stack(
        [
            nose,
            neck,
            r_sh,
            r_el,
            r_wr,
            l_sh,
            l_el,
            l_wr,
            r_hip,
            r_kn,
            r_an,
            l_hip,
            l_kn,
            l_an,
            r_eye,
            l_eye,
            r_ear,
            l_ear,
        ],
        dim=1,
    )  # (T, 18, 2) relative to the pelvis
    # Stand on the ground: the lowest point of the feet (ankle + shoe) at ground level, then lift.
    ground = 0.5 + spec.height / 2
    sole = torch.maximum(r_an[:, 1], l_an[:, 1]) + scale * spec.limb * 1.2
    offset_y = ground - sole - angles["lift"] * spec.height
    pts[..., 1] += offset_y[:, None]
    pts[..., 0] += spec.x
    head = head + torch.stack([torch.full_like(offset_y, spec.x), offset_y], dim=-1)
    visible = torch.ones(t, NUM_JOINTS, dtype=torch.bool)
    for name, v in (
        ("nose", nose_v),
        ("r_eye", r_eye_v),
        ("l_eye", l_eye_v),
        ("r_ear", r_ear_v),
        ("l_ear", l_ear_v),
    ):
        visible[:, JOINT_INDEX[name]] = v
    return Skeleton(pts, visible, yaw, lean, tilt, head)


# ---------------------------------------------------------------------------------------------------- drawing
def _rgb(table: dict[str, tuple[int, int, int]], name: str) -> torch.Tensor:
    if name not in table:
        raise ParamError(f"unknown colour {name!r}; choose from {', '.join(table)}")
    return torch.tensor(table[name], dtype=torch.float32) / 255.0


def _pattern(texture: str, u: torch.Tensor, v: torch.Tensor, period: float) -> torch.Tensor:
    """0/1 pattern in a part's own (u along, v across) coordinates, so it moves and turns with the limb."""
    if texture == "plain":
        return torch.zeros_like(u)
    if texture == "stripes":
        return torch.remainder(torch.floor(u / (period / 2)), 2)
    if texture == "checks":
        return torch.remainder(torch.floor(u / (period / 2)) + torch.floor(v / (period / 2)), 2)
    if texture == "dots":
        cu = torch.remainder(u, period) - period / 2
        cv = torch.remainder(v, period) - period / 2
        return (cu**2 + cv**2 < (0.28 * period) ** 2).float()
    raise ParamError(f"unknown texture {texture!r}; choose from {', '.join(TEXTURES)}")


class _Canvas:
    """(T, S, S, 3) float image; parts are capsules composited back to front with a one-pixel soft edge."""

    def __init__(self, background: torch.Tensor, frames: int, size: int) -> None:
        self.size = size
        c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.yy, self.xx = torch.meshgrid(c, c, indexing="ij")
        ground = 0.5 + 0.5 * 0.8
        shade = 1.0 - 0.12 * self.yy[..., None]  # a soft vertical gradient and a darker floor
        floor = torch.where(self.yy[..., None] > ground, 0.85, 1.0)
        img = (background * shade * floor).clamp(0, 1)
        self.image = img.expand(frames, size, size, 3).clone()

    def capsule(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        radius: float | torch.Tensor,
        colour: torch.Tensor,
        *,
        accent: torch.Tensor | None = None,
        texture: str = "plain",
        period: float = 0.05,
        shading: float = 0.25,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Segment a->b ((T, 2) each) with a radius; ``mask`` (T,) hides it in some frames."""
        a = a.float()
        b = b.float()
        r = torch.as_tensor(radius, dtype=torch.float32)
        # Work only inside the box that holds the part in every frame (5-20x less work than the whole frame).
        reach = float(r.max()) + 2.0 / self.size
        lo = torch.minimum(a.amin(0), b.amin(0)) - reach
        hi = torch.maximum(a.amax(0), b.amax(0)) + reach
        x0, y0 = (max(0, int(v * self.size)) for v in lo.tolist())
        x1, y1 = (min(self.size, int(math.ceil(v * self.size))) for v in hi.tolist())
        if x1 <= x0 or y1 <= y0:
            return
        xx, yy = self.xx[y0:y1, x0:x1], self.yy[y0:y1, x0:x1]
        ax, ay = a[:, 0, None, None], a[:, 1, None, None]
        d = b - a
        length = d.norm(dim=-1).clamp_min(1e-6)
        ux, uy = (d[:, 0] / length)[:, None, None], (d[:, 1] / length)[:, None, None]
        px, py = xx - ax, yy - ay
        along = px * ux + py * uy  # (T, S, S)
        across = px * -uy + py * ux
        clamped = along.clamp(torch.zeros_like(length)[:, None, None], length[:, None, None])
        dist = ((along - clamped) ** 2 + across**2).sqrt()
        r = r.view(-1, 1, 1) if r.ndim else r
        alpha = ((r - dist) * self.size + 0.5).clamp(0, 1)
        if mask is not None:
            alpha = alpha * mask.float().view(-1, 1, 1)
        col = colour.view(1, 1, 1, 3).expand(alpha.shape + (3,))
        if accent is not None and texture != "plain":
            pat = _pattern(texture, along, across, period)[..., None]
            col = col * (1 - pat) + accent.view(1, 1, 1, 3) * pat
        if shading:
            edge = (across / r.clamp_min(1e-6)).clamp(-1, 1) ** 2
            col = col * (1 - shading * edge[..., None])
        alpha = alpha[..., None]
        region = self.image[:, y0:y1, x0:x1]
        region.mul_(1 - alpha).add_(col * alpha)

    def disc(self, centre: torch.Tensor, radius: float, colour: torch.Tensor, **kw) -> None:
        self.capsule(centre, centre + 1e-6, radius, colour, **kw)


def render_puppet(spec: PuppetSpec, skeleton: Skeleton, size: int) -> torch.Tensor:
    """Draw a skeleton's frames: (T, size, size, 3) uint8."""
    pts = skeleton.points.float()
    t = pts.shape[0]
    j = JOINT_INDEX
    scale = spec.height / (spec.head * 2 + spec.neck + spec.torso + spec.thigh + spec.shin)
    limb = scale * spec.limb
    skin = _rgb(SKINS, spec.skin)
    hair = _rgb(HAIRS, spec.hair)
    shirt, shirt_accent = _rgb(COLOURS, spec.shirt.colour), _rgb(COLOURS, spec.shirt.accent)
    trousers, trousers_accent = _rgb(COLOURS, spec.trousers.colour), _rgb(COLOURS, spec.trousers.accent)
    shoes = _rgb(COLOURS, spec.shoes)
    period = spec.pattern * scale
    canvas = _Canvas(_rgb(BACKGROUNDS, spec.background), t, size)
    cloth_t = {"accent": trousers_accent, "texture": spec.trousers.texture, "period": period}
    cloth_s = {"accent": shirt_accent, "texture": spec.shirt.texture, "period": period}
    p = {name: pts[:, i] for name, i in j.items()}
    pelvis = (p["r_hip"] + p["l_hip"]) / 2
    width = skeleton.yaw.cos().abs().float()
    # Legs: trousers over thighs and shins, shoes pointing outward.
    for side, out in (("r", -1.0), ("l", 1.0)):
        canvas.capsule(p[f"{side}_hip"], p[f"{side}_knee"], limb * 1.25, trousers, **cloth_t)
        canvas.capsule(p[f"{side}_knee"], p[f"{side}_ankle"], limb * 1.1, trousers, **cloth_t)
        toe = p[f"{side}_ankle"] + torch.tensor([out * limb * 1.6, limb * 0.6])
        canvas.capsule(p[f"{side}_ankle"], toe, limb * 0.9, shoes)
    canvas.capsule(p["r_hip"], p["l_hip"], limb * 1.3, trousers, **cloth_t)
    # Torso: a thick capsule, narrower when turned.
    girth = scale * spec.girth * (0.65 + 0.35 * width)
    neck_base = p["neck"] + (pelvis - p["neck"]) * 0.18
    canvas.capsule(pelvis, neck_base, girth, shirt, **cloth_s)
    canvas.capsule(p["r_shoulder"], p["l_shoulder"], limb * 1.3, shirt, **cloth_s)
    # Neck and head.
    canvas.capsule(
        p["neck"], p["neck"] + (skeleton.head.float() - p["neck"]) * 0.6, limb * 0.9, skin, shading=0.1
    )
    # Arms: shirt sleeves on the upper arms, bare forearms and hands.
    for side in ("r", "l"):
        canvas.capsule(p[f"{side}_shoulder"], p[f"{side}_elbow"], limb * 1.15, shirt, **cloth_s)
        canvas.capsule(p[f"{side}_elbow"], p[f"{side}_wrist"], limb * 0.95, skin)
        canvas.disc(p[f"{side}_wrist"], limb * 1.2, skin, shading=0.15)
    head = skeleton.head.float()
    hr = scale * spec.head
    # Hair: a cap disc shifted up; the face disc covers its lower part; shifting with the yaw shows the turn.
    up = _direction(math.pi + skeleton.lean + skeleton.tilt).float()
    side_v = torch.stack(
        [torch.cos(skeleton.lean + skeleton.tilt), -torch.sin(skeleton.lean + skeleton.tilt)], -1
    )
    yaw_shift = -torch.sin(skeleton.yaw).float()[:, None] * side_v.float() * hr * 0.35
    canvas.disc(head + up * hr * 0.22 + yaw_shift, hr * 1.05, hair, shading=0.1)
    canvas.disc(head - up * hr * 0.08, hr * 0.92, skin, shading=0.2)
    vis = skeleton.visible
    for name in ("r_eye", "l_eye"):
        canvas.disc(p[name], hr * 0.16, torch.tensor([0.08, 0.08, 0.1]), shading=0.0, mask=vis[:, j[name]])
    canvas.capsule(
        p["nose"] - up * hr * 0.28 - side_v.float() * hr * 0.18,
        p["nose"] - up * hr * 0.28 + side_v.float() * hr * 0.18,
        hr * 0.06,
        torch.tensor([0.55, 0.2, 0.2]),
        shading=0.0,
        mask=vis[:, j["nose"]],
    )
    return (canvas.image.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def keypoints_of(skeleton: Skeleton) -> torch.Tensor:
    """(T, 18, 3): positions with confidence 1 for joints that are visible and inside the frame, else 0."""
    pts = skeleton.points.float()
    inside = ((pts >= 0) & (pts <= 1)).all(dim=-1)
    conf = (inside & skeleton.visible).float()
    return torch.cat([pts, conf[..., None]], dim=-1)


def puppet_clip(
    spec: PuppetSpec, motion: str | MotionSpec, frames: int, size: int, seed: int = 0, *, start: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``frames`` frames of a character in motion: ((T, S, S, 3) uint8, (T, 18, 3) float keypoints).

    ``motion`` is a MotionSpec or a motion name whose speed/amplitude/phase are drawn (training split) from ``seed``.
    Frame i shows the motion at time ``start + i`` (a stream can be rendered in pieces)."""
    if frames < 1 or size < 8:
        raise ParamError(f"puppet_clip needs frames >= 1 and size >= 8; got {frames}, {size}")
    if isinstance(motion, str):
        motion = sample_motion(torch.Generator().manual_seed(seed), motion)
    skel = forward_kinematics(spec, motion_angles(motion, frames, start))
    return render_puppet(spec, skel, size), keypoints_of(skel)


@dataclass
class PuppetDataset:
    clips: torch.Tensor  # (N, T, S, S, 3) uint8
    keypoints: torch.Tensor  # (N, T, 18, 3) float
    specs: list[PuppetSpec]
    motions: list[MotionSpec]


def make_puppet_dataset(
    n: int,
    frames: int,
    size: int,
    seed: int = 0,
    *,
    held_out: bool = False,
    motions: tuple[str, ...] = MOTIONS,
) -> PuppetDataset:
    """``n`` clips of random characters in random motions (cycling through ``motions``), from the training split or,
    with ``held_out``, from the disjoint evaluation split of characters and motion parameters."""
    if n < 1:
        raise ParamError(f"make_puppet_dataset needs n >= 1; got {n}")
    # Different streams for the two splits even with one seed: the evaluation never reuses training draws.
    gen = torch.Generator().manual_seed(seed * 2 + int(held_out))
    clips = torch.empty(n, frames, size, size, 3, dtype=torch.uint8)
    kps = torch.empty(n, frames, NUM_JOINTS, 3)
    specs, moves = [], []
    for i in range(n):
        spec = sample_spec(gen, held_out=held_out)
        motion = sample_motion(gen, motions[i % len(motions)], held_out=held_out)
        clips[i], kps[i] = puppet_clip(spec, motion, frames, size)
        specs.append(spec)
        moves.append(motion)
    return PuppetDataset(clips, kps, specs, moves)


def still(spec: PuppetSpec, size: int) -> torch.Tensor:
    """The character standing at rest, (size, size, 3) uint8: a natural reference image."""
    frames, _ = puppet_clip(spec, replace(MotionSpec("walk"), amplitude=0.0), 1, size)
    return frames[0]


# ---------------------------------------------------------------------------------------------------- detection
def detect_keypoints(frames: torch.Tensor, *, model: str | None = None) -> torch.Tensor:
    """(T, S, S, 3) uint8 puppet frames -> (T, 18, 3) keypoints, by the committed heatmap CNN
    (assets/puppet-keypoints, or the folder ``model``)."""
    from streamrt.puppet_keypoints import load_detector

    frames = torch.as_tensor(frames)
    if frames.ndim == 3:
        raise InputError("detect_keypoints takes a batch (T, S, S, 3); add a leading axis for one frame")
    return load_detector(model).detect(frames)


if __name__ == "__main__":  # python -m streamrt.puppets train-detector [recipe options]
    import sys

    from streamrt.puppet_keypoints import main

    raise SystemExit(main(sys.argv[1:]))
