"""The card's metrics: LSD of an AP-BWE model against plain resampling on held-out speech.

Held-out data: espeak-ng utterances with voices and sentences the recipe never trains on, and festival utterances (a
different synthesiser). For each utterance the narrowband input is the wideband signal downsampled to 8 kHz and
resampled back up (soxr HQ); "plain resampling" is that input itself, the model's output is the streamed-exact offline
enhancement of it. LSD is the release's (``losses.lsd``), per utterance, averaged.

    python -m pipelines.ap_bwe.evaluate assets/ap-bwe-8k-16k --json eval.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from pipelines.ap_bwe.checkpoint import load_folder
from pipelines.ap_bwe.losses import lsd
from pipelines.ap_bwe.model import APBWE
from pipelines.ap_bwe.streaming import PackedAPBWE, enhance


def lsd_table(model: APBWE, data: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """LSD of the model (float32, the official arithmetic, and the int8 engine) and of plain resampling."""
    packed = PackedAPBWE.from_module(model)
    int8 = packed.with_int8()
    model_lsd, int8_lsd, plain_lsd = [], [], []
    for nb, wb in data:
        model_lsd.append(float(lsd(enhance(packed, nb), wb)))
        int8_lsd.append(float(lsd(enhance(int8, nb), wb)))
        plain_lsd.append(float(lsd(nb, wb)))
    return {
        "utterances": len(data),
        "seconds": sum(wb.shape[-1] for _, wb in data) / 16_000,
        "lsd_model": statistics.fmean(model_lsd),
        "lsd_model_int8": statistics.fmean(int8_lsd),
        "lsd_plain_resampling": statistics.fmean(plain_lsd),
        "model_better_on": sum(m < p for m, p in zip(model_lsd, plain_lsd, strict=True)),
    }


def spectrogram_image(panels: list[tuple[str, torch.Tensor]], path: Path, rate: int = 16_000) -> Path:
    """Log-power spectrograms side by side (0 Hz at the bottom, rate/2 at the top) as a PNG, with a caption row."""
    import numpy as np
    from PIL import Image, ImageDraw

    window = torch.hann_window(512)
    specs = []
    for _, x in panels:
        power = torch.stft(x, 512, 128, window=window, return_complex=True).abs().square()
        db = 10 * torch.log10(power.clamp(min=1e-10))
        specs.append(db.flip(0))  # low frequencies at the bottom
    top = max(float(s.max()) for s in specs)
    tiles = []
    for (title, _), db in zip(panels, specs, strict=True):
        v = ((db - (top - 80)) / 80).clamp(0, 1).numpy()  # an 80 dB range
        rgb = np.stack([v**0.5, v**1.5, 0.4 * v + 0.6 * v**3], axis=-1)
        tile = Image.fromarray((rgb * 255).astype(np.uint8)).resize((360, 257))
        canvas = Image.new("RGB", (360, 277), "white")
        canvas.paste(tile, (0, 20))
        ImageDraw.Draw(canvas).text((4, 4), title, fill="black")
        tiles.append(canvas)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), 277), "white")
    x0 = 0
    for t in tiles:
        out.paste(t, (x0, 0))
        x0 += t.width + 8
    out.save(path)
    return path


def evaluate_folder(folder: str | Path, *, data_dir: Path, espeak: int, festival: int, seed: int = 0) -> dict:
    from pipelines.ap_bwe.train import festival_pairs, speech_pairs
    from streamrt import speech

    model = load_folder(folder)
    out: dict = {"summary": {}}
    if espeak:
        out["espeak_held_out"] = lsd_table(model, speech_pairs(data_dir, espeak, split="eval", seed=seed))
    if festival and speech.available("festival"):
        out["festival"] = lsd_table(model, festival_pairs(data_dir, festival, seed=seed))
    for name in ("espeak_held_out", "festival"):
        if name in out:
            out["summary"][name] = {
                k: round(out[name][k], 3) for k in ("lsd_model", "lsd_model_int8", "lsd_plain_resampling")
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="LSD of an AP-BWE model folder vs plain resampling")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("runs/speech"))
    parser.add_argument("--espeak", type=int, default=24)
    parser.add_argument("--festival", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--figure", type=Path, default=None, help="PNG of spectrograms of a held-out festival utterance"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = evaluate_folder(args.folder, data_dir=args.data_dir, espeak=args.espeak, festival=args.festival)
    if args.figure:
        from pipelines.ap_bwe.train import festival_pairs

        nb, wb = festival_pairs(args.data_dir, 1, seed=0)[0]
        y = enhance(PackedAPBWE.from_module(load_folder(args.folder)), nb)
        panels = [
            ("narrowband input (8 kHz, resampled to 16 kHz)", nb),
            ("AP-BWE default", y),
            ("wideband reference", wb),
        ]
        spectrogram_image(panels, args.figure)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)  # noqa: T201 - a command-line entry point
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
