"""``streamrt bench binauralflow``: streaming speed of BinauralFlow at 48 kHz.

A stream of ``--seconds`` of speech-like mono audio goes through the streaming path (``BinauralStreamer``: streaming
STFT, the early-skip midpoint solver with the buffer bank, streaming ISTFT) in chunks of ``--chunk-ms``, then a
flush. ``stream_speed`` is audio seconds per wall second (> 1: faster than real time), the median of ``--repeats``.

Models: ``default`` (the embedded ``assets/binauralflow-small``) and ``full`` (the ~78 M-parameter configuration with
random weights, measured on a shorter stream, ``--full-seconds``: it is a GPU-sized model).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator

import torch

from pipelines.binauralflow.flow import Schedule
from pipelines.binauralflow.model import FULL, CausalUNet, count_parameters
from pipelines.binauralflow.streaming import SAMPLE_RATE, BinauralStreamer
from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.bench.timing import measure_interleaved
from streamrt.errors import ParamError, StreamrtError

FIELDS = ("suite", "model", "params", "nfe", "chunk_ms", "stream_speed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=3, warmup=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="stream length of the default model (s)")
    parser.add_argument(
        "--full-seconds", type=float, default=0.5, help="stream length of the full-size model (s)"
    )
    parser.add_argument(
        "--chunk-ms", default="20,100", help="comma-separated chunk sizes in ms (default 20,100)"
    )
    parser.add_argument("--nfe", type=int, default=6, help="network evaluations (default 6 of --steps)")
    parser.add_argument("--steps", type=int, default=12, help="evaluations of the full schedule (default 12)")
    parser.add_argument("--models", default="default,full", help="which models: default, full (default both)")
    parser.add_argument(
        "--model", default=None, metavar="DIR", help="model folder instead of the embedded one"
    )


def test_signal(seconds: float) -> torch.Tensor:
    n = int(seconds * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n) / SAMPLE_RATE
    voiced = sum(torch.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 20))
    return (
        0.05 * voiced * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)) + 0.01 * torch.randn(n, generator=g)
    )[None]


def stream_once(streamer: BinauralStreamer, mono: torch.Tensor, chunk: int) -> None:
    streamer.reset()
    for i in range(0, mono.shape[-1], chunk):
        streamer.push(mono[:, i : i + chunk])
    streamer.flush()


def _models(args: argparse.Namespace) -> Iterator[tuple[str, CausalUNet | None, float, str]]:
    from pipelines.binauralflow.generator import read_model

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name == "default":
            try:
                yield name, read_model(args.model), args.seconds, ""
            except StreamrtError as exc:
                yield name, None, args.seconds, str(exc)
        elif name == "full":
            torch.manual_seed(0)
            yield name, CausalUNet(FULL).eval(), args.full_seconds, ""
        else:
            raise ParamError(f"unknown model {name!r}; use default and/or full")


def run(args: argparse.Namespace) -> Iterator[Row]:
    try:
        chunks_ms = [float(c) for c in args.chunk_ms.split(",") if c.strip()]
    except ValueError as exc:
        raise ParamError(f"--chunk-ms expects numbers, got {args.chunk_ms!r}") from exc
    schedule = Schedule(args.steps, args.nfe)
    for name, net, seconds, error in _models(args):
        for chunk_ms in chunks_ms:
            row: Row = {"suite": "binauralflow", "model": name, "nfe": args.nfe, "chunk_ms": chunk_ms}
            if net is None:
                yield {**row, "params": None, "stream_speed": None, "error": error}
                continue
            mono = test_signal(seconds)
            chunk = max(1, round(chunk_ms * SAMPLE_RATE / 1000))
            pose = torch.tensor([1.0, 0.5, 0.0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
            streamer = BinauralStreamer(net, schedule, 0, lambda f, p=pose: p.expand(len(f), -1))
            full = name == "full"
            (wall,) = measure_interleaved(
                [lambda s=streamer, m=mono, c=chunk: stream_once(s, m, c)],
                repeats=1 if full else args.repeats,
                warmup=0 if full else args.warmup,
            )
            yield {
                **row,
                "params": count_parameters(net),
                "stream_speed": seconds / wall,
                "seconds": seconds,
                "frames_per_eval": round(chunk / 128, 2),
            }


SUITE = Suite(
    name="binauralflow",
    help="BinauralFlow streaming speed at 48 kHz (audio seconds per wall second) for the default and full-size models",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=run,
)
