"""StreamDiffusion: Stream Batch denoising with RCFG on the runtime's staggered window.

``StreamDiffusion`` is the engine (diffusers components + window + guidance + prompt transitions);
``StreamDiffusionGenerator`` puts it behind the generator contract (img2img on ``push``, txt2img on ``pull``).

Per pass, with N = len(t_index_list) levels and F = frame_buffer_size rows per slot, the UNet sees N*F rows
(2*N*F for full CFG, (N+1)*F for onetime-negative RCFG): one slot of F frames enters at level 0, the slot at level N-1
leaves and is decoded. Output i therefore belongs to input i and carries its pts; it leaves N-1 pushes later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.streamdiffusion.components import SDComponents, load_components
from streamrt.errors import InputError, ModelLoadError, ParamError
from streamrt.frames import DataFrame, Frame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from streamrt.guidance import Guidance, make_guidance
from streamrt.params import Param, ParamSet
from streamrt.prompts import PromptTransition
from streamrt.schedules import LCM_STEPS, LCMSchedule, strength_to_t_index
from streamrt.window import FixedNoise, Slot, StaggeredWindow, WindowPass

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "neon style"
MAX_PIXELS = 2048 * 2048


def to_epsilon(kind: str, out: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """A model output of ``prediction_type`` kind as epsilon, exactly (``abar``: alphas_cumprod at the timestep,
    broadcastable): eps = alpha*v + beta*x_t for v-prediction, eps = (x_t - alpha*x0)/beta for sample prediction."""
    if kind == "epsilon":
        return out
    alpha, beta = abar.sqrt(), (1 - abar).sqrt()
    if kind == "v_prediction":
        return alpha * out + beta * x_t
    if kind == "sample":
        return (x_t - alpha * out) / beta
    raise ModelLoadError(f"unsupported prediction_type {kind!r}")


class StreamDiffusion:
    """The Stream Batch engine over one set of SD components."""

    def __init__(
        self, components: SDComponents, *, device: str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        self.c = components
        self.device = torch.device(device)
        self.dtype = dtype
        self.unet = components.unet
        self.window: StaggeredWindow | None = None
        self.schedule: LCMSchedule | None = None
        self.guidance: Guidance = make_guidance("self", 1.2, 1.0)
        self.cond: PromptTransition | None = None
        self.uncond: torch.Tensor | None = None
        self.frame_buffer_size = 1
        self.size = (components.default_size, components.default_size)  # (height, width)
        self.seed = 2
        self._embed_cache: dict[str, torch.Tensor] = {}
        self._txt_gen = torch.Generator().manual_seed(self.seed)
        self._alphas_cumprod = components.scheduler.alphas_cumprod.to(self.device, self.dtype)

    # ------------------------------------------------------------------ configuration
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        h, w = self.size
        s = self.c.vae_scale_factor
        return (self.c.latent_channels, h // s, w // s)

    def configure(
        self,
        *,
        t_index_list: Sequence[int],
        frame_buffer_size: int = 1,
        size: tuple[int, int] | None = None,
        seed: int = 2,
        cfg_type: str = "self",
        guidance_scale: float = 1.2,
        delta: float = 1.0,
        prompt: str = DEFAULT_PROMPT,
        negative_prompt: str = "",
    ) -> None:
        """Start a new stream with these settings (the window starts empty)."""
        self.frame_buffer_size = frame_buffer_size
        if size is not None:
            self.size = size
        self.seed = seed
        self.guidance = make_guidance(cfg_type, guidance_scale, delta)
        self.cond = PromptTransition(self.encode_prompt(prompt))
        self.uncond = self.encode_prompt(negative_prompt)
        self.set_schedule(t_index_list)
        self._txt_gen = torch.Generator().manual_seed(seed)

    def set_schedule(self, t_index_list: Sequence[int]) -> None:
        self.schedule = LCMSchedule(self.c.scheduler, t_index_list, device=self.device, dtype=self.dtype)
        noise = FixedNoise(
            self.schedule.num_levels,
            self.frame_buffer_size,
            self.latent_shape,
            self.seed,
            str(self.device),
            self.dtype,
        )
        self.window = StaggeredWindow(self.schedule, noise, self.denoise)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        assert self.window is not None
        self.window.noise.reseed(seed)
        self._txt_gen = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ components
    @torch.inference_mode()
    def encode_prompt(self, text: str) -> torch.Tensor:
        """(1, L, D) text-encoder hidden states, cached per text (prompt switching back and forth is free)."""
        if text not in self._embed_cache:
            tok = self.c.tokenizer(
                [text],
                padding="max_length",
                max_length=self.c.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            hidden = self.c.text_encoder(tok.input_ids.to(self.device))[0]
            if len(self._embed_cache) > 64:
                self._embed_cache.clear()
            self._embed_cache[text] = hidden.to(self.dtype)
        return self._embed_cache[text]

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> latents (B, C, h, w), scaled by the VAE's scaling factor."""
        x = images.to(self.device, self.dtype).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
        vae = self.c.vae
        if self.c.vae_is_tiny:
            latents = vae.encode(x).latents
        else:
            latents = vae.encode(x).latent_dist.mode()
        return latents * vae.config.scaling_factor

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents -> (B, 3, H, W) in [0, 1]."""
        vae = self.c.vae
        latents = (latents / vae.config.scaling_factor).contiguous(memory_format=torch.channels_last)
        images = vae.decode(latents).sample
        return images.float().add(1).div(2).clamp(0, 1)

    # ------------------------------------------------------------------ the denoiser of one window pass
    def denoise(self, batch: WindowPass) -> torch.Tensor:
        """UNet + guidance + LCM x0 for every row of the window (the window's ``Denoiser``)."""
        assert self.cond is not None and self.uncond is not None and self.schedule is not None
        g = self.guidance
        model_in = g.model_batch(batch)
        embeds = g.embeddings(model_in, self.cond.current(), self.uncond)
        latents = model_in.latents.contiguous(memory_format=torch.channels_last)
        out = self.unet(latents, model_in.timesteps, encoder_hidden_states=embeds, return_dict=False)[0]
        out = self._to_epsilon(out, model_in.latents, model_in.timesteps)
        eps = g.combine(out, batch)
        x0 = self.schedule.denoise(batch.latents, eps, batch.levels)
        g.after_step(eps, batch, self.schedule)
        self.cond.advance()
        return x0

    def _to_epsilon(self, out: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """SD 2.x v-prediction (and sample-prediction) models: convert to epsilon, the space RCFG's stock noise and
        the LCM step work in. The conversion is exact: eps = alpha*v + beta*x_t, eps = (x_t - alpha*x0)/beta."""
        kind = self.c.scheduler.config.prediction_type
        if kind == "epsilon":
            return out
        abar = self._alphas_cumprod[timesteps.to(self._alphas_cumprod.device)].view(-1, 1, 1, 1)
        return to_epsilon(kind, out, x_t, abar)

    # ------------------------------------------------------------------ streaming
    @torch.inference_mode()
    def step_images(self, images: torch.Tensor, payload: list[Any]) -> list[tuple[torch.Tensor, Any]]:
        """img2img: one slot of encoded frames enters; returns decoded (image, payload) that left."""
        assert self.window is not None
        slot = self.window.enter_clean(self.encode_images(images), payload)
        return self._decode(self.window.step(slot))

    @torch.inference_mode()
    def step_noise(self, payload: list[Any]) -> list[tuple[torch.Tensor, Any]]:
        """txt2img: one slot of pure Gaussian noise (from the session seed) enters."""
        assert self.window is not None
        x_t = torch.randn((len(payload), *self.latent_shape), generator=self._txt_gen)
        slot = self.window.enter_noisy(x_t.to(self.device, self.dtype), payload)
        return self._decode(self.window.step(slot))

    @torch.inference_mode()
    def drain(self) -> list[tuple[torch.Tensor, Any]]:
        assert self.window is not None
        return self._decode(self.window.drain())

    def _decode(self, slots: list[Slot]) -> list[tuple[torch.Tensor, Any]]:
        if not slots:
            return []
        latents = torch.cat([s.latent for s in slots])
        images = self.decode_latents(latents)
        payload = [p for s in slots for p in s.payload]
        return list(zip(images, payload, strict=True))


def _params() -> ParamSet:
    return ParamSet((
        Param("prompt", str, DEFAULT_PROMPT, "What to generate (see the model card for the default model's words)."),
        Param("negative_prompt", str, "", "Unconditional side of full / initialize guidance."),
        Param("strength", float, 0.35, "Denoising strength 0..1 (img2img): how far from the input it may go.",
              minimum=0.0, maximum=1.0),
        Param("steps", int, 2, "Denoising steps per frame (Stream Batch levels).", minimum=1, maximum=LCM_STEPS),
        Param("t_index_list", list, None, "Explicit LCM timestep indices (0..49); overrides strength/steps.",
              optional=True),
        Param("cfg_type", str, "self", "Guidance: none, full, self (RCFG self-negative), initialize (onetime).",
              choices=("none", "full", "self", "initialize")),
        Param("guidance_scale", float, 1.2, "Guidance scale; guidance applies only above 1.", minimum=0.0,
              maximum=20.0),
        Param("delta", float, 1.0, "RCFG delta: weight of the residual noise.", minimum=0.0, maximum=5.0),
        Param("seed", int, 2, "Seed of the per-session noise.", minimum=0),
        Param("prompt_transition", int, 0, "Frames over which a new prompt blends in (0 = at once).", minimum=0,
              maximum=10_000),
        Param("prompt_blend", str, "slerp", "How prompts blend during a transition.", choices=("linear", "slerp")),
        Param("frame_buffer_size", int, 1, "Frames per Stream Batch slot (F).", live=False, minimum=1, maximum=16),
        Param("width", int, None, "Processing width (multiple of 8); default: the input's, or the model's.",
              live=False, optional=True, minimum=8, maximum=2048),
        Param("height", int, None, "Processing height (multiple of 8); default: the input's, or the model's.",
              live=False, optional=True, minimum=8, maximum=2048),
        Param("compile", bool, False, "torch.compile the UNet (GPU; the first frames are slow while it compiles).",
              live=False),
        Param("ssf", bool, False, "Stochastic similarity filter: skip near-identical input frames."),
        Param("ssf_threshold", float, 0.98, "SSF similarity threshold.", minimum=0.0, maximum=1.0),
        Param("ssf_max_skip", int, 10, "SSF: at most this many skips in a row.", minimum=0),
    ))  # fmt: skip


class StreamDiffusionGenerator(Generator):
    spec = GeneratorSpec(
        name="streamdiffusion",
        description="StreamDiffusion img2img (video in) or txt2img (no input): Stream Batch, RCFG, SSF.",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        params=_params(),
        input_optional=True,
        size_multiple=8,
        latency=1,  # with the default 2 steps; see ``latency_frames``
    )

    def __init__(self, engine: StreamDiffusion) -> None:
        super().__init__()
        self.engine = engine
        self._pending: list[tuple[torch.Tensor, Frame]] = []  # frames waiting to fill a slot of F
        self._backlog: list[
            DataFrame
        ] = []  # outputs drained by a schedule change, emitted with the next call
        self._size: tuple[int, int] | None = None

    @classmethod
    def load(
        cls,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> StreamDiffusionGenerator:
        torch_dtype = _dtype(dtype, device)
        components = load_components(model, device=device, dtype=torch_dtype, lcm_lora=checkpoint)
        # Channels-last is the fast layout both for fp16 tensor cores and for oneDNN's CPU convolutions and group
        # norms (on 2 CPU cores it roughly halved UNet and VAE time for the default model).
        components.unet.to(memory_format=torch.channels_last)
        components.vae.to(memory_format=torch.channels_last)
        return cls(StreamDiffusion(components, device=device, dtype=torch_dtype))

    # ------------------------------------------------------------------ params
    def t_index_list(self, params: dict[str, Any] | None = None) -> list[int]:
        p = self.params if params is None else params
        if p["t_index_list"]:
            return list(p["t_index_list"])
        return strength_to_t_index(p["strength"], p["steps"])

    @property
    def latency_frames(self) -> int:
        """Pushes between the first frame of a slot and its output: a slot fills over F pushes, then leaves the
        window N-1 slot entries later."""
        frames_per_slot = self.params["frame_buffer_size"]
        return len(self.t_index_list()) * frames_per_slot - 1

    def on_prepare(self) -> None:
        p = self.params
        if (p["width"] is None) != (p["height"] is None):
            raise ParamError("set both width and height, or neither")
        size = (p["height"], p["width"]) if p["width"] is not None else None
        if size is not None and (size[0] % 8 or size[1] % 8):
            raise ParamError(f"width and height must be multiples of 8; got {size[1]}x{size[0]}")
        self._pending.clear()
        self._backlog.clear()
        self._size = size
        if p["compile"] and not isinstance(self.engine.unet, torch._dynamo.eval_frame.OptimizedModule):
            # dynamic=True: the batch grows while the window fills and shrinks while it drains.
            self.engine.unet = torch.compile(self.engine.unet, dynamic=True)
        self.engine.configure(
            t_index_list=self.t_index_list(),
            frame_buffer_size=p["frame_buffer_size"],
            size=size or (self.engine.c.default_size,) * 2,
            seed=p["seed"],
            cfg_type=p["cfg_type"],
            guidance_scale=p["guidance_scale"],
            delta=p["delta"],
            prompt=p["prompt"],
            negative_prompt=p["negative_prompt"],
        )

    def on_update(self, changed: dict[str, Any]) -> None:
        e = self.engine
        p = self.params
        if {"t_index_list", "strength", "steps"} & changed.keys():
            new = self.t_index_list()
            assert e.schedule is not None
            if new != e.schedule.t_index_list:
                # Slots in flight were noised for the old levels: finish them under the old schedule (nothing is
                # lost), then switch.
                self._backlog.extend(self._flush_pending() + self._frames(e.drain()))
                e.set_schedule(new)
        if {"cfg_type", "guidance_scale", "delta"} & changed.keys():
            if "cfg_type" in changed and changed["cfg_type"] != e.guidance.name:
                e.guidance = make_guidance(p["cfg_type"], p["guidance_scale"], p["delta"])
            e.guidance.guidance_scale = p["guidance_scale"]
            e.guidance.delta = p["delta"]
        if "seed" in changed:
            e.reseed(p["seed"])
        if "prompt" in changed or "prompt_transition" in changed or "prompt_blend" in changed:
            assert e.cond is not None
            e.cond.set_target(e.encode_prompt(p["prompt"]), p["prompt_transition"], p["prompt_blend"])
        if "negative_prompt" in changed:
            e.uncond = e.encode_prompt(p["negative_prompt"])

    # ------------------------------------------------------------------ streaming
    def check_input(self, frame: DataFrame) -> None:
        if self._size is None:  # no explicit size: the input's size must suit the VAE
            super().check_input(frame)
        elif not isinstance(frame, VideoFrame):
            super().check_input(frame)
        if isinstance(frame, VideoFrame) and frame.width * frame.height > MAX_PIXELS:
            raise InputError(f"frame {frame.width}x{frame.height} is too large (max {MAX_PIXELS} pixels)")

    def process(self, frame: DataFrame) -> list[DataFrame]:
        assert isinstance(frame, VideoFrame)
        image = frame.to_float()
        if self._size is not None:
            if image.shape[1:] != self._size:
                image = F.interpolate(
                    image[None], size=self._size, mode="bilinear", antialias=True, align_corners=False
                )[0]
        else:
            self._adopt_size(frame)
        self._pending.append((image, frame))
        out = self._take_backlog()
        if len(self._pending) >= self.params["frame_buffer_size"]:
            out += self._flush_pending()
        return out

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        out = self._take_backlog()
        marker = Frame(pts=pts, time_base=time_base)
        return out + self._frames(self.engine.step_noise([marker]))

    def flush(self) -> list[DataFrame]:
        out = self._take_backlog() + self._flush_pending()
        return out + self._frames(self.engine.drain())

    def _adopt_size(self, frame: VideoFrame) -> None:
        size = (frame.height, frame.width)
        e = self.engine
        if e.size == size:
            return
        if e.window is not None and (e.window.in_flight or self._pending):
            raise InputError(
                f"frame size changed mid-stream from {e.size[1]}x{e.size[0]} to {frame.width}x{frame.height}; "
                "set width/height to resize every frame"
            )
        e.size = size
        e.set_schedule(e.schedule.t_index_list if e.schedule else self.t_index_list())

    def _flush_pending(self) -> list[DataFrame]:
        if not self._pending:
            return []
        images = torch.stack([img for img, _ in self._pending])
        payload = [f for _, f in self._pending]
        self._pending.clear()
        return self._frames(self.engine.step_images(images, payload))

    def _take_backlog(self) -> list[DataFrame]:
        out, self._backlog = self._backlog, []
        return out

    @staticmethod
    def _frames(results: list[tuple[torch.Tensor, Any]]) -> list[DataFrame]:
        return [VideoFrame.from_float(img, like=src) for img, src in results]


def _dtype(name: str | None, device: str) -> torch.dtype:
    if name is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
             "float32": torch.float32}  # fmt: skip
    if name not in table:
        raise ParamError(f"unknown dtype {name!r}; use fp16, bf16 or fp32")
    return table[name]
