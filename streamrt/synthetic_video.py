"""Synthetic captioned video for training and evaluating the text-to-video defaults: moving shapes.

A clip is one shape (circle, square, triangle) of one colour (red, green, blue, yellow, white) moving (left, right,
up, down, bouncing) over a textured grey background (plain, stripes, checks, dots). Linear motions wrap around the
frame, so a clip can be rendered at any length (streams are unbounded) and every frame is a function of its index.

Captions come in several phrasings. ``TRAIN_TEMPLATES`` are used for training; ``HELD_OUT_TEMPLATES`` use words and
orders never seen in training, to test that a model follows the vocabulary rather than memorised sentences.
``measure`` reads colour and motion back from generated frames (the cards' prompt-following metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "bouncing")
TEXTURES = ("plain", "stripes", "checks", "dots")

TRAIN_TEMPLATES = (
    "a {colour} {shape} moving {motion} over {texture}",
    "{colour} {shape} going {motion} on a {texture} background",
    "the {shape} is {colour} and moves {motion}, {texture}",
    "{texture} background with a {colour} {shape} sliding {motion}",
    "a {shape}, {colour}, heading {motion} over {texture}",
)
HELD_OUT_TEMPLATES = (
    "watch one {colour} {shape} drift {motion} across a {texture} backdrop",
    "{motion} it goes: the {colour} {shape} in front of {texture}",
    "please show me a {colour} {shape} that travels {motion} above {texture}",
)
# How each motion reads in a caption ("bouncing" reads better without "moving").
MOTION_WORDS = {"left": "left", "right": "right", "up": "up", "down": "down", "bouncing": "bouncing"}


@dataclass(frozen=True)
class ClipSpec:
    colour: str
    shape: str
    motion: str
    texture: str
    x: float  # start centre, fraction of the width
    y: float
    radius: float  # fraction of the size
    speed: float  # fraction of the size per frame
    phase: float = 0.0  # bouncing phase

    def caption(self, template: str) -> str:
        return template.format(
            colour=self.colour, shape=self.shape, motion=MOTION_WORDS[self.motion], texture=self.texture
        )


def sample_spec(gen: torch.Generator, **fixed: str) -> ClipSpec:
    def pick(options, key):
        if key in fixed:
            if fixed[key] not in options:
                raise ValueError(f"unknown {key} {fixed[key]!r}; choose from {', '.join(options)}")
            return fixed[key]
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    u = torch.rand(5, generator=gen).tolist()
    return ClipSpec(
        colour=pick(tuple(COLOURS), "colour"),
        shape=pick(SHAPES, "shape"),
        motion=pick(MOTIONS, "motion"),
        texture=pick(TEXTURES, "texture"),
        x=0.2 + 0.6 * u[0],
        y=0.2 + 0.6 * u[1],
        radius=0.13 + 0.05 * u[2],
        speed=0.03 + 0.02 * u[3],
        phase=u[4] * 2 * math.pi,
    )


def _background(texture: str, size: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    period = max(4, size // 8)
    base = torch.full((size, size), 70.0)
    if texture == "stripes":
        base = base + 40.0 * ((xx // (period // 2)) % 2)
    elif texture == "checks":
        base = base + 40.0 * (((xx // period) + (yy // period)) % 2)
    elif texture == "dots":
        c = period // 2
        d = ((xx % period) - c) ** 2 + ((yy % period) - c) ** 2
        base = base + 50.0 * (d <= (period / 5) ** 2)
    return base[..., None].expand(size, size, 3)


def centre(spec: ClipSpec, t: int) -> tuple[float, float]:
    """Centre (x, y) as fractions of the size at frame t (wrapping for linear motions)."""
    d = spec.speed * t
    x, y = spec.x, spec.y
    if spec.motion == "left":
        x = (x - d) % 1.0
    elif spec.motion == "right":
        x = (x + d) % 1.0
    elif spec.motion == "up":
        y = (y - d) % 1.0
    elif spec.motion == "down":
        y = (y + d) % 1.0
    else:  # bouncing: up and down between the top and the bottom third
        y = 0.5 - 0.3 * abs(math.sin(spec.phase + 2.5 * spec.speed * t * math.pi))
    return x, y


def _shape_mask(spec: ClipSpec, t: int, size: int) -> torch.Tensor:
    cx, cy = centre(spec, t)
    yy, xx = _grid(size)
    r = spec.radius * size
    # offsets taken modulo the size: a shape leaving one edge enters at the other
    dx = (xx - cx * size + size / 2) % size - size / 2
    dy = (yy - cy * size + size / 2) % size - size / 2
    if spec.shape == "circle":
        return dx**2 + dy**2 <= r**2
    if spec.shape == "square":
        return (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    return (dy <= r) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.55)  # triangle, apex up


_GRIDS: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
_BACKGROUNDS: dict[tuple[str, int], torch.Tensor] = {}


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size not in _GRIDS:
        _GRIDS.clear()
        yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        _GRIDS[size] = (yy, xx)
    return _GRIDS[size]


def render_frame(spec: ClipSpec, t: int, size: int) -> torch.Tensor:
    """(size, size, 3) uint8 frame t of the clip."""
    key = (spec.texture, size)
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 16:
            _BACKGROUNDS.clear()
        _BACKGROUNDS[key] = _background(spec.texture, size).round().to(torch.uint8)
    img = _BACKGROUNDS[key].clone()
    mask = _shape_mask(spec, t, size)
    img[mask] = torch.tensor(COLOURS[spec.colour], dtype=torch.uint8)
    return img


def render_clip(spec: ClipSpec, frames: int, size: int, start: int = 0) -> torch.Tensor:
    """(frames, size, size, 3) uint8."""
    return torch.stack([render_frame(spec, start + t, size) for t in range(frames)])


@dataclass
class VideoDataset:
    clips: torch.Tensor  # (N, T, S, S, 3) uint8
    captions: list[str]
    specs: list[ClipSpec]


def make_dataset(n: int, frames: int, size: int, seed: int = 0, *, held_out: bool = False) -> VideoDataset:
    """``n`` captioned clips; training phrasings, or held-out phrasings with ``held_out``."""
    gen = torch.Generator().manual_seed(seed)
    templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
    specs, captions, clips = [], [], []
    for i in range(n):
        spec = sample_spec(gen)
        specs.append(spec)
        captions.append(spec.caption(templates[i % len(templates)]))
        clips.append(render_clip(spec, frames, size))
    return VideoDataset(torch.stack(clips), captions, specs)


def all_captions(held_out: bool = False) -> list[str]:
    """Every caption the templates can produce (for the text encoder's vocabulary)."""
    templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
    out = []
    for tpl in templates:
        for c in COLOURS:
            for s in SHAPES:
                for m in MOTIONS:
                    for tex in TEXTURES:
                        out.append(tpl.format(colour=c, shape=s, motion=MOTION_WORDS[m], texture=tex))
    return out


@dataclass
class Measurement:
    colour: str  # the vocabulary colour whose pixels dominate the foreground
    motion: str  # left/right/up/down/bouncing/static from the foreground centroid track
    coverage: float  # fraction of pixels assigned to the colour


def measure(frames: torch.Tensor) -> Measurement:
    """Read colour and motion back from (T, H, W, 3) uint8 frames: pixels near a vocabulary colour (and far from the
    grey background) vote for it; the centroid track of the winner's pixels gives the motion."""
    x = frames.float()
    t, h, w, _ = x.shape
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    dist = (x[..., None, :] - palette).norm(dim=-1)  # (T, H, W, 5)
    nearest = dist.argmin(-1)
    close = dist.min(-1).values < 60
    counts = torch.stack([((nearest == k) & close).sum() for k in range(len(COLOURS))]).float()
    k = int(counts.argmax())
    colour = list(COLOURS)[k]
    mask = (nearest == k) & close
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    track = []
    for i in range(t):
        m = mask[i].float()
        total = m.sum()
        if total < 4:
            continue
        # circular means, so wrapping around an edge does not look like a jump back
        ang_x = (m.sum(0) * torch.exp(1j * 2 * math.pi * xs / w)).sum()
        ang_y = (m.sum(1) * torch.exp(1j * 2 * math.pi * ys / h)).sum()
        track.append((float(torch.angle(ang_x)), float(torch.angle(ang_y))))
    motion = "static"
    if len(track) >= 2:

        def unwrap(vals):
            out, acc = [vals[0]], vals[0]
            for a, b in zip(vals, vals[1:], strict=False):
                d = (b - a + math.pi) % (2 * math.pi) - math.pi
                acc += d
                out.append(acc)
            return out

        tx = unwrap([p[0] for p in track])
        ty = unwrap([p[1] for p in track])
        dx = (tx[-1] - tx[0]) * w / (2 * math.pi)
        dy = (ty[-1] - ty[0]) * h / (2 * math.pi)
        path_y = sum(abs(b - a) for a, b in zip(ty, ty[1:], strict=False)) * h / (2 * math.pi)
        if max(abs(dx), abs(dy), path_y) < 0.02 * w * len(track) / 4:
            motion = "static"
        elif path_y > 2 * abs(dy) + 2 and path_y > abs(dx):
            motion = "bouncing"
        elif abs(dx) >= abs(dy):
            motion = "right" if dx > 0 else "left"
        else:
            motion = "down" if dy > 0 else "up"
    return Measurement(colour, motion, float(counts[k] / (t * h * w)))
