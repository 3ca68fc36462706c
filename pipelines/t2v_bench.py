"""``streamrt bench t2v``: the streaming text-to-video generators, one JSON line each.

For each pipeline (StreamDiT, Rolling Forcing, StreamingT2V): load the default (``assets/<name>-tiny``, or
``--model NAME=DIR``), prepare with the model's default prompt, then pull ``--frames`` frames as a stream would.

- ``first_frame_s``: wall time of the first pull after ``prepare`` (start-up included: StreamDiT's full generation,
  Rolling Forcing's window fill, StreamingT2V's first chunk);
- ``fps``: frames per wall second from frame 2 to the last (the stream's steady rate);
- ``rss_mb_100`` / ``rss_mb_1000``: the process's resident memory after frame 100 and frame 1000, and
  ``rss_growth_pct`` between them (the issue's bound: at most 5%).

A pipeline that cannot load (no trained default yet) becomes a row with an ``error`` field, so the other rows still
come out. ``--random-weights`` measures the architectures of the training recipes' defaults with random weights
instead (rows say ``"weights": "random"``): the speed of a model does not depend on its weights, so this sizes a
recipe before training it. Frames are not encoded: this measures the generators.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Iterator
from fractions import Fraction

from streamrt.bench.suite import Row, Suite, add_common_arguments
from streamrt.errors import ParamError, StreamrtError

PIPELINES = {
    "streamdit": "pipelines.streamdit:StreamDiTGenerator",
    "rolling-forcing": "pipelines.rolling_forcing:RollingForcingGenerator",
    "streamingt2v": "pipelines.streamingt2v:StreamingT2VGenerator",
}
FIELDS = ("suite", "pipeline", "width", "height", "fps", "first_frame_s", "rss_mb_100", "rss_mb_1000")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=1, warmup=0)
    parser.add_argument("--frames", type=int, default=1000, help="frames per stream (default 1000)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated subset")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="model folder of a pipeline (repeatable)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights in each recipe's default architecture (speed only; never a default)",
    )


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; ru_maxrss elsewhere, a peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _class(name: str):
    import importlib

    module, _, attr = PIPELINES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def random_folder(name: str, root) -> str:
    """A model folder with the recipe's default architecture and random weights (for speed measurements only)."""
    import importlib

    import torch

    from streamrt.synthetic_video import all_captions
    from streamrt.video.codec import CodecConfig, FrameCodec
    from streamrt.video.dit import DiTConfig, VideoDiT
    from streamrt.video.folder import save_folder
    from streamrt.video.text import TextConfig, WordTextEncoder, build_vocab

    recipe = importlib.import_module(PIPELINES[name].split(":")[0] + ".train")
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser)
    a = parser.parse_args([])
    torch.manual_seed(0)
    tc = TextConfig(vocab=build_vocab(all_captions()), dim=a.text_dim, max_words=16, layers=1, heads=4)
    cc = CodecConfig(latent_channels=4, width=32, levels=3)
    text, codec = WordTextEncoder(tc), FrameCodec(cc)
    folder = root / name
    if name == "streamingt2v":
        from pipelines.streamingt2v.model import StreamingT2VConfig, StreamingT2VModel
        from pipelines.streamingt2v.pipeline import folder_config

        unet = recipe.make_unet(a.channels, a.text_dim, a.size // cc.scale)
        cfg = StreamingT2VConfig(chunk_frames=a.chunk_frames, cond_frames=a.cond_frames, steps=a.sample_steps,
                                 guidance_scale=a.guidance, text_tokens=tc.max_words)  # fmt: skip
        m = StreamingT2VModel(unet, cfg)
        modules = {"unet": unet, "cam": m.cam, "apm": m.apm, "text": text, "codec": codec}
        save_folder(folder, name, folder_config(unet.config, tc, cc, cfg, a.size), modules)
        return str(folder)
    dc = DiTConfig(in_dim=4, out_dim=4, dim=a.dim, ffn_dim=2 * a.dim, num_heads=a.heads, num_layers=a.layers,
                   text_dim=a.text_dim, freq_dim=64 if a.dim >= 64 else 32)  # fmt: skip
    if name == "rolling-forcing":
        from pipelines.rolling_forcing.model import RollingConfig
        from pipelines.rolling_forcing.pipeline import folder_config

        config = folder_config(dc, tc, cc, RollingConfig(frames_per_block=a.frames_per_block), a.size)
    else:
        from pipelines.streamdit.pipeline import StreamDiTConfig
        from pipelines.streamdit.pipeline import folder_config as sd_config

        sd = StreamDiTConfig(
            ref_frames=a.ref_frames, num_chunks=a.chunks, chunk_frames=a.chunk_frames, window=list(a.window)
        )
        config = sd_config(dc, tc, cc, sd, a.size)
    save_folder(folder, name, config, {"transformer": VideoDiT(dc), "text": text, "codec": codec})
    return str(folder)


def measure(name: str, model: str | None, frames: int) -> Row:
    row: Row = {"suite": "t2v", "pipeline": name, "weights": "trained" if model is None else "folder"}
    try:
        gen = _class(name).load(model=model)
    except StreamrtError as exc:
        return {**row, "error": str(exc)}
    try:
        gen.prepare({})
        gc.collect()
        tb = Fraction(1, 30)
        t0 = time.perf_counter()
        first = gen.pull(0, tb)[0]
        t1 = time.perf_counter()
        rss: dict[int, float] = {}
        for i in range(1, frames):
            gen.pull(i, tb)
            if i + 1 in (100, 1000):
                rss[i + 1] = rss_mb()
        t2 = time.perf_counter()
    finally:
        gen.close()
    out = {
        **row,
        "width": first.width,
        "height": first.height,
        "fps": (frames - 1) / (t2 - t1) if frames > 1 else float("nan"),
        "first_frame_s": t1 - t0,
        "rss_mb_100": rss.get(100, float("nan")),
        "rss_mb_1000": rss.get(1000, float("nan")),
        "frames": frames,
    }
    if 100 in rss and 1000 in rss:
        out["rss_growth_pct"] = 100 * (rss[1000] - rss[100]) / rss[100]
    return out


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.frames < 2:
        raise ParamError(f"--frames must be at least 2; got {args.frames}")
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
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                row = measure(name, random_folder(name, Path(tmp)), args.frames)
                yield {**row, "weights": "random"}
        return
    for name in names:
        yield measure(name, models.get(name), args.frames)


SUITE = Suite(
    name="t2v",
    help="streaming text-to-video: fps, first-frame latency and memory over a long stream, one row per pipeline",
    fields=FIELDS,
    add_arguments=add_arguments,
    run=run,
)
