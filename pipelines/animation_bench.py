"""``streamrt bench animation``: the animation generators (RAIN, EvAnimate) streaming a driving video, one JSON line
each.

For each pipeline: load the default (``assets/<name>-tiny``, or ``--model NAME=DIR``), prepare it with its default
reference, then push ``--frames`` frames of a held-out puppet character in motion at the model's size, as a live
driving stream would arrive.

- ``fps``: input frames per wall second from frame ``--warm`` on (the window is full by then), condition
  extraction, the UNet pass per group, the LCM step and decoding included;
- ``latency_frames``: the declared algorithmic latency (a group fills, then 3 more groups of passes);
- ``condition_ms``: wall time per frame spent making the condition (RAIN: pose estimation by the pipeline's
  estimator + the pose map; EvAnimate: event simulation + slicing), inside the fps figure;
- ``step_ms``: wall time per group step (one UNet pass over the window, LCM step, decoding of the group that left).

``--random-weights`` measures the recipe's default architecture with random weights (rows say
``"weights": "random"``; speed does not depend on the weights), for sizing before the default is trained.
A pipeline that cannot load becomes a row with an ``error`` field.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.errors import ParamError, StreamrtError


@dataclass(frozen=True)
class Target:
    generator: str  # "module:Class"
    recipe: str  # the training recipe module (its Condition and default arguments)


PIPELINES: dict[str, Target] = {
    "rain": Target("pipelines.rain:RainGenerator", "pipelines.rain.train"),
    "evanimate": Target("pipelines.evanimate:EvAnimateGenerator", "pipelines.evanimate.train"),
}
FIELDS = ("suite", "pipeline", "width", "height", "fps", "latency_frames", "condition_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument("--frames", type=int, default=128, help="driving frames per stream (default 128)")
    parser.add_argument("--warm", type=int, default=16, help="frames before timing starts (default 16)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated subset")
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=DIR", help="model folder (repeatable)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="the recipe's default architecture, random weights (speed only)",
    )


def _class(name: str):
    module, _, attr = PIPELINES[name].generator.partition(":")
    return getattr(importlib.import_module(module), attr)


def random_folder(name: str, root: Path) -> str:
    """A model folder in the recipe's default architecture with random weights (speed measurements only)."""
    import torch

    from streamrt.animation.backbone import AnimationBackbone
    from streamrt.animation.folder import save_model
    from streamrt.animation.training import add_arguments as recipe_arguments
    from streamrt.animation.training import backbone_config
    from streamrt.puppets import make_puppet_dataset, still

    recipe = importlib.import_module(PIPELINES[name].recipe)
    parser = argparse.ArgumentParser()
    recipe_arguments(parser, name=name)
    args = parser.parse_args([])
    torch.manual_seed(0)
    backbone = AnimationBackbone(backbone_config(args, recipe.CONDITION))
    ref = still(make_puppet_dataset(1, 1, args.size, seed=1, held_out=True).specs[0], args.size)
    folder = root / name
    save_model(folder, name, backbone, ref, {"condition": recipe.CONDITION.name})
    return str(folder)


def ping_pong(i: int, n: int) -> int:
    """Frame i of a clip of n frames played forth and back (a driving stream longer than the clip, no jumps)."""
    k = i % max(1, 2 * n - 2)
    return k if k < n else 2 * n - 2 - k


def measure(name: str, model: str | None, frames: int, warm: int) -> Row:
    import torch

    from streamrt.frames import VideoFrame
    from streamrt.puppets import make_puppet_dataset

    row: Row = {"suite": "animation", "pipeline": name, "weights": "trained" if model is None else "folder"}
    try:
        gen = _class(name).load(model=model)
    except StreamrtError as exc:
        return {**row, "error": str(exc)}
    size = gen.size
    clip = make_puppet_dataset(1, min(frames, 64), size, seed=99, held_out=True).clips[0]
    tb = Fraction(1, 30)
    condition_s = [0.0]
    inner = gen.condition_of

    def timed_condition(frame, index):
        t0 = time.perf_counter()
        out = inner(frame, index)
        condition_s[0] += time.perf_counter() - t0
        return out

    gen.condition_of = timed_condition  # type: ignore[method-assign]
    step_s, steps = [0.0], [0]
    try:
        gen.prepare({})
        stream = gen.stream
        inner_step = stream.step

        def timed_step(conditions, payload):
            t0 = time.perf_counter()
            out = inner_step(conditions, payload)
            step_s[0] += time.perf_counter() - t0
            steps[0] += 1
            return out

        stream.step = timed_step  # type: ignore[method-assign]
        t_start = None
        outputs = 0
        for i in range(frames):
            if i == warm:
                t_start = time.perf_counter()
                condition_s[0], step_s[0], steps[0] = 0.0, 0.0, 0
            frame = VideoFrame(data=clip[ping_pong(i, clip.shape[0])], pts=i, time_base=tb)
            outputs += len(gen.push(frame))
        elapsed = time.perf_counter() - t_start if t_start is not None else float("nan")
        outputs += len(gen.flush())
    finally:
        gen.close()
    timed = frames - warm
    return {
        **row,
        "width": size,
        "height": size,
        "fps": timed / elapsed,
        "latency_frames": gen.spec.latency,
        "condition_ms": 1000 * condition_s[0] / timed,
        "step_ms": 1000 * step_s[0] / max(1, steps[0]),
        "frames": frames,
        "outputs": outputs,
        "threads": torch.get_num_threads(),
    }


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.frames <= args.warm:
        raise ParamError(f"--frames must exceed --warm ({args.warm}); got {args.frames}")
    models: dict[str, str] = {}
    for item in args.model:
        name, sep, folder = item.partition("=")
        if not sep or name not in PIPELINES:
            raise ParamError(
                f"--model expects NAME=DIR with NAME one of {', '.join(PIPELINES)}; got {item!r}"
            )
        models[name] = folder
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    for name in names:
        if name not in PIPELINES:
            raise ParamError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    if args.random_weights:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                row = measure(name, random_folder(name, Path(tmp)), args.frames, args.warm)
                yield {**row, "weights": "random"}
        return
    for name in names:
        yield measure(name, models.get(name), args.frames, args.warm)


SUITE = Suite(
    name="animation",
    help="live character animation (RAIN, EvAnimate): fps with condition extraction, latency, condition cost",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=run,
)
