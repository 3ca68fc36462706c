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
from streamrt.errors import ModelLoadError
from streamrt.generator import GeneratorSpec, MediaKind
from streamrt.params import ParamSet
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
        text: WordTextEncoder | None,
        codec: FrameCodec,
        cfg: RollingConfig,
        latent_hw: tuple[int, int],
    ) -> None:
        cfg.validate()
        self.dit, self.text, self.codec, self.cfg = dit.eval(), text, codec.eval(), cfg
        self.latent_hw = latent_hw
        self.schedule = FlowLevels(shifted_sigmas(cfg.timesteps, cfg.shift))
        self.noise = KeyedFreshNoise(0)
        self.window = StaggeredWindow(self.schedule, self.noise, self.denoise)
        pt, ph, pw = dit.cfg.patch_size
        tokens = (latent_hw[0] // ph) * (latent_hw[1] // pw)
        self.caches = LayerCaches(
            dit.cfg.num_layers, tokens, sink_frames=cfg.sink_frames, capacity_frames=cfg.cache_frames
        )
        self.next_block = 0
        self.windows = 0
        self.context: torch.Tensor | None = None  # embedded text of the current pass
        self.history: deque[WindowRecord] = deque(maxlen=16)
        self.condition = lambda: torch.zeros(0)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.dit.cfg.in_dim, *self.latent_hw)

    def start(self, seed: int) -> None:
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
        sigmas = torch.cat([self.schedule.sigma(torch.full((s.rows,), s.level)) for s in slots])
        plan = RollingAttention(self.caches, self.cfg, write=False)
        ctx = self.dit.embed_text(self.condition())
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
        t = torch.zeros(1, x0.shape[0])
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
            noise = self.noise.draw(index, -1, (self.cfg.frames_per_block, *self.latent_shape))
            slot = self.window.enter_noisy(noise, [index] * self.cfg.frames_per_block)
            slot.state["index"] = torch.tensor(index)
            finished: list[Slot] = self.window.step(slot)
            if finished:
                done = finished[0]
                self.write_clean(int(done.payload[0]), done.latent)
                return done.latent

    def nbytes(self) -> int:
        return self.caches.nbytes() + sum(s.latent.numel() * 4 for s in self.window.slots)


class RollingForcingGenerator(TextToVideoGenerator):
    spec = GeneratorSpec(
        name=NAME,
        description="Rolling Forcing text-to-video: a 5-block rolling window with an attention sink (Wan2.1 layout).",
        inputs=(MediaKind.TEXT,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(common_params(DEFAULT_PROMPT)),
        input_optional=True,
    )

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
        return cls(engine)

    def _encode(self, text: str) -> torch.Tensor:
        if self.engine.text is None:
            raise ModelLoadError("this model folder has no text encoder")
        return self.engine.text.encode([text])

    def encode_prompt(self, text: str) -> torch.Tensor:
        return self.prompts(text)

    def start_stream(self) -> None:
        self.engine.start(self.params["seed"])

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


def build_engine(folder: Path) -> RollingForcing:
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
    return RollingForcing(dit, text.eval(), codec, rolling, (size // s, size // s))
