"""``streamrt bench xstreamer``: one call with the talking character, measured through the streaming path.

The default model (``assets/xstreamer-tiny``, or ``--model DIR``) answers ``--turns`` held-out user turns on a
held-out portrait at 128x128, 25 fps, 16 kHz. One JSON line:

- ``av_speed``: seconds of audio + video produced per wall second (Thinker, Actor, frame and audio decoders);
  >= 1 is real time;
- ``first_audio_ms``: wall time from the end of a user turn to the first voiced audio of the reply (compute only;
  ``first_audio_media_ms`` is the same distance on the media clock, i.e. what a live listener waits in addition);
- ``lip_sync_corr`` / ``av_offset_ms``: the face probe's mouth opening against the audio's energy envelope, best-lag
  correlation and that lag (> 0: the video lags the audio);
- ``identity_distance``, ``face_detail`` (the head's fine detail against the portrait's: 1 = as crisp, a dissolving
  face falls towards 0) and ``words_said_fraction`` for context.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch

from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.errors import StreamrtError

FIELDS = ("suite", "width", "height", "av_speed", "first_audio_ms", "lip_sync_corr", "av_offset_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument(
        "--model", default=None, metavar="DIR", help="model folder (default: the embedded default)"
    )
    parser.add_argument("--turns", type=int, default=3, help="held-out user turns in the call (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> Iterator[Row]:
    from pipelines.xstreamer.evaluate import call_metrics, run_call
    from pipelines.xstreamer.pipeline import XStreamerGenerator
    from streamrt.dialogue import dialogue_pairs
    from streamrt.face_probe import FaceProbe

    row: Row = {"suite": "xstreamer", "width": 128, "height": 128}
    try:
        gen = XStreamerGenerator.load(model=args.model)
    except StreamrtError as exc:
        yield {**row, "error": str(exc)}
        return
    turns = [p.user for p in dialogue_pairs(args.turns, seed=args.seed + 1, split="held_out")]
    try:
        portraits = gen.model.portraits()
        gen.prepare({"seed": args.seed, "reference": str(portraits[-1]) if portraits else None})
        gen.next_chunk()  # warm-up: first-call allocations are not part of the figures
        metrics = call_metrics(run_call(gen, turns), FaceProbe.load())
    finally:
        gen.close()
    ordered = {k: metrics[k] for k in FIELDS if k in metrics}  # the fields first, then the rest
    yield {**row, **ordered, **metrics, "turns": len(turns), "threads": torch.get_num_threads()}


SUITE = Suite(
    name="xstreamer",
    help="X-Streamer talking character: real-time factor, reply latency, lip sync",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=run,
)
