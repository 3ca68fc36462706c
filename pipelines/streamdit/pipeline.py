"""StreamDiT: moving-buffer flow matching on the runtime's staggered window.

Buffer = K clean reference frames + N chunks of c frames; T = s*N passes per chunk (s micro-steps per buffer position).
With tau = 1 clean: ``X_tau = tau*X1 + (1 - (1 - sigma_min)*tau)*X0`` and ``X_{tau+dtau} = X_tau + u*dtau``, tau
non-decreasing along the buffer (oldest chunk cleanest). Mapped onto ``StaggeredWindow``: a slot is a chunk, the
levels are the s*N tau values (``BufferedFlowLevels``), a chunk of fresh noise enters every s passes, and re-noising
with the model's predicted noise (``PredictedNoise``) makes each pass exactly the Euler update. A chunk leaves at
tau = 1 after s*N updates summing to 1; with s = 1 every pass emits c frames.

The DiT attends bidirectionally inside the buffer through 3D windows, shifted by half a window every other layer
(Swin-style), with one time embedding per frame; the K reference frames ride along at tau = 1.

Start-up: a normal text-to-video generation (every frame at the same tau, s*N Euler steps) makes K + N*c frames; the
first K + c are emitted, the other chunks are re-noised to their buffer positions, and streaming continues from there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from streamrt.errors import ModelLoadError, ParamError
from streamrt.generator import GeneratorSpec, MediaKind
from streamrt.params import Param, ParamSet
from streamrt.video.attention import window_mask
from streamrt.video.codec import CodecConfig, FrameCodec
from streamrt.video.dit import AttentionPlan, DiTConfig, TokenGrid, VideoDiT
from streamrt.video.flow import BufferedFlowLevels, PredictedNoise
from streamrt.video.folder import load_into, read_folder, resolve_model
from streamrt.video.t2v import TextToVideoGenerator, common_params
from streamrt.video.text import PromptCache, TextConfig, WordTextEncoder
from streamrt.window import Slot, StaggeredWindow, WindowPass

NAME = "streamdit"
DEFAULT_PROMPT = "a yellow square moving left over dots"


@dataclass
class StreamDiTConfig:
    """The partition (K, N, c, s) and the attention windows, in latent frames / patches."""

    ref_frames: int = 0  # K
    num_chunks: int = 4  # N
    chunk_frames: int = 2  # c
    micro_steps: int = 1  # s
    window: list[int] = field(default_factory=lambda: [4, 4, 4])  # (frames, h, w) of a 3D attention window
    sigma_min: float = 0.0

    @property
    def buffer_frames(self) -> int:
        return self.ref_frames + self.num_chunks * self.chunk_frames

    def validate(self) -> None:
        if min(self.num_chunks, self.chunk_frames, self.micro_steps) < 1 or self.ref_frames < 0:
            raise ValueError(f"invalid partition {asdict(self)}")
        if len(self.window) != 3 or min(self.window) < 1:
            raise ValueError(f"window must be 3 positive sizes, got {self.window}")


class ShiftedWindowAttention(AttentionPlan):
    """3D window attention; odd layers shift the partition by half a window."""

    def __init__(self, window: tuple[int, int, int]) -> None:
        self.window = window
        self._masks: dict[tuple[int, int, int, bool], torch.Tensor] = {}

    def mask(self, layer: int, grid: TokenGrid) -> torch.Tensor:
        key = (grid.frames, grid.h, grid.w, layer % 2 == 1)
        if key not in self._masks:
            self._masks[key] = window_mask(key[:3], self.window, shifted=key[3])
        return self._masks[key]


@dataclass
class PassRecord:
    """One buffer pass, for inspection: per frame tau (time order, references first) and the chunks in it."""

    taus: list[float]
    chunks: list[int]
    emitted: int | None


class StreamDiT:
    """The moving-buffer engine for one stream."""

    def __init__(
        self,
        dit: VideoDiT,
        text: WordTextEncoder,
        codec: FrameCodec,
        cfg: StreamDiTConfig,
        latent_hw: tuple[int, int],
    ) -> None:
        cfg.validate()
        self.dit, self.text, self.codec, self.cfg = dit.eval(), text.eval(), codec.eval(), cfg
        self.latent_hw = latent_hw
        self.device = next(dit.parameters()).device
        self.plan = ShiftedWindowAttention(tuple(cfg.window))  # type: ignore[arg-type]
        self.configure(cfg.micro_steps)
        self.condition = lambda: torch.zeros(0)
        self.history: deque[PassRecord] = deque(maxlen=16)

    def configure(self, micro_steps: int) -> None:
        self.cfg.micro_steps = micro_steps
        self.schedule = BufferedFlowLevels(self.cfg.num_chunks, micro_steps, sigma_min=self.cfg.sigma_min)
        self.window = StaggeredWindow(self.schedule, PredictedNoise(), self.denoise)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.dit.cfg.in_dim, *self.latent_hw)

    def start(self, seed: int) -> None:
        self.window.reset()
        self.gen = torch.Generator().manual_seed(seed)
        self.refs = torch.zeros(0, *self.latent_shape, device=self.device)
        self.next_chunk = 0
        self.passes = 0
        self.started = False
        self.history.clear()

    def reseed(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def noise(self, frames: int) -> torch.Tensor:
        return torch.randn((frames, *self.latent_shape), generator=self.gen).to(self.device)

    def velocity(self, x: torch.Tensor, taus: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """u for a time-ordered buffer x (F, C, h, w) with per-frame tau (F,)."""
        t = ((1 - taus) * 1000)[None]
        return self.dit(x.transpose(0, 1)[None], t, ctx, plan=self.plan, context_embedded=True)[0].transpose(
            0, 1
        )

    # ------------------------------------------------------------------ one buffer pass
    def denoise(self, batch: WindowPass) -> torch.Tensor:
        slots = list(reversed(batch.slots))  # time order: oldest (cleanest) chunk first
        k = self.refs.shape[0]
        x = torch.cat([self.refs, *[s.latent for s in slots]])
        taus = torch.cat(
            [torch.ones(k), *[self.schedule.tau(torch.full((s.rows,), s.level)) for s in slots]]
        ).to(x.device)
        ctx = self.dit.embed_text(self.condition().to(self.device))
        u = self.velocity(x, taus, ctx)[k:]
        x1, x0 = self.schedule.split(x[k:], u, taus[k:])
        last = self.schedule.num_levels - 1
        out, start = [], 0
        for s in slots:
            rows = slice(start, start + s.rows)
            start += s.rows
            if s.level < last:
                s.state["noise_hat"] = x0[rows]
            out.append(x1[rows])
        self.history.append(
            PassRecord(
                taus.tolist(),
                [int(s.payload[0]) for s in slots],
                int(slots[0].payload[0]) if slots[0].level == last else None,
            )
        )
        self.passes += 1
        return torch.cat(list(reversed(out)))

    # ------------------------------------------------------------------ start-up and streaming
    def startup(self) -> torch.Tensor:
        """Full text-to-video generation of the buffer; returns the K + c frames to emit and fills the window."""
        cfg = self.cfg
        total = cfg.buffer_frames
        steps = self.schedule.num_levels
        x = self.noise(total)
        ctx = self.dit.embed_text(self.condition().to(self.device))
        for i in range(steps):
            tau = torch.full((total,), i / steps, device=self.device)
            x = x + self.velocity(x, tau, ctx) * (1.0 / steps)
        refs, chunks = x[: cfg.ref_frames], x[cfg.ref_frames :].split(cfg.chunk_frames)
        s = cfg.micro_steps
        # chunk j (time order) goes back to buffer position j: level s*(N - j), newest (noisiest) first in the window
        for j in range(len(chunks) - 1, 0, -1):
            level = s * (cfg.num_chunks - j)
            noisy = self.schedule.mix(
                chunks[j], self.noise(cfg.chunk_frames), float(self.schedule.tau(level))
            )
            self.window.slots.append(Slot(latent=noisy, payload=[j] * cfg.chunk_frames, level=level))
        self.next_chunk = cfg.num_chunks
        emitted = torch.cat([refs, chunks[0]])
        self._remember(emitted)
        self.started = True
        return emitted

    def _remember(self, frames: torch.Tensor) -> None:
        k = self.cfg.ref_frames
        if k:
            self.refs = torch.cat([self.refs, frames])[-k:]

    def to(self, device: str) -> StreamDiT:
        """Move the transformer and the codec (the text encoder stays: prompts are encoded once)."""
        self.device = torch.device(device)
        self.dit.to(self.device)
        self.codec.to(self.device)
        return self

    def step(self) -> torch.Tensor:
        """Passes until a chunk reaches tau = 1; returns its latents (c frames; K + c at start-up)."""
        if not self.started:
            return self.startup()
        while True:
            entering = None
            if _should_enter(self):
                entering = self.window.enter_noisy(
                    self.noise(self.cfg.chunk_frames), [self.next_chunk] * self.cfg.chunk_frames
                )
                self.next_chunk += 1
            finished = self.window.step(entering)
            if finished:
                out = finished[0].latent
                self._remember(out)
                return out


def _should_enter(engine: StreamDiT) -> bool:
    """A new chunk enters once the newest chunk has taken its s micro-steps (the buffer shifts by c)."""
    slots = engine.window.slots
    return not slots or (slots[0].level > 0 and slots[0].level % engine.cfg.micro_steps == 0)


class StreamDiTGenerator(TextToVideoGenerator):
    spec = GeneratorSpec(
        name=NAME,
        description="StreamDiT text-to-video: a moving buffer of chunks at increasing tau (flow matching), windowed DiT.",
        inputs=(MediaKind.TEXT,),
        outputs=(MediaKind.VIDEO,),
        params=ParamSet(
            common_params(DEFAULT_PROMPT)
            + (
                Param("micro_steps", int, None, "Micro-steps s per buffer position (default: the model's; the "
                      "distilled default runs s = 1).", live=False, optional=True, minimum=1, maximum=64),
            )
        ),
        input_optional=True,
    )  # fmt: skip

    def __init__(self, engine: StreamDiT) -> None:
        self.engine = engine
        self.trained_micro_steps = engine.cfg.micro_steps
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
    ) -> StreamDiTGenerator:
        if checkpoint:
            raise ParamError("streamdit has no separate checkpoint files; pass the model folder with --model")
        return cls(build_engine(resolve_model(NAME, model)).to(device))

    def encode_prompt(self, text: str) -> torch.Tensor:
        return self.prompts(text)

    def start_stream(self) -> None:
        s = self.params["micro_steps"] or self.trained_micro_steps
        self.engine.configure(s)
        self.engine.start(self.params["seed"])

    def reseed(self, seed: int) -> None:
        self.engine.reseed(seed)

    def step(self) -> torch.Tensor:
        return self.engine.step()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.engine.codec.decode(latents)


def folder_config(
    dit: DiTConfig, text: TextConfig, codec: CodecConfig, cfg: StreamDiTConfig, size: int
) -> dict[str, Any]:
    return {
        "size": size,
        "transformer": dit.to_dict(),
        "text": text.to_dict(),
        "codec": codec.to_dict(),
        "streamdit": asdict(cfg),
    }


def build_engine(folder: Path) -> StreamDiT:
    config, parts = read_folder(folder, NAME)
    try:
        dit = VideoDiT(DiTConfig.from_dict(config["transformer"]))
        text = WordTextEncoder(TextConfig.from_dict(config["text"]))
        codec = FrameCodec(CodecConfig.from_dict(config["codec"]))
        cfg = StreamDiTConfig(**config["streamdit"])
        size = int(config["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder}/config.json is not a {NAME} config: {exc}") from exc
    load_into(dit, parts.get("transformer"), "transformer", folder)
    load_into(text, parts.get("text"), "text encoder", folder)
    load_into(codec, parts.get("codec"), "codec", folder)
    s = codec.cfg.scale
    return StreamDiT(dit, text, codec, cfg, (size // s, size // s))
