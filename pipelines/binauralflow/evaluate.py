"""The card's metrics: BinauralFlow against the plain DSP renderer and duplicated mono, on held-out speech and
held-out positions, scored against the simulated binaural recording (HRTF x distance + the room).

Metrics (as the paper names them; computed here on 48 kHz waveforms of both ears):

- ``l2``: mean squared error of the waveforms;
- ``amplitude``: mean absolute difference of STFT magnitudes (512-point Hann window, hop 128), over all bins;
- ``phase``: mean absolute wrapped difference of STFT phases in radians, over all bins (noise-level bins included,
  so unrelated signals score about pi / 2);

plus the interaural cues of a source on each side: the level difference (dB, left minus right) and the time
difference (the lag of the interaural cross-correlation peak, in samples; positive when the left ear leads).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from buffers.stft import stft
from pipelines.binauralflow.flow import Schedule, compress, decompress
from pipelines.binauralflow.generator import read_model
from pipelines.binauralflow.hrtf import DEFAULT_MHR, load_mhr
from pipelines.binauralflow.model import CausalUNet
from pipelines.binauralflow.simulate import LISTENER, ROOM, SPEECH_RMS, dsp_render, render, sample_position
from pipelines.binauralflow.streaming import (
    HOP,
    N_FFT,
    SAMPLE_RATE,
    frames_offline,
    mono_features,
    render_offline,
    stereo_spectrum,
)

log = logging.getLogger(__name__)


def metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """l2, amplitude and phase errors of (2, S) predictions against (2, S) targets."""
    p = stft(pred, N_FFT, HOP)
    t = stft(target, N_FFT, HOP)
    return {
        "l2": float((pred - target).pow(2).mean()),
        "amplitude": float((p.abs() - t.abs()).abs().mean()),
        "phase": float(torch.angle(p * t.conj()).abs().mean()),
    }


def interaural(binaural: torch.Tensor, max_lag: int = 48) -> tuple[float, int]:
    """(level difference left - right in dB, lag in samples by which the left ear leads the right)."""
    left, right = binaural[0].double(), binaural[1].double()
    ild = 10 * math.log10(float(left.pow(2).sum()) / max(float(right.pow(2).sum()), 1e-20))
    n = left.shape[0]
    spec = torch.fft.rfft(right, 2 * n) * torch.fft.rfft(left, 2 * n).conj()
    xcorr = torch.fft.irfft(spec, 2 * n)  # xcorr[k] = sum_t left[t] right[t + k]
    lags = torch.cat([xcorr[: max_lag + 1], xcorr[-max_lag:]])
    k = int(torch.argmax(lags))
    return ild, k if k <= max_lag else k - (2 * max_lag + 1)


def constant_poses(position: np.ndarray):
    pose = torch.cat([torch.tensor([*position, 1.0, 0.0, 0.0, 0.0], dtype=torch.float32), LISTENER])
    return lambda frames: pose.expand(len(frames), -1)


def model_render(net: CausalUNet, mono: torch.Tensor, position: np.ndarray, nfe: int = 6, seed: int = 0):
    return render_offline(net, mono, Schedule(12, nfe), seed, constant_poses(position))


def warp_render(net: CausalUNet, mono: torch.Tensor, position: np.ndarray) -> torch.Tensor:
    """The condition pair alone as audio (no flow): what the spherical head of ``warp`` predicts from the poses, the
    floor the network has to improve on. The mono signal in both ears for a model without the warp."""
    poses, cfg = constant_poses(position), net.config

    def pair_frames(spec: torch.Tensor) -> torch.Tensor:
        x = mono_features(compress(spec, cfg.spec_exponent, cfg.spec_scale))
        with torch.no_grad():
            pair = net.pair(x, poses(torch.arange(x.shape[2]))[None])
        return decompress(stereo_spectrum(pair), cfg.spec_exponent, cfg.spec_scale)

    return frames_offline(mono, pair_frames)


def held_out_speech(data_dir: Path, utterances: int, seed: int, quick: bool) -> dict[str, list[torch.Tensor]]:
    """Utterances never used in training: espeak-ng with other sentences and seed, and festival's voices."""
    from streamrt import speech

    sets = {
        "espeak": speech.corpus(
            data_dir / "heldout", utterances, engine="espeak", sample_rate=SAMPLE_RATE, seed=1000 + seed
        )
    }
    if not quick and speech.available("festival"):
        sets["festival"] = speech.corpus(
            data_dir / "heldout", utterances, engine="festival", sample_rate=SAMPLE_RATE, seed=2000 + seed
        )
    if quick:  # CI smoke run: half a second of each is enough to exercise every metric
        sets = {k: [u[:, : SAMPLE_RATE // 2] for u in v] for k, v in sets.items()}
    return {k: [u / u.pow(2).mean().sqrt().clamp_min(1e-6) * SPEECH_RMS for u in v] for k, v in sets.items()}


def evaluate(
    net: CausalUNet,
    speech_sets: dict[str, list[torch.Tensor]],
    positions: int,
    seed: int,
    hrtf_path: Path = DEFAULT_MHR,
) -> dict:
    hrtf = load_mhr(hrtf_path)
    rng = np.random.default_rng(10_000 + seed)
    systems = ("binauralflow", "dsp", "mono") + (("warp",) if net.config.warp else ())
    totals: dict[str, dict[str, list[float]]] = {s: {"l2": [], "amplitude": [], "phase": []} for s in systems}
    per_set: dict[str, dict[str, dict[str, float]]] = {}
    for name, utts in speech_sets.items():
        scores: dict[str, dict[str, list[float]]] = {
            s: {"l2": [], "amplitude": [], "phase": []} for s in systems
        }
        for mono in utts:
            for _ in range(positions):
                position = sample_position(rng)
                target = render(mono, position, hrtf, ROOM)
                preds = {
                    "binauralflow": model_render(net, mono, position),
                    "dsp": dsp_render(mono, position, hrtf),
                    "mono": mono.expand(2, -1),
                }
                if net.config.warp:
                    preds["warp"] = warp_render(net, mono, position)
                for s, pred in preds.items():
                    for k, v in metrics(pred, target).items():
                        scores[s][k].append(v)
                        totals[s][k].append(v)
        per_set[name] = {s: {k: float(np.mean(v)) for k, v in m.items()} for s, m in scores.items()}
    overall = {s: {k: float(np.mean(v)) for k, v in m.items()} for s, m in totals.items()}
    return {"overall": overall, "per_set": per_set, "pairs": len(totals["dsp"]["l2"])}


def lateral_cues(net: CausalUNet, mono: torch.Tensor, hrtf_path: Path = DEFAULT_MHR) -> dict:
    """ILD / ITD of a source 1.5 m to the left and to the right, for the target, the model (NFE 6 of 12 and the full
    12) and the DSP renderer."""
    hrtf = load_mhr(hrtf_path)
    out = {}
    for side, y in (("left", 1.5), ("right", -1.5)):
        position = np.array([0.0, y, 0.0])
        renders = {
            "target": render(mono, position, hrtf, ROOM),
            "binauralflow": model_render(net, mono, position),
            # the full schedule (no early skip): without the warp the time difference survived only there (card)
            "binauralflow_nfe12": model_render(net, mono, position, nfe=12),
            "dsp": dsp_render(mono, position, hrtf),
        }
        if net.config.warp:
            renders["warp"] = warp_render(net, mono, position)
        out[side] = {
            k: dict(zip(("ild_db", "itd_samples"), interaural(v), strict=True)) for k, v in renders.items()
        }
    return out


def ild_by_azimuth(
    net: CausalUNet, mono: torch.Tensor, hrtf_path: Path = DEFAULT_MHR, count: int = 12
) -> dict:
    hrtf = load_mhr(hrtf_path)
    rows = []
    for i in range(count):
        az = -math.pi + 2 * math.pi * i / count
        position = 1.5 * np.array([math.cos(az), math.sin(az), 0.0])
        rows.append(
            {
                "azimuth_deg": round(math.degrees(az), 1),
                "target": interaural(render(mono, position, hrtf, ROOM))[0],
                "binauralflow": interaural(model_render(net, mono, position))[0],
                "dsp": interaural(dsp_render(mono, position, hrtf))[0],
            }
        )
        if net.config.warp:
            rows[-1]["warp"] = interaural(warp_render(net, mono, position))[0]
    return {"rows": rows}


def run_card_evaluation(
    model_dir: Path,
    *,
    data_dir: Path,
    hrtf_path: Path = DEFAULT_MHR,
    utterances: int = 8,
    positions: int = 4,
    seed: int = 1,
    quick: bool = False,
    losses: list[float] | None = None,
) -> dict:
    """Evaluate the saved model (as it loads: fp16 weights) and write eval_metrics.json and plot.png."""
    net = read_model(model_dir)
    speech_sets = held_out_speech(data_dir, utterances, seed, quick)
    result = evaluate(net, speech_sets, positions, seed, hrtf_path)
    probe = speech_sets["espeak"][0]
    result["lateral"] = lateral_cues(net, probe, hrtf_path)
    result["ild_by_azimuth"] = ild_by_azimuth(net, probe, hrtf_path, count=4 if quick else 12)
    (model_dir / "eval_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    from pipelines.binauralflow.plot import card_plot

    card_plot(model_dir / "plot.png", losses or [], result["ild_by_azimuth"]["rows"])
    log.info("evaluation: %s", json.dumps(result["overall"]))
    return result
