"""StreamingT2V: autoregressive 16-frame chunks, each conditioned on the previous chunk's last 8 frames (CAM) and on
the anchor frame (APM), with an optional enhancement pass that uses randomized blending.

Chunk 0 comes from the base model alone (16 frames, all emitted). Chunk k >= 1 is a 16-frame generation conditioned on
the last 8 frames of chunk k-1; its first 8 frames re-create the conditioning frames' span and are dropped, its last
8 are new: 8 new frames per step. The stream keeps only those 8 conditioning latents and the anchor: chunk k cannot
see anything else of the past, and memory stays flat however long the stream runs.

Enhancement (``enhance``): base frames are re-noised to ``enhance_strength`` (SDEdit) and denoised again in
24-frame chunks overlapping by 8 with randomized blending (``blending``), ``enhance_chunks`` chunks per segment; a
segment starts with the 8 enhanced frames already emitted, held fixed, so segments join without a seam. The published
enhancer is a separate high-resolution model (MS-Vid2Vid-XL); here the base model refines at its own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.streamingt2v.blending import blended_denoise
from pipelines.streamingt2v.model import CamInput, StreamingT2VConfig, StreamingT2VModel
from streamrt.errors import ModelLoadError, ParamError
from streamrt.generator import GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.video.codec import CodecConfig, FrameCodec
from streamrt.video.folder import load_into, read_folder, resolve_model
from streamrt.video.t2v import TextToVideoGenerator, common_params
from streamrt.video.text import PromptCache, TextConfig, WordTextEncoder

NAME = "streamingt2v"
DEFAULT_PROMPT = "a blue triangle moving down over checks"
ENHANCE_CHUNK, ENHANCE_OVERLAP = 24, 8


@dataclass
class ChunkRecord:
    """What one generation saw (for inspection): its index and the conditioning it was given."""

    index: int
    cond: torch.Tensor | None
    anchor: torch.Tensor | None


class StreamingT2V:
    def __init__(
        self, model: StreamingT2VModel, text: Any, codec: Any, latent_hw: tuple[int, int], *, scale: int = 8
    ) -> None:
        """``text.encode(list[str])`` gives the text tokens (the word encoder, or CLIP); ``codec.decode`` turns latents
        into frames (the frame codec, or the SD VAE); ``scale`` = pixels per latent."""
        from diffusers import DDIMScheduler

        self.model, self.text, self.codec = model.eval(), text.eval(), codec.eval()
        self.cfg = model.cfg
        self.latent_hw = self.native_hw = latent_hw
        self.scale = scale
        self.device = next(model.parameters()).device
        self.scheduler = DDIMScheduler(
            num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing",
            prediction_type=self.cfg.prediction_type,
        )  # fmt: skip
        # "trailing": a few-step run starts at t = 999 (pure noise, what it is given); the "leading" spacing of 50-step
        # ModelScope sampling would start 2 steps at t = 501 and treat pure noise as a half-clean sample
        self.condition = lambda: torch.zeros(0)
        self.uncond: torch.Tensor | None = None
        self.last: ChunkRecord | None = None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.model.unet.config.in_channels, *self.latent_hw)

    def start(
        self, seed: int, *, steps: int, guidance: float, enhance: bool, strength: float, chunks: int
    ) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.blend_gen = torch.Generator().manual_seed(seed + 1)
        self.steps, self.guidance = steps, guidance
        self.enhance, self.strength, self.enhance_chunks = enhance, strength, chunks
        self.cond: torch.Tensor | None = None  # (1, C, 8, h, w): last 8 latents of the previous chunk
        self.anchor: torch.Tensor | None = None  # (1, C, h, w): first frame of the first chunk
        self.index = 0
        self.base_pending: list[
            torch.Tensor
        ] = []  # base latents waiting for enhancement (bounded by a segment)
        self.tail: torch.Tensor | None = None  # the last 8 enhanced latents already emitted

    def to(self, device: str) -> StreamingT2V:
        """Move the UNet with CAM/APM and the codec (the text encoder stays: prompts are encoded once)."""
        self.device = torch.device(device)
        self.model.to(self.device)
        for part in (self.codec, getattr(self.codec, "vae", None)):
            if isinstance(part, torch.nn.Module):
                part.to(self.device)
        return self

    def reseed(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.blend_gen = torch.Generator().manual_seed(seed + 1)

    # ------------------------------------------------------------------ one 16-frame generation
    def eps(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, cond: CamInput | None, anchor
    ) -> torch.Tensor:
        if self.guidance <= 1.0 or self.uncond is None:
            return self.model(x, t, text, cond, anchor)
        uncond = self.uncond.to(text.device)
        both = self.model(
            torch.cat([x, x]), t, torch.cat([uncond.expand_as(text), text]),
            None if cond is None else cond.doubled(), None if anchor is None else torch.cat([anchor, anchor]),
        )  # fmt: skip
        un, co = both.chunk(2)
        return un + self.guidance * (co - un)

    def generate_chunk(
        self, text: torch.Tensor, cond: torch.Tensor | None, anchor: torch.Tensor | None
    ) -> torch.Tensor:
        """(1, C, 16, h, w) clean latents from noise, DDIM; conditioned on ``cond``/``anchor`` unless None."""
        self.last = ChunkRecord(
            self.index, None if cond is None else cond.clone(), None if anchor is None else anchor.clone()
        )
        x = torch.randn(
            (1, self.latent_shape[0], self.cfg.chunk_frames, *self.latent_hw), generator=self.gen
        ).to(self.device)
        self.scheduler.set_timesteps(self.steps)
        # CAM's timestep-independent layers run once for all the steps
        prepared = None if cond is None else self.model.cam.prepare(cond)
        for t in self.scheduler.timesteps:
            x = self.scheduler.step(self.eps(x, t, text, prepared, anchor), t, x).prev_sample
        return x

    def base_step(self) -> torch.Tensor:
        """The next base frames: (F, C, h, w), 16 for chunk 0 and 8 afterwards."""
        text = self.condition().to(self.device)
        x = self.generate_chunk(text, self.cond, self.anchor if self.cond is not None else None)
        if self.cond is None:
            new = x
            self.anchor = x[:, :, 0].clone()
        else:
            new = x[:, :, self.cfg.chunk_frames - self.cfg.cond_frames :]
        self.cond = x[:, :, -self.cfg.cond_frames :].clone()
        self.index += 1
        return new[0].transpose(0, 1)

    # ------------------------------------------------------------------ enhancement
    def enhance_segment(self, base: torch.Tensor, text: torch.Tensor, on_write=None) -> torch.Tensor:
        """Re-noise (F, C, h, w) base latents to ``strength`` and denoise with randomized blending; frames before
        ``len(base) - new`` that were already emitted (``self.tail``) are held fixed."""
        video = base.transpose(0, 1)[None]  # (1, C, T, h, w)
        self.scheduler.set_timesteps(self.steps)
        ts = [t for t in self.scheduler.timesteps if t <= int(self.strength * 1000)]
        if not ts:
            return base
        noise = torch.randn(video.shape, generator=self.gen).to(
            video.device
        )  # ONE noise tensor shared by every chunk
        x = self.scheduler.add_noise(video, noise, ts[0].reshape(1))
        tail = self.tail

        def step(chunk: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.scheduler.step(self.eps(chunk, t, text, None, None), t, chunk).prev_sample

        def fixed(v: torch.Tensor, i: int) -> torch.Tensor:
            if tail is None:
                return v
            n = tail.shape[2]
            t_next = ts[i + 1] if i + 1 < len(ts) else None
            v[:, :, :n] = (
                tail if t_next is None else self.scheduler.add_noise(tail, noise[:, :, :n], t_next.reshape(1))
            )
            return v

        if tail is not None:
            x[:, :, : tail.shape[2]] = self.scheduler.add_noise(
                tail, noise[:, :, : tail.shape[2]], ts[0].reshape(1)
            )
        out = blended_denoise(
            x,
            ts,
            step,
            chunk=ENHANCE_CHUNK,
            overlap=ENHANCE_OVERLAP,
            gen=self.blend_gen,
            fixed=fixed,
            on_write=on_write,
        )
        return out[0].transpose(0, 1)

    def step(self) -> torch.Tensor:
        if not self.enhance:
            return self.base_step()
        seg_new = (ENHANCE_CHUNK - ENHANCE_OVERLAP) * self.enhance_chunks
        need = seg_new + (ENHANCE_OVERLAP if self.tail is None else 0)
        while sum(b.shape[0] for b in self.base_pending) < need:
            self.base_pending.append(self.base_step())
        pending = torch.cat(self.base_pending)
        take, rest = pending[:need], pending[need:]
        self.base_pending = [rest] if rest.shape[0] else []
        head = self.tail[0].transpose(0, 1) if self.tail is not None else take[:0]
        enhanced = self.enhance_segment(torch.cat([head, take]), self.condition().to(self.device))
        out = enhanced[head.shape[0] :]
        self.tail = out[-ENHANCE_OVERLAP:].transpose(0, 1)[None].clone()
        return out


def _params() -> ParamSet:
    return ParamSet(common_params(DEFAULT_PROMPT) + (
        Param("width", int, None, "Output width (default: the model's).", live=False, optional=True, minimum=8, maximum=4096),
        Param("height", int, None, "Output height (default: the model's).", live=False, optional=True, minimum=8, maximum=4096),
        Param("steps", int, None, "DDIM steps per chunk (default: the model's).", live=False, optional=True, minimum=1, maximum=1000),
        Param("guidance_scale", float, None, "Classifier-free guidance (default: the model's; 1 = off).", live=False,
              optional=True, minimum=1.0, maximum=20.0),
        Param("enhance", bool, False, "Enhancement pass with randomized blending (adds a segment of latency).", live=False),
        Param("enhance_strength", float, 0.5, "How far the enhancement re-noises (0..1).", live=False, minimum=0.0, maximum=1.0),
        Param("enhance_chunks", int, 2, "24-frame chunks per enhancement segment.", live=False, minimum=1, maximum=16),
    ))  # fmt: skip


class StreamingT2VGenerator(TextToVideoGenerator):
    spec = GeneratorSpec(
        name=NAME,
        description="StreamingT2V text-to-video: autoregressive 16-frame chunks with CAM and APM on a UNet3D.",
        inputs=(MediaKind.TEXT,),
        outputs=(MediaKind.VIDEO,),
        params=_params(),
        input_optional=True,
    )

    def __init__(self, engine: StreamingT2V) -> None:
        self.engine = engine
        self.prompts = PromptCache(lambda text: engine.text.encode([text]))
        super().__init__()
        engine.condition = self.condition

    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> StreamingT2VGenerator:
        if checkpoint:
            raise ParamError(
                "streamingt2v takes its weights from the model folder (--model); no --checkpoint"
            )
        return cls(build_engine(resolve_model(NAME, model)).to(device))

    def encode_prompt(self, text: str) -> torch.Tensor:
        return self.prompts(text)

    def start_stream(self) -> None:
        p, cfg, e = self.params, self.engine.cfg, self.engine
        if (p["width"] is None) != (p["height"] is None):
            raise ParamError("set both width and height, or neither")
        e.latent_hw = e.native_hw
        if p["width"] is not None:
            unit = e.scale * 2 ** (len(e.model.unet.config.block_out_channels) - 1)
            if p["width"] % unit or p["height"] % unit:
                raise ParamError(
                    f"width and height must be multiples of {unit}; got {p['width']}x{p['height']}"
                )
            e.latent_hw = (p["height"] // e.scale, p["width"] // e.scale)
        self.engine.uncond = self.prompts("")
        self.engine.start(
            p["seed"],
            steps=p["steps"] or cfg.steps,
            guidance=p["guidance_scale"] if p["guidance_scale"] is not None else cfg.guidance_scale,
            enhance=p["enhance"],
            strength=p["enhance_strength"],
            chunks=p["enhance_chunks"],
        )

    def reseed(self, seed: int) -> None:
        self.engine.reseed(seed)

    def step(self) -> torch.Tensor:
        return self.engine.step()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.engine.codec.decode(latents)


# ---------------------------------------------------------------------------------------------- folders
def folder_config(
    unet_config: dict[str, Any], text: TextConfig, codec: CodecConfig, cfg: StreamingT2VConfig, size: int
) -> dict[str, Any]:
    return {
        "size": size,
        "unet": dict(unet_config),
        "text": text.to_dict(),
        "codec": codec.to_dict(),
        "streamingt2v": cfg.to_dict(),
    }


def build_engine(folder: Path) -> StreamingT2V:
    from diffusers import UNet3DConditionModel

    if not (folder / "config.json").is_file() and (folder / "unet" / "config.json").is_file():
        from pipelines.streamingt2v.modelscope import build_modelscope_engine

        return build_modelscope_engine(folder)
    config, parts = read_folder(folder, NAME)
    try:
        if (folder / "unet" / "config.json").is_file():
            # a diffusers folder of the base (the published ModelScope layout): the base weights load by name
            unet = UNet3DConditionModel.from_pretrained(folder, subfolder="unet")
        else:
            unet = UNet3DConditionModel.from_config(config["unet"])
        text = WordTextEncoder(TextConfig.from_dict(config["text"]))
        codec = FrameCodec(CodecConfig.from_dict(config["codec"]))
        cfg = StreamingT2VConfig(**config["streamingt2v"])
        size = int(config["size"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{folder} is not a {NAME} model folder: {exc}") from exc
    if not (folder / "unet" / "config.json").is_file():
        load_into(unet, parts.get("unet"), "UNet", folder)
    model = StreamingT2VModel(unet, cfg)
    load_into(model.cam, parts.get("cam"), "CAM", folder)
    load_into(model.apm, parts.get("apm"), "APM", folder)
    load_into(text, parts.get("text"), "text encoder", folder)
    load_into(codec, parts.get("codec"), "codec", folder)
    s = codec.cfg.scale
    return StreamingT2V(model, text, codec, (size // s, size // s), scale=s)
