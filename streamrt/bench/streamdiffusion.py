"""``streamdiffusion``: end-to-end img2img fps through the real generator path, with the time split by stage.

``fps`` is one over the median time of ``push`` on the generator ``open_generator`` returns (similarity filter
wrapper included, switched off as by default): uint8 frame in, conversion to float, VAE encode, one Stream Batch
pass, VAE decode, uint8 frame out -- in steady state, after the window has filled and at least 5 warm-up frames.

Interleaved with the pushes, the two stages are timed alone for the split: ``denoise_ms`` is one Stream Batch pass
of a second engine over the same weights, fed pre-encoded latents; ``vae_ms`` is one frame's encode plus decode.
``other_ms`` (frame time minus both) is what the generator adds around them: conversions and bookkeeping.

``--cfg-type`` and ``--vae DIR`` make the suite reproduce comparisons such as the issue's reference figures (the
reference pipeline on a 12.6 M-parameter UNet with a full-size AutoencoderTiny: 2.6 fps self, 2.25 fps full,
3.0 fps none at 256x256 with 2 steps): point ``--model`` at the same diffusers folder and ``--vae`` at the same TAESD.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import torch

from pipelines.streamdiffusion.components import load_components
from pipelines.streamdiffusion.pipeline import StreamDiffusion, StreamDiffusionGenerator
from streamrt.bench import denoising
from streamrt.bench.clips import panning_clip
from streamrt.bench.suite import Row, Suite, add_common_arguments, add_model_arguments
from streamrt.bench.timing import measure_interleaved
from streamrt.frames import VideoFrame
from streamrt.generator import Generator
from streamrt.loading import open_generator
from streamrt.similarity import SimilarityFilter, SimilarityFilteredGenerator

MIN_WARMUP = 5  # frames pushed before timing, on top of the window filling up
NUM_FRAMES = 16  # distinct input frames cycled through (a panning clip)
PTS_STEP = 3000  # 30 fps on the 90 kHz video clock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, repeats=30, warmup=MIN_WARMUP)
    add_model_arguments(parser)
    parser.add_argument("--width", type=int, default=256, help="processing width (default 256)")
    parser.add_argument("--height", type=int, default=256, help="processing height (default 256)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default 2)")
    parser.add_argument(
        "--cfg-type",
        default="self",
        choices=("none", "full", "self", "initialize"),
        help="guidance mode (default self)",
    )
    parser.add_argument("--guidance-scale", type=float, default=1.2, help="guidance scale (default 1.2)")
    parser.add_argument(
        "--vae",
        default=None,
        metavar="DIR",
        help="a separate VAE folder (AutoencoderTiny/TAESD or AutoencoderKL) instead of the model's own",
    )


def open_streamdiffusion(model: str | None, vae: str | None, params: dict[str, Any]) -> Generator:
    """The generator as ``open_generator`` builds it; with ``vae``, the same steps by hand, since the generator's
    ``load`` takes no VAE override."""
    if vae is None:
        return open_generator("streamdiffusion", model=model, params=params)
    StreamDiffusionGenerator.spec.params.resolve(params)  # fail on a bad parameter before loading weights
    inner = StreamDiffusionGenerator(StreamDiffusion(load_components(model, vae=vae)))
    gen = SimilarityFilteredGenerator(inner, SimilarityFilter())
    gen.prepare(params)
    return gen


def _engine(gen: Generator) -> tuple[StreamDiffusionGenerator, StreamDiffusion]:
    inner = gen.inner if isinstance(gen, SimilarityFilteredGenerator) else gen
    if not isinstance(inner, StreamDiffusionGenerator):
        raise TypeError(f"expected a StreamDiffusionGenerator, got {type(inner).__name__}")
    return inner, inner.engine


def run(args: argparse.Namespace) -> Iterator[Row]:
    params = {
        "steps": args.steps,
        "cfg_type": args.cfg_type,
        "guidance_scale": args.guidance_scale,
        "width": args.width,
        "height": args.height,
    }
    gen = open_streamdiffusion(args.model, args.vae, params)
    inner, engine = _engine(gen)
    t_index_list = inner.t_index_list()
    clip = panning_clip(NUM_FRAMES, args.height, args.width)
    pushed = 0

    def push() -> None:
        nonlocal pushed
        gen.push(VideoFrame(data=clip[pushed % NUM_FRAMES], pts=pushed * PTS_STEP))
        pushed += 1

    # The stages alone, on a second engine over the same components (the generator's window stays untouched).
    stage = StreamDiffusion(engine.c, device=str(engine.device), dtype=engine.dtype)
    stage.configure(
        t_index_list=t_index_list,
        size=(args.height, args.width),
        cfg_type=args.cfg_type,
        guidance_scale=args.guidance_scale,
    )
    feeder = denoising.Feeder(stage, denoising.encoded_inputs(stage))
    feeder.fill()
    image = clip[0].permute(2, 0, 1).float().div(255)[None]  # (1, 3, H, W), as the generator prepares it

    def vae() -> None:
        engine.decode_latents(engine.encode_images(image))

    for _ in range(len(t_index_list) - 1 + max(args.warmup, MIN_WARMUP)):
        push()
    _, rows = denoising.count_unet(engine.unet, feeder.stream_batch)
    t_push, t_denoise, t_vae = measure_interleaved(
        [push, feeder.stream_batch, vae], args.repeats, args.warmup
    )
    frame_ms, denoise_ms, vae_ms = 1000.0 * t_push, 1000.0 * t_denoise, 1000.0 * t_vae
    gen.close()
    yield {
        "suite": "streamdiffusion",
        "model": denoising.model_label(args.model),
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "fps": 1.0 / t_push,
        "denoise_ms": denoise_ms,
        "vae_ms": vae_ms,
        "frame_ms": frame_ms,
        "other_ms": frame_ms - denoise_ms - vae_ms,
        "cfg_type": args.cfg_type,
        "guidance_scale": args.guidance_scale,
        "t_index_list": t_index_list,
        "unet_rows": rows,
        "unet_params_m": denoising.num_params(engine.unet) / 1e6,
        "vae": args.vae or "model",
        "vae_params_m": denoising.num_params(engine.c.vae) / 1e6,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }


SUITE = Suite(
    name="streamdiffusion",
    help="end-to-end img2img fps of a StreamDiffusion model, split into denoising and VAE time",
    fields=("suite", "model", "width", "height", "steps", "fps", "denoise_ms", "vae_ms"),
    add_arguments=add_arguments,
    run=run,
)
