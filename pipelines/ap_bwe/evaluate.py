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
    packed = PackedAPBWE.from_module(model)
    model_lsd, plain_lsd = [], []
    for nb, wb in data:
        y = enhance(packed, nb)
        model_lsd.append(float(lsd(y, wb)))
        plain_lsd.append(float(lsd(nb, wb)))
    return {
        "utterances": len(data),
        "seconds": sum(wb.shape[-1] for _, wb in data) / 16_000,
        "lsd_model": statistics.fmean(model_lsd),
        "lsd_plain_resampling": statistics.fmean(plain_lsd),
        "model_better_on": sum(m < p for m, p in zip(model_lsd, plain_lsd, strict=True)),
    }


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
            out["summary"][name] = {k: round(out[name][k], 3) for k in ("lsd_model", "lsd_plain_resampling")}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="LSD of an AP-BWE model folder vs plain resampling")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("runs/speech"))
    parser.add_argument("--espeak", type=int, default=24)
    parser.add_argument("--festival", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = evaluate_folder(args.folder, data_dir=args.data_dir, espeak=args.espeak, festival=args.festival)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)  # noqa: T201 - a command-line entry point
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
