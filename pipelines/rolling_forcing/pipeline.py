"""Rolling Forcing on the runtime's staggered window.

Window of ``window_blocks`` (5) blocks x ``frames_per_block`` (3) latent frames; block levels are the shift-warped
sigmas of [1000, 800, 600, 400, 200] (~[1000, 952, 882, 769, 556]), oldest block = least noisy. Each window pass
(``StaggeredWindow.step``): a block of pure noise enters at level 0, one forward predicts x0 for every block, every
block but the oldest is re-noised with FRESH noise to its next level (``KeyedFreshNoise``), the oldest block's x0 leaves
and is emitted; then one forward of that block at t = 0 writes its clean K/V into the cache (``RollingAttention``).

So block k is emitted at window k + 4, final from then on, after visiting the 5 levels once in decreasing order.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from buffers.kv_cache import LayerCaches
from pipelines.rolling_forcing.model import RollingAttention, RollingConfig, load_official
from streamrt.errors import ModelLoadError, ParamError
from streamrt.generator import GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.video.codec import CodecConfig, FrameCodec
from streamrt.video.dit import DiTConfig, VideoDiT
from streamrt.video.flow import FlowLevels, KeyedFreshNoise, shifted_sigmas
from streamrt.video.folder import load_into, read_folder, resolve_model
from streamrt.video.t2v import TextToVideoGenerator, common_params
from streamrt.video.text import PromptCache, TextConfig, WordTextEncoder
from streamrt.window import Slot, StaggeredWindow, WindowPass

log = logging.getLogger(__name__)

NAME = "rolling-forcing"
DEFAULT_PROMPT = "a red circle moving right over stripes"


@dataclass
class WindowRecord:
    """One window pass, for inspection: which blocks at which levels, and the attended context."""

    window: int
    blocks: list[int]  # time order, oldest first
    levels: list[int]
    attended_frames: int
    emitted: int | None


class RollingForcing:
    """The engine: model + window + caches for one stream."""

    def __init__(
        self,
        dit: VideoDiT,
        text: Any,
        codec: Any,
        cfg: RollingConfig,
        latent_hw: tuple[int, int],
        *,
        scale: int = 8,
    ) -> None:
        """``text.encode(list[str])`` gives the conditioning (the word encoder, or umT5); ``codec.decode`` turns the
        emitted latents into frames (the frame codec, or Wan's streaming VAE decoder); ``scale`` = pixels per latent."""
        cfg.validate()
        self.dit, self.text, self.codec, self.cfg = dit.eval(), text, codec.eval(), cfg
        self.native_hw = latent_hw
        self.device = next(dit.parameters()).device
        self.scale = scale
        self.schedule = FlowLevels(shifted_sigmas(cfg.timesteps, cfg.shift))
        self.noise = KeyedFreshNoise(0)
        self.window = StaggeredWindow(self.schedule, self.noise, self.denoise)
        self.resize(latent_hw)
        self.next_block = 0
        self.windows = 0
        self.context: torch.Tensor | None = None  # embedded text of the current pass
        self.history: deque[WindowRecord] = deque(maxlen=16)
        self.condition = lambda: torch.zeros(0)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.dit.cfg.in_dim, *self.latent_hw)

    def resize(self, latent_hw: tuple[int, int]) -> None:
        """Latent frame size of the stream; the caches are sized for its tokens per frame."""
        _, ph, pw = self.dit.cfg.patch_size
        if latent_hw[0] % ph or latent_hw[1] % pw:
            raise ParamError(f"the latent size {latent_hw} must be a multiple of the patch size {(ph, pw)}")
        self.latent_hw = latent_hw
        tokens = (latent_hw[0] // ph) * (latent_hw[1] // pw)
        self.caches = LayerCaches(
            self.dit.cfg.num_layers,
            tokens,
            sink_frames=self.cfg.sink_frames,
            capacity_frames=self.cfg.cache_frames,
        )

    def start(self, seed: int) -> None:
        if hasattr(self.codec, "reset"):
            self.codec.reset()  # a streaming decoder's causal cache belongs to the stream
        self.window.reset()
        self.caches.reset()
        self.noise.reseed(seed)
        self.next_block = 0
        self.windows = 0
        self.history.clear()

    # ------------------------------------------------------------------ one window pass
    def denoise(self, batch: WindowPass) -> torch.Tensor:
        slots = list(reversed(batch.slots))  # time order: oldest (least noisy) first
        first_block = int(slots[0].payload[0])
        x = torch.cat([s.latent for s in slots])  # (F, C, h, w)
        sigmas = torch.cat([self.schedule.sigma(torch.full((s.rows,), s.level)) for s in slots]).to(x.device)
        plan = RollingAttention(self.caches, self.cfg, write=False)
        ctx = self.dit.embed_text(self.condition().to(self.device))
        self.context = ctx
        v = self.dit(
            x.transpose(0, 1)[None],
            (sigmas * self.schedule.num_train_timesteps)[None],
            ctx,
            frame_start=first_block * self.cfg.frames_per_block,
            plan=plan,
            context_embedded=True,
        )[0].transpose(0, 1)
        x0 = FlowLevels.x0_from_velocity(x, v, sigmas)
        self.history.append(
            WindowRecord(
                self.windows,
                [int(s.payload[0]) for s in slots],
                [s.level for s in slots],
                plan.attended_frames,
                int(slots[0].payload[0]) if slots[0].level == self.schedule.num_levels - 1 else None,
            )
        )
        self.windows += 1
        # back to the window's row order (noisiest first)
        parts = list(torch.split(x0, [s.rows for s in slots]))
        return torch.cat(list(reversed(parts)))

    def write_clean(self, block: int, x0: torch.Tensor) -> None:
        """The clean K/V write pass: the emitted block at t = 0."""
        assert self.context is not None
        plan = RollingAttention(self.caches, self.cfg, write=True)
        t = torch.zeros(1, x0.shape[0], device=x0.device)
        self.dit(
            x0.transpose(0, 1)[None],
            t,
            self.context,
            frame_start=block * self.cfg.frames_per_block,
            plan=plan,
            context_embedded=True,
        )

    def step(self) -> torch.Tensor:
        """Window passes until a block is final; returns its latents (frames_per_block, C, h, w)."""
        while True:
            index = self.next_block
            self.next_block += 1
            noise = self.noise.draw(index, -1, (self.cfg.frames_per_block, *self.latent_shape)).to(
                self.device
            )
            slot = self.window.enter_noisy(noise, [index] * self.cfg.frames_per_block)
            slot.state["index"] = torch.tensor(index)
            finished: list[Slot] = self.window.step(slot)
            if finished:
                done = finished[0]
                self.write_clean(int(done.payload[0]), done.latent)
                return done.latent

    def to(self, device: str) -> RollingForcing:
        """Move the models (the text encoder stays where it is: prompts are encoded once)."""
        self.device = torch.device(device)
        self.dit.to(self.device)
        for part in (self.codec, getattr(self.codec, "vae", None)):
            if isinstance(part, torch.nn.Module):
                part.to(self.device)
        return self

    def nbytes(self) -> int:
        return self.caches.nbytes() + sum(s.latent.numel() * 4 for s in self.window.slots)


class RollingForcingGenerator(TextToVideoGenerator):
    spec = GeneratorSpec(
        name=NAME,
        description="Rolling Forcing text-to-video: a 5-block rolling window with an attention sink (Wan2.1 layout).",
        inputs=(MediaKind.TEXT,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(
            common_params(DEFAULT_PROMPT)
            + (
                Param("width", int, None, "Output width (default: the model's).", live=False, optional=True,
                      minimum=8, maximum=4096),
                Param("height", int, None, "Output height (default: the model's).", live=False, optional=True,
                      minimum=8, maximum=4096),
            )
        ),
        input_optional=True,
    )  # fmt: skip

    def __init__(self, engine: RollingForcing) -> None:
        self.engine = engine
        self.prompts = PromptCache(self._encode)
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
    ) -> RollingForcingGenerator:
        folder = resolve_model(NAME, model)
        engine = build_engine(folder)
        if checkpoint:
            load_official(engine.dit, checkpoint)
        return cls(engine.to(device))

    def _encode(self, text: str) -> torch.Tensor:
        if self.engine.text is None:
            raise ModelLoadError("this model folder has no text encoder")
        return self.engine.text.encode([text])

    def encode_prompt(self, text: str) -> torch.Tensor:
        return self.prompts(text)

    def start_stream(self) -> None:
        p, e = self.params, self.engine
        if (p["width"] is None) != (p["height"] is None):
            raise ParamError("set both width and height, or neither")
        hw = e.native_hw
        if p["width"] is not None:
            unit = e.scale * e.dit.cfg.patch_size[1]
            if p["width"] % unit or p["height"] % unit:
                raise ParamError(
                    f"width and height must be multiples of {unit}; got {p['width']}x{p['height']}"
                )
            hw = (p["height"] // e.scale, p["width"] // e.scale)
        if hw != e.latent_hw:
            e.resize(hw)
        e.start(p["seed"])

    def reseed(self, seed: int) -> None:
        self.engine.noise.reseed(seed)

    def step(self) -> torch.Tensor:
        return self.engine.step()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.engine.codec.decode(latents)


# ---------------------------------------------------------------------------------------------- folders
def folder_config(
    dit: DiTConfig, text: TextConfig, codec: CodecConfig, rolling: RollingConfig, size: int
) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "size": size,
        "transformer": dit.to_dict(),
        "text": text.to_dict(),
        "codec": codec.to_dict(),
        "rolling": asdict(rolling),
    }


WAN_SIZE = (480, 832)  # Rolling Forcing's published resolution (height, width)


def build_wan_engine(folder: Path) -> RollingForcing:
    """A diffusers Wan2.1 folder: umT5, the causal VAE (streaming decoder) and the transformer (diffusers names,
    converted to the official ones; ``--checkpoint`` then loads Rolling Forcing's weights over it)."""
    import json

    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    from pipelines.rolling_forcing.wan import (
        WanStreamingDecoder,
        WanText,
        diffusers_to_official,
        dit_config_from_diffusers,
    )

    try:
        tcfg = json.loads((folder / "transformer" / "config.json").read_text())
        dit = VideoDiT(dit_config_from_diffusers(tcfg))
        state: dict[str, torch.Tensor] = {}
        for f in sorted((folder / "transformer").glob("*.safetensors")):
            state.update(load_file(str(f)))
        text = WanText(folder)
        decoder = WanStreamingDecoder(AutoencoderKLWan.from_pretrained(folder, subfolder="vae"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder} is not a complete diffusers Wan2.1 folder: {exc}") from exc
    if state:
        load_into(dit, {k: v.float() for k, v in diffusers_to_official(state).items()}, "transformer", folder)
    vae_scale = 2 ** (len(decoder.vae.config.dim_mult) - 1)
    hw = (WAN_SIZE[0] // vae_scale, WAN_SIZE[1] // vae_scale)
    return RollingForcing(dit, text, decoder, RollingConfig(), hw, scale=vae_scale)


def build_engine(folder: Path) -> RollingForcing:
    if (folder / "transformer" / "config.json").is_file():
        return build_wan_engine(folder)
    config, parts = read_folder(folder, NAME)
    try:
        dit = VideoDiT(DiTConfig.from_dict(config["transformer"]))
        text = WordTextEncoder(TextConfig.from_dict(config["text"]))
        codec = FrameCodec(CodecConfig.from_dict(config["codec"]))
        rolling = RollingConfig(**config["rolling"])
        size = int(config["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder}/config.json is not a {NAME} config: {exc}") from exc
    load_into(dit, parts.get("transformer"), "transformer", folder)
    load_into(text, parts.get("text"), "text encoder", folder)
    load_into(codec, parts.get("codec"), "codec", folder)
    s = codec.cfg.scale
    return RollingForcing(dit, text.eval(), codec, rolling, (size // s, size // s), scale=s)
