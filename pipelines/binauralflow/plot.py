"""The card's figure, drawn with Pillow (no plotting library in the environment): the training loss, and the
interaural level difference by azimuth for the target, the model and the DSP renderer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

W, H = 480, 320
COLOURS = {"target": (0, 0, 0), "binauralflow": (200, 40, 40), "dsp": (40, 90, 200), "loss": (200, 40, 40)}


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(120, 120, 120))
    draw.text((x0 + 6, y0 - 16), title, fill=(0, 0, 0))


def _line(draw, box, xs, ys, xr, yr, colour) -> None:
    x0, y0, x1, y1 = box
    pts = [
        (
            x0 + (x - xr[0]) / (xr[1] - xr[0] + 1e-12) * (x1 - x0),
            y1 - (y - yr[0]) / (yr[1] - yr[0] + 1e-12) * (y1 - y0),
        )
        for x, y in zip(xs, ys, strict=True)
        if math.isfinite(y)
    ]
    if len(pts) > 1:
        draw.line(pts, fill=colour, width=2)


def card_plot(path: Path, losses: list[float], ild_rows: list[dict]) -> None:
    img = Image.new("RGB", (2 * W, H), "white")
    draw = ImageDraw.Draw(img)
    box = (50, 30, W - 20, H - 40)
    _panel(draw, box, "training loss (L1 on v = y - z), log10, 50-step mean")
    if losses:
        k = max(1, min(50, len(losses) // 4 or 1))
        smooth = np.convolve(np.asarray(losses), np.ones(k) / k, mode="valid")
        ys = np.log10(np.maximum(smooth, 1e-8))
        _line(
            draw,
            box,
            list(range(len(ys))),
            list(ys),
            (0, max(len(ys) - 1, 1)),
            (ys.min(), ys.max()),
            COLOURS["loss"],
        )
        draw.text(
            (box[0], box[3] + 6),
            f"steps 0..{len(losses)}  log10 loss {ys.max():.2f}..{ys.min():.2f}",
            fill=(0, 0, 0),
        )
    box2 = (W + 50, 30, 2 * W - 20, H - 40)
    _panel(draw, box2, "ILD (dB, left - right) by azimuth at 1.5 m")
    if ild_rows:
        az = [r["azimuth_deg"] for r in ild_rows]
        keys = ("target", "binauralflow", "dsp")
        values = [r[k] for r in ild_rows for k in keys]
        lim = max(abs(min(values)), abs(max(values)), 1.0)
        for i, k in enumerate(keys):
            _line(draw, box2, az, [r[k] for r in ild_rows], (min(az), max(az)), (-lim, lim), COLOURS[k])
            draw.text((box2[0] + 8 + 110 * i, box2[1] + 6), k, fill=COLOURS[k])
        draw.text(
            (box2[0], box2[3] + 6),
            f"azimuth {min(az):.0f}..{max(az):.0f} deg (+90 = left); ILD +-{lim:.1f} dB",
            fill=(0, 0, 0),
        )
    img.save(path)
