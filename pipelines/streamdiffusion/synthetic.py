"""Procedural training data for the embedded tiny StreamDiffusion model.

Two kinds of samples, both 256x256 RGB uint8 with a caption:

* scenes: a procedural picture of one of ``SCENES`` with a scene caption ("a sunset", "snowy mountains", ...);
* styles: arbitrary content (a procedural scene, random shapes, or a photo shipped in scikit-image's wheel, randomly
  cropped/flipped/colour-jittered) pushed through a deterministic filter from ``STYLES`` and captioned with the style
  ("neon style", "a forest in fire style", ...).

The style filters keep the layout of their input (edges, luminance order), which is what teaches the model to keep the
structure of an input frame in img2img while moving its palette and texture towards the prompt.
Everything is vectorised numpy; one image costs a few milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCENES: tuple[str, ...] = ("sunset", "ocean", "forest", "night sky", "snowy mountains", "desert")
STYLES: tuple[str, ...] = ("neon", "sketch", "fire", "ice", "mosaic", "pop art")
# Class ids: scenes first, then styles (what the evaluation classifier predicts).
LABELS: tuple[str, ...] = SCENES + STYLES

# Photos shipped inside scikit-image's wheel. Held-out ones are never used for training (evaluation content).
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png",
    "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png", "page.png", "color.png", "cell.png",
)  # fmt: skip
HELDOUT_PHOTOS: tuple[str, ...] = ("coffee.png", "motorcycle_left.png")

_SCENE_TEMPLATES = ("{s}", "a {s}", "a picture of a {s}", "{s} landscape", "a beautiful {s}")
_SCENE_PLURAL_TEMPLATES = ("{s}", "a picture of {s}", "{s} landscape", "beautiful {s}")
_STYLE_TEMPLATES = ("{t} style", "in {t} style", "a {t} picture", "{t}", "a picture in {t} style")
_MIXED_TEMPLATES = ("{s} in {t} style", "a {s} in {t} style", "{t} {s}")

Image = np.ndarray  # (H, W, 3) float32 in [0, 1] while generating; uint8 when returned


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    caption: str
    label: int  # index into LABELS: the style when one was applied, else the scene
    scene: int | None  # scene index when the content is a procedural scene, else None
    style: int | None  # style index when a style filter was applied, else None


def scene_caption(scene: str, rng: np.random.Generator) -> str:
    templates = _SCENE_PLURAL_TEMPLATES if scene.endswith("s") else _SCENE_TEMPLATES
    return str(rng.choice(templates)).format(s=scene)


def style_caption(style: str, rng: np.random.Generator, scene: str | None = None) -> str:
    if scene is not None:
        # "a snowy mountains" reads badly: drop the article for plural scenes
        templates = [t for t in _MIXED_TEMPLATES if not (scene.endswith("s") and t.startswith("a "))]
        return str(rng.choice(templates)).format(s=scene, t=style)
    return str(rng.choice(_STYLE_TEMPLATES)).format(t=style)


def example_prompts() -> list[str]:
    """One canonical prompt per class, in LABELS order (used by the evaluation and the model card)."""
    return [f"a picture of {s}" if s.endswith("s") else f"a {s}" for s in SCENES] + [
        f"{t} style" for t in STYLES
    ]


# ----------------------------------------------------------------------------------------------------------- helpers
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    return y, x


def _vgrad(
    size: int, top: Sequence[float], bottom: Sequence[float], y0: float = 0.0, y1: float = 1.0
) -> Image:
    y, _ = _grid(size)
    t = np.clip((y - y0) / max(y1 - y0, 1e-3), 0, 1)[..., None]
    return (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t).astype(np.float32)


def _jit(rng: np.random.Generator, c: Sequence[float], amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(c, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 1)


def _paint(img: Image, mask: np.ndarray, color: Sequence[float] | np.ndarray) -> None:
    m = mask.astype(np.float32)[..., None] if mask.dtype == bool else mask[..., None]
    img *= 1 - m
    img += m * np.asarray(color, np.float32)


def _ridge(rng: np.random.Generator, size: int, base: float, amp: float, freqs: int = 3) -> np.ndarray:
    """A random 1-D height profile (fraction of the image height) sampled at each column."""
    x = np.linspace(0, 1, size, dtype=np.float32)
    h = np.full(size, base, np.float32)
    for k in range(1, freqs + 1):
        h += amp / k * np.sin(2 * np.pi * (k * x * rng.uniform(0.5, 1.5) + rng.uniform(0, 1)))
    return h


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur with edge padding (cumulative sums: cost independent of r)."""
    if r <= 0:
        return img
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / (2 * r + 1)
    return out


def luminance(img: Image) -> np.ndarray:
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).astype(np.float32)


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)


def _resize(img: Image, size: int) -> Image:
    """Area/bilinear resize of an (H, W, 3) float image to size x size via torch (fast, no extra dependency)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    mode = "area" if t.shape[-1] > size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=(size, size), mode=mode, **kw)[0].permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------------------------ scenes
def _sunset(rng: np.random.Generator, n: int) -> Image:
    hz = rng.uniform(0.55, 0.75)
    img = _vgrad(n, _jit(rng, (0.35, 0.15, 0.45)), _jit(rng, (1.0, 0.55, 0.15)), 0, hz)
    y, x = _grid(n)
    cx, cy, r = rng.uniform(0.25, 0.75), hz - rng.uniform(0.0, 0.1), rng.uniform(0.07, 0.14)
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    img += (np.exp(-((d / (r * 2.5)) ** 2)) * 0.35)[..., None] * np.array([1.0, 0.6, 0.2], np.float32)
    _paint(img, d < r, _jit(rng, (1.0, 0.85, 0.35), 0.05))
    ground = y > _ridge(rng, n, hz, 0.04)[None, :]
    _paint(img, ground, _jit(rng, (0.18, 0.06, 0.12), 0.05))
    return img


def _ocean(rng: np.random.Generator, n: int) -> Image:
    hz = rng.uniform(0.3, 0.5)
    img = _vgrad(n, _jit(rng, (0.45, 0.7, 0.95)), _jit(rng, (0.8, 0.9, 1.0)), 0, hz)
    y, x = _grid(n)
    sea = _vgrad(n, _jit(rng, (0.1, 0.45, 0.7)), _jit(rng, (0.02, 0.2, 0.45)), hz, 1)
    f = rng.uniform(25, 45)
    waves = 0.5 + 0.5 * np.sin(
        f * np.clip(y - hz, 0, None) ** 0.8 * 6 + 3 * np.sin(x * rng.uniform(4, 9) + rng.uniform(0, 6))
    )
    sea = sea + ((waves > 0.85) * 0.25 * np.clip((y - hz) * 3, 0, 1))[..., None]
    m = y > hz
    img[m] = sea[m]
    return img


def _forest(rng: np.random.Generator, n: int) -> Image:
    img = _vgrad(n, _jit(rng, (0.55, 0.75, 0.55)), _jit(rng, (0.15, 0.35, 0.12)))
    y, x = _grid(n)
    for _ in range(rng.integers(5, 10)):
        cx, w = rng.uniform(0, 1), rng.uniform(0.02, 0.05)
        top, base = rng.uniform(0.15, 0.5), rng.uniform(0.85, 1.0)
        _paint(
            img, (np.abs(x - cx) < w / 2) & (y > top + 0.15) & (y < base), _jit(rng, (0.35, 0.22, 0.1), 0.06)
        )
        half = (y - top) * rng.uniform(0.35, 0.55)
        tri = (y > top) & (y < top + rng.uniform(0.3, 0.45)) & (np.abs(x - cx) < half)
        _paint(img, tri, _jit(rng, (0.08, 0.4, 0.12), 0.07))
    return img


def _night_sky(rng: np.random.Generator, n: int) -> Image:
    img = _vgrad(n, _jit(rng, (0.01, 0.02, 0.1), 0.02), _jit(rng, (0.08, 0.1, 0.3), 0.05))
    y, x = _grid(n)
    stars = rng.random((n, n)) > rng.uniform(0.992, 0.997)
    img += (stars * rng.uniform(0.6, 1.0))[..., None].astype(np.float32)
    cx, cy, r = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.1)
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    img += (np.exp(-((d / (r * 2)) ** 2)) * 0.2)[..., None]
    _paint(img, d < r, _jit(rng, (0.95, 0.95, 0.8), 0.04))
    _paint(img, y > _ridge(rng, n, rng.uniform(0.8, 0.92), 0.03)[None, :], (0.0, 0.0, 0.02))
    return img


def _snowy_mountains(rng: np.random.Generator, n: int) -> Image:
    img = _vgrad(n, _jit(rng, (0.55, 0.7, 0.9)), _jit(rng, (0.85, 0.9, 0.97)))
    y, x = _grid(n)
    for _ in range(rng.integers(2, 5)):
        cx, peak, slope = rng.uniform(0, 1), rng.uniform(0.15, 0.5), rng.uniform(0.8, 1.6)
        surf = peak + slope * np.abs(x - cx)
        _paint(img, y > surf, _jit(rng, (0.45, 0.48, 0.55), 0.06))
        _paint(img, (y > surf) & (y < peak + rng.uniform(0.08, 0.18)), _jit(rng, (0.97, 0.97, 1.0), 0.03))
    _paint(
        img, y > _ridge(rng, n, rng.uniform(0.78, 0.9), 0.02)[None, :], _jit(rng, (0.93, 0.95, 0.98), 0.03)
    )
    return img


def _desert(rng: np.random.Generator, n: int) -> Image:
    hz = rng.uniform(0.35, 0.55)
    img = _vgrad(n, _jit(rng, (0.5, 0.75, 0.95)), _jit(rng, (0.85, 0.9, 0.95)), 0, hz)
    y, x = _grid(n)
    cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.05, hz - 0.15), rng.uniform(0.04, 0.07)
    _paint(img, np.sqrt((x - cx) ** 2 + (y - cy) ** 2) < r, (1.0, 0.97, 0.8))
    level = hz
    for k in range(3):
        dune = y > _ridge(rng, n, level, 0.05, 2)[None, :]
        shade = 1.0 - 0.12 * k
        _paint(img, dune, _jit(rng, (0.93 * shade, 0.75 * shade, 0.45 * shade), 0.05))
        level += rng.uniform(0.1, 0.2)
    return img


SCENE_FUNCS: dict[str, Callable[[np.random.Generator, int], Image]] = {
    "sunset": _sunset, "ocean": _ocean, "forest": _forest, "night sky": _night_sky,
    "snowy mountains": _snowy_mountains, "desert": _desert,
}  # fmt: skip


def render_scene(scene: str, rng: np.random.Generator, size: int = 256) -> Image:
    img = SCENE_FUNCS[scene](rng, size)
    img = img + rng.normal(0, 0.015, img.shape).astype(
        np.float32
    )  # mild texture so flat areas are not perfect
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------------------------------------- content
def random_shapes(rng: np.random.Generator, size: int = 256) -> Image:
    img = _vgrad(size, rng.random(3), rng.random(3))
    y, x = _grid(size)
    for _ in range(rng.integers(3, 9)):
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.25)]
        kind = rng.integers(0, 3)
        if kind == 0:
            m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        elif kind == 1:
            m = (np.abs(x - cx) < r) & (np.abs(y - cy) < r * rng.uniform(0.4, 1.5))
        else:
            m = (np.abs(x - cx) + np.abs(y - cy)) < r
        _paint(img, m, rng.random(3))
    return img


@functools.cache
def _photo(name: str) -> np.ndarray:
    import skimage
    from PIL import Image as PILImage

    path = Path(skimage.__file__).parent / "data" / name
    arr = np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float32) / 255.0
    arr.setflags(write=False)
    return arr


def photo_crop(name: str, rng: np.random.Generator, size: int = 256, jitter: bool = True) -> Image:
    """A random square crop (40-100% of the short side), random flip and colour jitter of a skimage photo."""
    src = _photo(name)
    h, w, _ = src.shape
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    img = _resize(src[y0 : y0 + side, x0 : x0 + side], size)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if jitter:
        gain = rng.uniform(0.8, 1.2, 3).astype(np.float32)
        img = (img - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.08, 0.08)
        img = img * gain
    return np.clip(img, 0, 1).astype(np.float32)


def photo_center(name: str, size: int = 256) -> Image:
    """Deterministic centre crop of a photo (evaluation content)."""
    src = _photo(name)
    h, w, _ = src.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return _resize(src[y0 : y0 + s, x0 : x0 + s], size)


# ------------------------------------------------------------------------------------------------------------ styles
def _palette_map(t: np.ndarray, stops: Sequence[Sequence[float]]) -> Image:
    """Map values in [0, 1] through a piecewise-linear colour palette."""
    pal = np.asarray(stops, np.float32)
    pos = np.clip(t, 0, 1) * (len(pal) - 1)
    i = np.minimum(pos.astype(np.int64), len(pal) - 2)
    f = (pos - i)[..., None]
    return pal[i] * (1 - f) + pal[i + 1] * f


def _edges(img: Image) -> np.ndarray:
    e = sobel_magnitude(_box_blur(luminance(img), 1))
    return np.clip(e / (np.percentile(e, 97) + 1e-3), 0, 1)


def style_neon(img: Image) -> Image:
    e = _edges(img)
    glow = np.clip(_box_blur(e, 4) * 2.5, 0, 1)
    hue = _palette_map(luminance(_box_blur(img, 2)), [(1.0, 0.1, 0.9), (0.6, 0.2, 1.0), (0.1, 0.9, 1.0)])
    out = hue * np.maximum(e, 0.6 * glow)[..., None] + np.array([0.03, 0.0, 0.08], np.float32)
    return np.clip(out, 0, 1)


def style_sketch(img: Image) -> Image:
    g = luminance(img)
    e = _edges(img)
    paper = 0.93 + 0.05 * g  # faint shading from the input's brightness
    out = paper * (1 - 0.85 * e)
    return np.repeat(np.clip(out, 0, 1)[..., None], 3, axis=2)


def style_fire(img: Image) -> Image:
    g = luminance(img)
    return _palette_map(
        g, [(0.05, 0.0, 0.0), (0.6, 0.05, 0.0), (1.0, 0.4, 0.0), (1.0, 0.8, 0.1), (1.0, 1.0, 0.7)]
    )


def style_ice(img: Image) -> Image:
    g = luminance(img)
    return _palette_map(g, [(0.0, 0.05, 0.25), (0.1, 0.35, 0.7), (0.45, 0.8, 0.95), (0.9, 0.98, 1.0)])


def style_mosaic(img: Image, tile: int = 16) -> Image:
    n = img.shape[0]
    k = n // tile
    small = img[: k * tile, : k * tile].reshape(k, tile, k, tile, 3).mean(axis=(1, 3))
    small = np.round(small * 4) / 4  # posterised tile colours
    out = np.repeat(np.repeat(small, tile, axis=0), tile, axis=1)
    grout = np.zeros((n, n), bool)
    grout[::tile, :] = grout[:, ::tile] = True
    grout[tile - 1 :: tile, :] = grout[:, tile - 1 :: tile] = True
    out[grout] = (0.12, 0.1, 0.08)
    return out


def style_pop_art(img: Image) -> Image:
    g = luminance(_box_blur(img, 1))
    # three flat saturated bands by brightness, thick black outlines
    pal = np.array([(0.9, 0.1, 0.45), (0.15, 0.55, 1.0), (1.0, 0.9, 0.1)], np.float32)
    q = np.clip((g * 3).astype(np.int64), 0, 2)
    out = pal[q]
    e = np.clip(_box_blur(_edges(img), 1) * 2.0, 0, 1) > 0.45
    out[e] = 0.0
    return out


STYLE_FUNCS: dict[str, Callable[[Image], Image]] = {
    "neon": style_neon, "sketch": style_sketch, "fire": style_fire, "ice": style_ice,
    "mosaic": style_mosaic, "pop art": style_pop_art,
}  # fmt: skip


def apply_style(style: str, img: Image) -> Image:
    return np.clip(STYLE_FUNCS[style](np.asarray(img, np.float32)), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------- samples
def _to_uint8(img: Image) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def random_content(rng: np.random.Generator, size: int = 256) -> tuple[Image, int | None]:
    """Content for a style sample: (image, scene index or None)."""
    u = rng.random()
    if u < 0.4:
        s = int(rng.integers(len(SCENES)))
        return render_scene(SCENES[s], rng, size), s
    if u < 0.6:
        return random_shapes(rng, size), None
    return photo_crop(str(rng.choice(TRAIN_PHOTOS)), rng, size), None


def make_sample(rng: np.random.Generator, size: int = 256, scene_fraction: float = 0.35) -> Sample:
    if rng.random() < scene_fraction:
        s = int(rng.integers(len(SCENES)))
        img = render_scene(SCENES[s], rng, size)
        return Sample(_to_uint8(img), scene_caption(SCENES[s], rng), s, s, None)
    t = int(rng.integers(len(STYLES)))
    content, s = random_content(rng, size)
    img = apply_style(STYLES[t], content)
    # half of the styled scenes name both ("a forest in fire style") so prompts can combine them
    name_scene = s is not None and rng.random() < 0.5
    cap = style_caption(STYLES[t], rng, SCENES[s] if name_scene and s is not None else None)
    return Sample(_to_uint8(img), cap, len(SCENES) + t, s, t)


def make_dataset(n: int, seed: int, size: int = 256) -> tuple[np.ndarray, list[str], np.ndarray]:
    """n samples: images (n, size, size, 3) uint8, captions, labels (n,) int64. Deterministic under seed."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    captions: list[str] = []
    labels = np.empty(n, np.int64)
    for i in range(n):
        smp = make_sample(rng, size)
        images[i], labels[i] = smp.image, smp.label
        captions.append(smp.caption)
    return images, captions, labels


def caption_corpus(seed: int = 0, n: int = 4000) -> list[str]:
    """Captions for training the tokenizer: every template with every scene/style, plus random draws."""
    rng = np.random.default_rng(seed)
    out = [c for s in SCENES for c in (t.format(s=s) for t in _SCENE_TEMPLATES + _SCENE_PLURAL_TEMPLATES)]
    out += [t.format(t=st) for st in STYLES for t in _STYLE_TEMPLATES]
    out += [t.format(s=s, t=st) for s in SCENES for st in STYLES for t in _MIXED_TEMPLATES]
    for _ in range(n):
        if rng.random() < 0.4:
            out.append(scene_caption(str(rng.choice(SCENES)), rng))
        else:
            out.append(
                style_caption(
                    str(rng.choice(STYLES)), rng, str(rng.choice(SCENES)) if rng.random() < 0.5 else None
                )
            )
    return out
