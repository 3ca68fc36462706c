"""The Actor's streaming engine: chunks through the runtime's staggered window, clean context in a sink KV cache.

Window (``streamrt.window.StaggeredWindow``): ``levels`` chunks in flight, chunk k entering as pure noise with every
discrete token MASKed, at the flow levels sigma_l = shift(1 - l / levels) (level 0 = pure noise). One ``step``:

1. a fresh chunk enters at level 0;
2. ONE batched forward over the chunks in flight (oldest = least noisy first), bidirectional inside a chunk and
   causal among them, each chunk at its own level, all attending ``[identity sink | rolling cache]``;
3. video: x0 from the velocity, re-noised by the window with fresh keyed noise (``KeyedFreshNoise``); discrete
   tokens (``Slot.state`` "audio", "text"): absorbing diffusion, the most confident (temperature 0) or sampled
   (seeded) masked tokens are revealed so that the masked fraction is the next level's sigma (0 when it leaves);
4. the chunk at the last level leaves; one forward of it, clean at sigma 0, writes its K/V into the cache
   (``buffers.kv_cache.SinkKVCache``: one "frame" of the cache = one chunk of 148 tokens).

The identity prefix is the cache's frozen sink, written once by ``reset``: stored WITHOUT rotation and rotated on
every forward to the chunk position just before the oldest cached chunk (or before the oldest chunk in flight while
the cache is empty), so the identity's distance to the queries is bounded however long a call runs. Memory is bounded
by construction: (1 + cache_chunks) chunks of K/V per layer and at most ``max_thinker_states`` Thinker states.

Before the cache evicts (the first ``cache_chunks`` + 1 chunks) a stream is exactly the full-sequence model on
[prefix, earlier clean chunks, chunks in flight] (the tests check it to 1e-4); after that each chunk sees the prefix
and the last ``cache_chunks`` clean chunks, like Rolling Forcing's rolling window.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from buffers.kv_cache import LayerCaches
from pipelines.xstreamer.actor import Actor, ActorOutput
from streamrt.errors import InputError, ParamError
from streamrt.mrope import ChunkLayout, MRope
from streamrt.video.dit import sdpa
from streamrt.video.flow import FlowLevels, KeyedFreshNoise, shifted_sigmas
from streamrt.window import Slot, StaggeredWindow, WindowPass

log = logging.getLogger(__name__)


@dataclass
class ActorChunk:
    index: int
    video: torch.Tensor  # (F, Cl, H, W) clean latents
    audio: torch.Tensor  # (S, G) codes
    text: torch.Tensor  # (T,) ids (PAD where no word starts)


@dataclass
class PassRecord:
    """One window forward, for inspection and tests: inputs and outputs of the chunks in flight, oldest first."""

    chunks: list[int]
    levels: list[int]
    sigma: torch.Tensor  # (n,)
    video: torch.Tensor  # (n, F, Cl, H, W) noisy inputs
    audio: torch.Tensor  # (n, S, G) inputs (MASK where masked)
    text: torch.Tensor  # (n, T)
    output: ActorOutput  # batch of one
    sink_chunk: int  # chunk position the sink was rotated to
    cached_chunks: int  # clean chunks attended from the rolling cache


class CachedAttention:
    """Self-attention of one streaming forward over the chunks ``chunks`` (consecutive, oldest first).

    mode "window": attend [sink | cache | chunks], causal among the chunks; "write": the same for one clean chunk,
    then append its rotated K/V to the cache; "sink": the identity prefix alone, its unrotated K/V become the sink.
    """

    def __init__(
        self,
        caches: LayerCaches,
        layout: ChunkLayout,
        rope: MRope,
        chunks: list[int],
        max_cached: int,
        mode: str,
    ) -> None:
        self.caches, self.layout, self.rope = caches, layout, rope
        self.chunks, self.max_cached, self.mode = chunks, max_cached, mode
        self.cos, self.sin = rope.cos_sin(layout.positions(torch.tensor(chunks)))
        self._sink_rot: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sink_chunk = chunks[0] - 1
        self.cached_chunks = 0

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cache = self.caches[layer]
        cos, sin = self.cos.to(q.device), self.sin.to(q.device)
        q_rot, k_rot = MRope.apply(q, cos, sin), MRope.apply(k, cos, sin)
        if self.mode == "sink":
            cache.write_sink(k, v)  # unrotated: re-rotated wherever the sink is placed later
            return sdpa(q_rot, k_rot, v)
        ctx = cache.context(self.max_cached)
        keys, values = [], []
        if ctx.sink_k is not None:
            # The sink sits just before the oldest attended chunk: a bounded distance from every query.
            start = ctx.first_frame if ctx.frames else self.chunks[0]
            self.sink_chunk, self.cached_chunks = start - 1, ctx.frames
            if start not in self._sink_rot:
                self._sink_rot[start] = self.rope.cos_sin(self.layout.positions(start - 1))
            scos, ssin = self._sink_rot[start]
            keys.append(MRope.apply(ctx.sink_k, scos.to(q.device), ssin.to(q.device)))
            values.append(ctx.sink_v)
        if ctx.k is not None:
            keys.append(ctx.k)
            values.append(ctx.v)
        n_ctx = sum(x.shape[1] for x in keys)
        keys.append(k_rot)
        values.append(v)
        k_all, v_all = torch.cat(keys, 1), torch.cat(values, 1)
        n = self.layout.tokens
        # Causal among the chunks in flight without a mask: chunk i's queries attend a key prefix (the context and
        # chunks 0..i), which skips the masked work and the mask's cost on the CPU kernels.
        outs = [
            sdpa(
                q_rot[:, i * n : (i + 1) * n],
                k_all[:, : n_ctx + (i + 1) * n],
                v_all[:, : n_ctx + (i + 1) * n],
            )
            for i in range(len(self.chunks))
        ]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        if self.mode == "write":
            cache.write(k_rot, v, self.chunks[0])
        return out


def keyed_generator(seed: int, index: int, level: int) -> torch.Generator:
    """The token sampler's randomness for chunk ``index`` at ``level``: independent of other chunks (so a chunk's
    output does not depend on how many chunks drew before it) and distinct from the video noise's keys."""
    return torch.Generator().manual_seed(((seed * 1_000_033 + index) * 257 + level) * 7 + 3)


def reveal(
    tokens: torch.Tensor,  # (N, G) current codes, ``mask_id`` in every group of a masked token
    logits: torch.Tensor,  # (N, G, K)
    keep_masked: int,  # tokens still masked after this step
    mask_id: int,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One absorbing-diffusion step: fill the masked tokens to reveal, the most confident ones first; revealed tokens
    never change again. Temperature 0 takes the argmax; otherwise a seeded sample (Gumbel-max)."""
    masked = tokens[:, 0] == mask_id
    n_reveal = int(masked.sum()) - keep_masked
    if n_reveal <= 0:
        return tokens
    logp = torch.log_softmax(logits.float() / max(temperature, 1e-6), dim=-1)
    if temperature > 0:
        u = torch.rand(logp.shape, generator=generator).clamp_(1e-9, 1 - 1e-9).to(logp.device)
        choice = (logp - torch.log(-torch.log(u))).argmax(-1)
    else:
        choice = logp.argmax(-1)  # (N, G)
    conf = logp.gather(-1, choice[..., None])[..., 0].sum(-1)  # (N,) log-prob of the whole token
    conf = conf.masked_fill(~masked, float("-inf"))
    idx = torch.topk(conf, n_reveal).indices
    out = tokens.clone()
    out[idx] = choice[idx]
    return out


class ActorStream:
    """One call's Actor: portrait sink, Thinker states, window of chunks in flight, rolling clean cache."""

    def __init__(
        self,
        actor: Actor,
        *,
        levels: int | None = None,
        cache_chunks: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        max_thinker_states: int = 512,
    ) -> None:
        cfg = actor.cfg
        self.actor, self.cfg, self.layout = actor, cfg, actor.layout
        self.levels = cfg.levels if levels is None else int(levels)
        self.cache_chunks = cfg.cache_chunks if cache_chunks is None else int(cache_chunks)
        if self.levels < 1 or self.cache_chunks < 1:
            raise ParamError("levels and cache_chunks must be at least 1")
        if temperature < 0:
            raise ParamError(f"temperature must be >= 0; got {temperature}")
        self.seed, self.temperature, self.max_thinker_states = seed, float(temperature), max_thinker_states
        steps = torch.linspace(1000, 0, self.levels + 1)[
            :-1
        ].tolist()  # level 0 = sigma 1: pure noise, all MASK
        self.schedule = FlowLevels(shifted_sigmas(steps, cfg.shift))
        self.noise = KeyedFreshNoise(seed)
        self.window = StaggeredWindow(self.schedule, self.noise, self._denoise)
        self.caches = LayerCaches(
            cfg.layers, self.layout.tokens, sink_frames=1, capacity_frames=1 + self.cache_chunks
        )
        self.thinker = torch.zeros(0, cfg.thinker_dim)
        self.thinker_chunk = torch.zeros(0, dtype=torch.long)
        self.history: deque[PassRecord] = deque(maxlen=64)
        self.record = False  # keep PassRecords in ``history`` (tests, inspection)
        self.on_pass: Callable[[PassRecord], None] | None = None
        self._next = 0
        self._ready = False

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    @property
    def next_chunk_index(self) -> int:
        """The index of the next chunk to enter the window (the first that can see states added now)."""
        return self._next

    def cache_nbytes(self) -> int:
        return self.caches.nbytes()

    # ------------------------------------------------------------------ call state
    @torch.no_grad()
    def reset(self, portrait_latent: torch.Tensor, silence: torch.Tensor | None = None) -> None:
        """A new call: empty window and cache, no Thinker state; the portrait chunk's K/V become the frozen sink."""
        cfg = self.cfg
        shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        if tuple(portrait_latent.shape) != shape:
            raise InputError(
                f"the portrait latent must be {shape} (the frame codec's); got {tuple(portrait_latent.shape)}"
            )
        self.window.reset()
        self.caches.reset()
        self.noise.reseed(self.seed)
        self.history.clear()
        self.clear_thinker()
        self._next = 0
        dev = self.device
        video, audio, text = self.actor.portrait_chunk(portrait_latent[None].to(dev).float(), silence)
        plan = CachedAttention(self.caches, self.layout, self.actor.rope, [-1], self.cache_chunks, "sink")
        self.actor(
            video,
            audio,
            text,
            torch.zeros(1, 1, device=dev),
            torch.tensor([[-1]], device=dev),
            prefix=True,
            plan=plan,
        )
        self._ready = True

    def add_thinker_states(self, hidden: torch.Tensor, visible_from_chunk: int) -> None:
        """Thinker hidden states (n, thinker_dim), visible to chunks ``visible_from_chunk`` on. Chunks already in
        flight cannot see them (causality: they started denoising without them)."""
        if hidden.ndim != 2 or hidden.shape[1] != self.cfg.thinker_dim:
            raise InputError(f"Thinker states must be (n, {self.cfg.thinker_dim}); got {tuple(hidden.shape)}")
        if visible_from_chunk < self._next:
            raise InputError(
                f"states can only be shown to chunks that have not entered yet: visible_from_chunk must be >= "
                f"next_chunk_index ({self._next}); got {visible_from_chunk}"
            )
        self.thinker = torch.cat([self.thinker, hidden.detach().float().cpu()])[-self.max_thinker_states :]
        new = torch.full((hidden.shape[0],), int(visible_from_chunk), dtype=torch.long)
        self.thinker_chunk = torch.cat([self.thinker_chunk, new])[-self.max_thinker_states :]

    def clear_thinker(self) -> None:
        self.thinker = torch.zeros(0, self.cfg.thinker_dim)
        self.thinker_chunk = torch.zeros(0, dtype=torch.long)

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self) -> ActorChunk | None:
        """One batched pass over the chunks in flight; the chunk that finished (its clean K/V already cached), or
        None while the window fills at the start of a call."""
        if not self._ready:
            raise InputError("ActorStream.reset(portrait_latent) must start a call before step()")
        cfg = self.cfg
        index = self._next
        self._next += 1
        shape = (cfg.chunk_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        slot = self.window.enter_noisy(
            self.noise.draw(index, -1, shape).to(self.device), [index] * cfg.chunk_frames
        )
        slot.state["index"] = torch.tensor(index)
        slot.state["audio"] = torch.full(
            (cfg.audio_steps, cfg.audio_groups), cfg.audio_mask_id, device=self.device
        )
        slot.state["text"] = torch.full((cfg.text_slots,), cfg.text_mask_id, device=self.device)
        finished: list[Slot] = self.window.step(slot)
        if not finished:
            return None
        done = finished[0]
        chunk = ActorChunk(int(done.state["index"]), done.latent, done.state["audio"], done.state["text"])
        self._write_clean(chunk)
        return chunk

    def _thinker_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.thinker[None].to(self.device), self.thinker_chunk[None].to(self.device)

    def _write_clean(self, chunk: ActorChunk) -> None:
        """The write pass: the finished chunk, clean (sigma 0), attends its context and appends its K/V."""
        dev = self.device
        plan = CachedAttention(
            self.caches, self.layout, self.actor.rope, [chunk.index], self.cache_chunks, "write"
        )
        th, thc = self._thinker_inputs()
        self.actor(
            chunk.video[None, None],
            chunk.audio[None, None],
            chunk.text[None, None],
            torch.zeros(1, 1, device=dev),
            torch.tensor([[chunk.index]], device=dev),
            th,
            thc,
            prefix=False,
            plan=plan,
        )

    def _denoise(self, batch: WindowPass) -> torch.Tensor:
        cfg = self.cfg
        slots = list(reversed(batch.slots))  # time order: oldest (least noisy) first
        chunks = [int(s.state["index"]) for s in slots]
        levels = [s.level for s in slots]
        dev = self.device
        sigma = self.schedule.sigma(torch.tensor(levels)).to(dev)  # (n,)
        video = torch.stack([s.latent for s in slots])  # (n, F, Cl, H, W)
        audio = torch.stack([s.state["audio"] for s in slots])
        text = torch.stack([s.state["text"] for s in slots])
        plan = CachedAttention(self.caches, self.layout, self.actor.rope, chunks, self.cache_chunks, "window")
        th, thc = self._thinker_inputs()
        out = self.actor(
            video[None],
            audio[None],
            text[None],
            sigma[None],
            torch.tensor([chunks], device=dev),
            th,
            thc,
            prefix=False,
            plan=plan,
        )
        x0 = FlowLevels.x0_from_velocity(video, out.video[0], sigma)
        text_logits = out.text[0].clone()
        text_logits[..., cfg.text_mask_id] = float("-inf")  # MASK is never an answer
        for i, slot in enumerate(slots):
            nxt = slot.level + 1
            frac = float(self.schedule.sigma(nxt)) if nxt < self.schedule.num_levels else 0.0
            gen = keyed_generator(self.seed, chunks[i], slot.level)
            slot.state["audio"] = reveal(
                slot.state["audio"],
                out.audio[0, i],
                round(frac * cfg.audio_steps),
                cfg.audio_mask_id,
                self.temperature,
                gen,
            )
            text_tokens = reveal(
                slot.state["text"][:, None],
                text_logits[i][:, None],
                round(frac * cfg.text_slots),
                cfg.text_mask_id,
                self.temperature,
                gen,
            )
            slot.state["text"] = text_tokens[:, 0]
        if self.record or self.on_pass is not None:
            rec = PassRecord(
                chunks, levels, sigma.cpu(), video, audio, text, out, plan.sink_chunk, plan.cached_chunks
            )
            if self.record:
                self.history.append(rec)
            if self.on_pass is not None:
                self.on_pass(rec)
        return torch.cat(list(reversed(list(x0))))  # the window's row order: noisiest slot first
