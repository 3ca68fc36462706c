"""``ap-bwe``: offline and streaming speed of AP-BWE, in audio seconds per wall second, on 10 s of input.

Rows (``model``):
- ``official-16k``: the full-size architecture (29.76 M parameters, random weights: speed does not depend on them)
  at 16 kHz, the 8k->16k configuration;
- ``official-48k``: the same at 48 kHz;
- ``default``: the embedded default (``assets/ap-bwe-8k-16k``) at 16 kHz.

``offline_speed`` is the whole signal through ``streaming.enhance`` (STFT, network, ISTFT);
``stream_speed_20ms`` is the generator fed 20 ms ``AudioFrame`` chunks, flush included; ``official_offline_speed`` is
the published module run the way the release's inference script runs it (``torch.stft``, ``model(mag, pha)``,
``torch.istft``), measured interleaved with the others, and ``offline_vs_official`` the ratio. With ``--naive`` the
release's only way to stream is measured too: each 20 ms chunk recomputed with 29 frames of context on each side
(slow: tens of seconds per row at 48 kHz). With ``--precisions int8,bfloat16`` those engines are timed
as well (``offline_speed_int8``, ``stream_speed_20ms_int8``, ``..._bf16``; ``--bf16`` is ``--precisions bfloat16``).
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Iterator

import torch

from pipelines.ap_bwe.generator import PRECISIONS, APBWEGenerator
from pipelines.ap_bwe.model import APBWE, FULL_SIZE, count_parameters, enhance_reference
from pipelines.ap_bwe.streaming import PackedAPBWE, enhance
from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.bench.timing import measure_interleaved
from streamrt.frames import AudioFrame

MODELS = ("official-16k", "official-48k", "default")
CHUNK_MS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="input length (default 10 s)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--naive", action="store_true", help="also time naive streaming (recompute with context)"
    )
    parser.add_argument(
        "--precisions",
        default="",
        help="also time these engines besides float32, comma-separated: int8, bfloat16 (not the official output; "
        "fields offline_speed_<p>, stream_speed_20ms_<p>)",
    )
    parser.add_argument("--bf16", action="store_true", help="same as --precisions bfloat16")


def signal(seconds: float, rate: int) -> torch.Tensor:
    """Speech-like test input: harmonics of a wandering pitch (the speed does not depend on the content)."""
    t = torch.arange(round(seconds * rate)) / rate
    phase = 2 * math.pi * torch.cumsum(120 + 30 * torch.sin(2 * math.pi * 0.7 * t), 0) / rate
    return (0.1 * sum(torch.sin(k * phase) / k for k in range(1, 30))).float()


def build(name: str) -> tuple[APBWE, int]:
    if name == "default":
        gen = APBWEGenerator.load()
        return gen.model, gen.config.sample_rate or 16_000
    torch.manual_seed(0)
    return APBWE(FULL_SIZE).eval(), 16_000 if name == "official-16k" else 48_000


def streamer(gen: APBWEGenerator, x: torch.Tensor, rate: int):
    chunk = rate * CHUNK_MS // 1000
    frames = [
        AudioFrame(data=x[None, i : i + chunk], sample_rate=rate, pts=i) for i in range(0, x.shape[-1], chunk)
    ]

    def run() -> int:
        gen.reset()
        n = 0
        for f in frames:
            n += sum(o.samples for o in gen.push(f))
        n += sum(o.samples for o in gen.flush())
        assert n == x.shape[-1]
        return n

    return run


def naive_streamer(model: APBWE, x: torch.Tensor, rate: int, context_frames: int = 29):
    """Each chunk recomputed offline with ``context_frames`` STFT frames of audio on each side (the only way the
    release can stream: it has no state to carry)."""
    chunk = rate * CHUNK_MS // 1000
    ctx = context_frames * model.config.hop

    def run() -> None:
        for i in range(0, x.shape[-1], chunk):
            lo, hi = max(0, i - ctx), min(x.shape[-1], i + chunk + ctx)
            enhance_reference(model, x[None, lo:hi])

    return run


@torch.inference_mode()
def run(args: argparse.Namespace) -> Iterator[Row]:
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(MODELS))
    if unknown:
        from streamrt.errors import ParamError

        raise ParamError(f"unknown --models {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    extra = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.bf16 and "bfloat16" not in extra:
        extra.append("bfloat16")
    bad = sorted(set(extra) - set(PRECISIONS))
    if bad:
        from streamrt.errors import ParamError

        raise ParamError(f"unknown --precisions {', '.join(bad)}; choose from {', '.join(PRECISIONS[1:])}")
    extra = [p for p in extra if p != "float32"]
    for name in wanted:
        model, rate = build(name)
        x = signal(args.seconds, rate)
        packed = PackedAPBWE.from_module(model)
        gen = APBWEGenerator(model)
        gen.prepare({"target_rate": rate})
        fns = [
            functools.partial(enhance, packed, x),
            streamer(gen, x, rate),
            functools.partial(enhance_reference, model, x[None]),
        ]
        for precision in extra:
            gen_p = APBWEGenerator(model)
            gen_p.prepare({"target_rate": rate, "precision": precision})
            fns += [
                functools.partial(enhance, packed.with_precision(precision), x),
                streamer(gen_p, x, rate),
            ]
        if args.naive:
            fns.append(naive_streamer(model, x, rate))
        times = measure_interleaved(fns, args.repeats, args.warmup)
        seconds = x.shape[-1] / rate
        row: Row = {
            "suite": "ap-bwe",
            "model": name,
            "params": count_parameters(model),
            "offline_speed": seconds / times[0],
            "stream_speed_20ms": seconds / times[1],
            "official_offline_speed": seconds / times[2],
            "offline_vs_official": times[2] / times[0],
            "sample_rate": rate,
            "seconds": seconds,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
        }
        for i, precision in enumerate(extra):
            short = {"bfloat16": "bf16"}.get(precision, precision)
            row[f"offline_speed_{short}"] = seconds / times[3 + 2 * i]
            row[f"stream_speed_20ms_{short}"] = seconds / times[4 + 2 * i]
        if args.naive:
            row["naive_stream_speed_20ms"] = seconds / times[-1]
        yield row


SUITE = Suite(
    name="ap-bwe",
    help="AP-BWE offline and 20 ms streaming speed (audio s per wall s) at 16/48 kHz, vs the official code path",
    fields=("suite", "model", "params", "offline_speed", "stream_speed_20ms"),
    add_arguments=add_arguments,
    run=run,
)
