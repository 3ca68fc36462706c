"""X-Streamer's Actor: a chunk-wise autoregressive diffusion transformer over interleaved text, audio and video.

One chunk = ``chunk_frames`` (8) video frames = 16 audio token steps = 320 ms. Its tokens, in order::

    [ text_slots (4) text tokens | 16 audio tokens (one per 20-ms step) | 8 frames x 16 video patch tokens ]

- text: ids of the Thinker's vocabulary, plus MASK (= ``text_vocab``) and PAD (= ``text_vocab + 1``); the targets
  are the words whose spoken onset falls in the chunk, PAD in unused slots;
- audio: one token per step = 4 FSQ groups of 1000 codes; embedded as the sum of 4 group tables (1000 + 1 rows,
  the last = MASK), predicted by 4 heads of 1000 logits;
- video: each frame's (4, 16, 16) latent cut into 4x4 patches -> 16 tokens of 64 values; the output is the
  flow-matching velocity of ``streamrt.video.flow`` (x_sigma = (1 - sigma) x0 + sigma eps, v = eps - x0).

Diffusion forcing: every chunk carries its own noise level sigma in [0, 1] (video noise fraction = mask probability
of its discrete tokens), fed to every one of its tokens through adaLN. Attention is bidirectional inside a chunk and
causal across chunks, positions are the time-aligned mRoPE of ``streamrt.mrope``; every block also cross-attends to
the Thinker's hidden states a chunk may see (``thinker_chunk[j] <= chunk``) plus one learned "no thought" token that
is always visible, so a chunk with no visible state is well defined.

The sequence starts with the identity prefix: the portrait chunk (text PAD, audio = silence codes, all frames = the
portrait's latent) at sigma 0. It sees no Thinker state and is seen by every chunk; in streaming it is the frozen
attention sink (``pipelines.xstreamer.actor_stream``).

How self-attention runs is a strategy (``ChunkAttention``): ``FullAttention`` for training (block-causal mask over a
whole sequence), the stream's cached plan at inference. The model never branches on the mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.errors import InputError, ParamError
from streamrt.mrope import ChunkLayout, MRope
from streamrt.video.attention import block_causal_mask
from streamrt.video.dit import CrossAttention, LayerNorm, SelfAttention, sdpa, sinusoidal_embedding
from streamrt.video.flow import shift_time

PAD_CHUNK = 1 << 40  # thinker_chunk of padding states: never visible


@dataclass
class ActorConfig:
    """Sizes of the Actor. The defaults are cut from the issue's dim 256 / 6 layers / 4 heads so that one stream
    step (window of 4 chunks + the clean write pass) costs ~150 ms of one CPU thread instead of ~320 ms, leaving room
    in the 320-ms chunk budget for the frame and audio decoders."""

    dim: int = 192
    layers: int = 4
    heads: int = 3  # head dim 64, split t/h/w 24/20/20 by the mRoPE
    text_slots: int = 4
    text_vocab: int = 256  # the Thinker's vocabulary size (the recipe sets it from the tokenizer)
    audio_groups: int = 4
    codebook_size: int = 1000
    chunk_frames: int = 8
    steps_per_frame: int = 2
    latent_channels: int = 4
    latent_size: int = 16
    patch: int = 4
    thinker_dim: int = 128  # the Thinker's hidden size (the recipe sets it from the LM's config)
    levels: int = 4  # denoising levels = chunks in flight in the stream's window
    cache_chunks: int = 3  # clean chunks kept in the stream's rolling KV cache (besides the identity sink)
    ffn_mult: int = 4
    freq_dim: int = 256
    shift: float = 1.0  # flow-matching timestep shift of training levels and of the stream's levels
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ParamError(f"dim ({self.dim}) must split into {self.heads} heads of an even size")
        if self.latent_size % self.patch:
            raise ParamError(f"latent_size ({self.latent_size}) must be a multiple of patch ({self.patch})")
        if self.levels < 1 or self.cache_chunks < 1:
            raise ParamError("levels and cache_chunks must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ActorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ParamError(f"unknown Actor config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    @property
    def layout(self) -> ChunkLayout:
        g = self.latent_size // self.patch
        return ChunkLayout(self.text_slots, self.chunk_frames, self.steps_per_frame, g, g)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def patch_dim(self) -> int:
        return self.latent_channels * self.patch * self.patch

    @property
    def text_mask_id(self) -> int:
        return self.text_vocab

    @property
    def text_pad_id(self) -> int:
        return self.text_vocab + 1

    @property
    def audio_mask_id(self) -> int:
        return self.codebook_size

    @property
    def audio_steps(self) -> int:
        return self.chunk_frames * self.steps_per_frame


@dataclass
class ActorBatch:
    """A training batch of C consecutive chunks per sample. ``thinker_chunk`` counts chunks of this batch
    (0 = the batch's first chunk); ``first_chunk`` only moves the positions (a window late in a long call)."""

    video: torch.Tensor  # (B, C, F, Cl, H, W) clean latents
    audio: torch.Tensor  # (B, C, S, G) long codes
    text: torch.Tensor  # (B, C, T) long ids (PAD-filled)
    portrait: torch.Tensor  # (B, Cl, H, W) latent
    silence: torch.Tensor  # (G,) silence codes (for the portrait chunk)
    thinker: torch.Tensor  # (B, L, thinker_dim), zero-padded
    thinker_chunk: torch.Tensor  # (B, L) long: first chunk that may see state j (large value for padding)
    first_chunk: torch.Tensor  # (B,) absolute index of chunk 0
    mouth: torch.Tensor | None = None  # (B, C, F, 2) the mouth's (x, y) per frame in latent cells, if known


def mouth_weight_map(mouth: torch.Tensor, size: int, weight: float, radius: float) -> torch.Tensor:
    """(..., 2) mouth (x, y) in latent cells -> (..., size, size) loss weights 1 + weight * gaussian(d / radius)."""
    centres = torch.arange(size, dtype=torch.float32, device=mouth.device) + 0.5
    dx = centres.view(1, size) - mouth[..., 0, None, None].float()
    dy = centres.view(size, 1) - mouth[..., 1, None, None].float()
    return 1 + weight * torch.exp(-(dx * dx + dy * dy) / (2 * radius * radius))


@dataclass
class ActorOutput:
    video: torch.Tensor  # (B, C, F, Cl, H, W) flow velocity eps - x0
    audio: torch.Tensor  # (B, C, S, G, K) logits
    text: (
        torch.Tensor
    )  # (B, C, T, text_vocab + 2) logits over text ids (MASK is never a target: samplers drop it)


class ChunkAttention(Protocol):
    """Self-attention of one forward. ``q, k, v``: (B, L, H, D), q/k-normalised, not yet rotated."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


class FullAttention:
    """A whole sequence at once (training, references): mRoPE at each token's position, block-causal mask."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> None:
        self.cos, self.sin, self.mask = cos, sin, mask

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(q.device)
        return sdpa(MRope.apply(q, self.cos, self.sin), MRope.apply(k, self.cos, self.sin), v, mask)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN per chunk: x (B, C*N, D), shift/scale (B, C, D) -> (B, C*N, D); never materialises per-token copies."""
    b, c, d = shift.shape
    y = x.view(b, c, -1, d) * (1 + scale[:, :, None]) + shift[:, :, None]
    return y.view(b, -1, d)


def gated(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    b, c, d = gate.shape
    return (x.view(b, c, -1, d) * gate[:, :, None]).view(b, -1, d)


class ActorBlock(nn.Module):
    """adaLN block: modulated self-attention (plan), cross-attention to Thinker states, modulated MLP."""

    def __init__(self, cfg: ActorConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.heads, cfg.eps)
        self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, cfg.heads, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_mult * dim), nn.GELU(), nn.Linear(cfg.ffn_mult * dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,  # (B, C*N, D)
        e: torch.Tensor,  # (B, C, 6, D) per-chunk modulation (each chunk its own level)
        context: torch.Tensor,  # (B, M, D) no-thought token + projected Thinker states
        context_mask: torch.Tensor | None,  # (B, 1, C*N, M) additive, None = all visible
        layer: int,
        plan: ChunkAttention,
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e).unbind(2)  # each (B, C, D)
        q, k, v = self.self_attn.qkv(modulate(self.norm1(x), shift1, scale1))
        x = x + gated(self.self_attn.o(plan.attend(layer, q, k, v).flatten(2)), gate1)
        x = x + self.cross_attn(self.norm3(x), context, context_mask)
        return x + gated(self.ffn(modulate(self.norm2(x), shift2, scale2)), gate2)


class Actor(nn.Module):
    """(video, audio, text) chunks at per-chunk levels + Thinker states -> velocity and token logits."""

    def __init__(self, cfg: ActorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = cfg.layout
        dim, g, k = cfg.dim, cfg.audio_groups, cfg.codebook_size
        self.text_embed = nn.Embedding(cfg.text_vocab + 2, dim)  # words, MASK, PAD
        # Text slots share one position (the chunk's first step): a learned slot embedding tells them apart, so
        # several masked slots of a chunk need not predict the same word.
        self.text_slot = nn.Parameter(torch.randn(cfg.text_slots, dim) * 0.02)
        self.audio_embed = nn.Embedding(
            g * (k + 1), dim
        )  # G group tables of K + 1 rows (last = MASK), stacked
        self.video_embed = nn.Linear(cfg.patch_dim, dim)
        self.modality = nn.Parameter(torch.randn(3, dim) * 0.02)  # text, audio, video
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.thinker_proj = nn.Linear(cfg.thinker_dim, dim)
        self.no_thought = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(ActorBlock(cfg) for _ in range(cfg.layers))
        self.head_norm = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.head_modulation = nn.Parameter(torch.randn(1, 1, 2, dim) / dim**0.5)
        self.text_head = nn.Linear(dim, cfg.text_vocab + 2)  # ids of text_embed; MASK is never a target
        self.audio_head = nn.Linear(dim, g * k)
        self.video_head = nn.Linear(dim, cfg.patch_dim)
        self.rope = MRope(cfg.head_dim)
        # The codec's codes of silence (the portrait chunk's audio); the recipe sets them from its audio codec.
        self.register_buffer("silence", torch.zeros(g, dtype=torch.long))

    # ------------------------------------------------------------------ tokens
    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, F, Cl, H, W) -> (B, C, F*gh*gw, Cl*p*p), frame-major, row-major patches."""
        b, c, f, cl, h, w = video.shape
        p = self.cfg.patch
        x = video.reshape(b, c, f, cl, h // p, p, w // p, p).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return x.reshape(b, c, f * (h // p) * (w // p), cl * p * p)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, c = tokens.shape[:2]
        p, g = cfg.patch, cfg.latent_size // cfg.patch
        x = tokens.reshape(b, c, cfg.chunk_frames, g, g, cfg.latent_channels, p, p).permute(
            0, 1, 2, 5, 3, 6, 4, 7
        )
        return x.reshape(b, c, cfg.chunk_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size)

    def embed(self, video: torch.Tensor, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Chunks -> (B, C*N, D) tokens in the layout's order."""
        cfg = self.cfg
        t = self.text_embed(text) + self.text_slot + self.modality[0]  # (B, C, T, D)
        offsets = torch.arange(cfg.audio_groups, device=audio.device) * (cfg.codebook_size + 1)
        a = self.audio_embed(audio + offsets).sum(-2) + self.modality[1]  # (B, C, S, D)
        v = self.video_embed(self.patchify(video)) + self.modality[2]  # (B, C, F*16, D)
        return torch.cat([t, a, v], dim=2).flatten(1, 2)

    def portrait_chunk(
        self, portrait: torch.Tensor, silence: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The identity prefix of portrait latents (B, Cl, H, W): (video, audio, text), each with a chunk axis."""
        cfg = self.cfg
        b = portrait.shape[0]
        silence = self.silence if silence is None else silence
        video = portrait[:, None, None].expand(b, 1, cfg.chunk_frames, *portrait.shape[1:])
        audio = silence.to(portrait.device).view(1, 1, 1, -1).expand(b, 1, cfg.audio_steps, cfg.audio_groups)
        text = torch.full((b, 1, cfg.text_slots), cfg.text_pad_id, dtype=torch.long, device=portrait.device)
        return video, audio, text

    # ------------------------------------------------------------------ conditioning
    def time_modulation(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma (B, C) -> per-chunk block modulation (B, C, 6, D) and head embedding (B, C, D)."""
        b, c = sigma.shape
        e = self.time_embedding(
            sinusoidal_embedding(self.cfg.freq_dim, sigma.detach().cpu() * 1000).to(sigma.device)
        )
        e0 = self.time_projection(e).view(b, c, 6, self.cfg.dim)
        return e0, e.view(b, c, self.cfg.dim)

    def thinker_context(
        self,
        thinker: torch.Tensor | None,
        thinker_chunk: torch.Tensor | None,
        chunk_index: torch.Tensor,
        prefix: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keys of cross-attention (B, 1 + L, D) and its mask (B, 1, C*N, 1 + L), None if all visible: chunk k sees state j iff
        ``thinker_chunk[j] <= k``; the no-thought token is always visible; the prefix sees no state."""
        b, c = chunk_index.shape
        none = self.no_thought.expand(b, 1, -1)
        if thinker is None or thinker.shape[1] == 0:
            ctx = none
            visible = torch.ones(b, c, 1, dtype=torch.bool, device=chunk_index.device)
        else:
            if thinker_chunk is None or thinker_chunk.shape != thinker.shape[:2]:
                raise InputError("thinker_chunk must give one chunk index per Thinker state: shape (B, L)")
            ctx = torch.cat([none, self.thinker_proj(thinker)], dim=1)
            see = thinker_chunk[:, None, :] <= chunk_index[:, :, None]  # (B, C, L)
            if prefix:
                see[:, 0] = False
            visible = torch.cat([torch.ones_like(see[..., :1]), see], dim=-1)
        if bool(visible.all()):
            return ctx, None
        # An additive float mask, built once per forward (bool masks are converted on every call by the CPU kernels).
        bias = torch.zeros(visible.shape, device=visible.device).masked_fill_(~visible, float("-inf"))
        return ctx, bias.repeat_interleave(self.layout.tokens, dim=1)[:, None]

    def full_attention(self, chunk_index: torch.Tensor) -> FullAttention:
        """The training plan: positions from absolute chunk indices (B, C); causal over the sequence's chunks."""
        pos = torch.stack([self.layout.positions(row) for row in chunk_index.cpu()])  # (B, L, 3)
        if bool((chunk_index == chunk_index[:1]).all()):
            pos = pos[0]  # one rotation table for the whole batch
        cos, sin = self.rope.cos_sin(pos)
        c = chunk_index.shape[1]
        mask = block_causal_mask(torch.arange(c), self.layout.tokens)
        return FullAttention(cos.to(chunk_index.device), sin.to(chunk_index.device), mask)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        video: torch.Tensor,  # (B, C, F, Cl, H, W) noisy latents
        audio: torch.Tensor,  # (B, C, S, G) codes, MASK where masked
        text: torch.Tensor,  # (B, C, T) ids, MASK where masked
        sigma: torch.Tensor,  # (B, C) each chunk's level
        chunk_index: torch.Tensor,  # (B, C) absolute chunk index (positions, Thinker visibility)
        thinker: torch.Tensor | None = None,  # (B, L, thinker_dim)
        thinker_chunk: torch.Tensor | None = None,  # (B, L) absolute first chunk that may see each state
        *,
        prefix: bool = True,  # chunk 0 of the sequence is the identity prefix (sees no Thinker state)
        plan: ChunkAttention | None = None,
    ) -> ActorOutput:
        cfg = self.cfg
        x = self.embed(video, audio, text)  # (B, C*N, D)
        e0, e = self.time_modulation(sigma)
        plan = plan if plan is not None else self.full_attention(chunk_index)
        ctx, ctx_mask = self.thinker_context(thinker, thinker_chunk, chunk_index, prefix)
        for i, block in enumerate(self.blocks):
            x = block(x, e0, ctx, ctx_mask, i, plan)
        shift, scale = (self.head_modulation + e[:, :, None]).unbind(2)
        y = modulate(self.head_norm(x), shift, scale)
        y = y.view(*sigma.shape, self.layout.tokens, cfg.dim)  # (B, C, N, D)
        ts, aus, vs = self.layout.slices()
        text_logits = self.text_head(y[:, :, ts])
        audio_logits = self.audio_head(y[:, :, aus]).unflatten(-1, (cfg.audio_groups, cfg.codebook_size))
        velocity = self.unpatchify(self.video_head(y[:, :, vs]))
        return ActorOutput(velocity, audio_logits, text_logits)

    # ------------------------------------------------------------------ training
    def diffusion_forcing_loss(
        self,
        batch: ActorBatch,
        generator: torch.Generator,
        *,
        audio_weight: float = 1.0,
        text_weight: float = 1.0,
        mouth_weight: float = 0.0,
        mouth_radius: float = 1.0,
        token_levels: str = "chunk",
    ) -> dict[str, torch.Tensor]:
        """Chunk-wise diffusion forcing: every chunk of every sample draws its own level t ~ U(0, 1) (shifted by
        ``cfg.shift``). Video: flow matching on x_t = (1 - t) x0 + t eps, MSE to v = eps - x0. Audio steps and text
        slots: absorbing-state diffusion, each token masked with probability t, cross-entropy on masked tokens
        (mean over masked tokens). Returns loss (weighted sum), video, audio, text and the drawn ``levels`` (B, C).

        ``mouth_weight`` > 0 (with ``batch.mouth``) weights the video error of each latent cell by
        1 + mouth_weight * exp(-d^2 / 2 r^2), d its distance to that frame's mouth, r = ``mouth_radius`` cells. The
        mouth covers ~1 % of a frame's cells, so an unweighted loss is dominated by the face and background, which
        the identity prefix already explains; the weight makes the audio-driven part worth learning at CPU scale.
        It changes only what the loss emphasises, not the model or its sampling.

        ``token_levels="independent"`` draws the discrete tokens' mask level of each chunk apart from its video level
        (still one per chunk), so training also shows clean audio beside noisy video and the reverse: with one shared
        level the audio is mostly masked exactly when the video is too noisy to show the mouth, and nothing teaches
        the video to follow the sound. The stream still moves both together (the shared case is one of the draws)."""
        cfg = self.cfg
        dev = batch.video.device
        b, c = batch.text.shape[:2]
        if batch.video.shape[2:] != (cfg.chunk_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size):
            raise InputError(
                f"video chunks must be (B, C, {cfg.chunk_frames}, {cfg.latent_channels}, "
                f"{cfg.latent_size}, {cfg.latent_size}); got {tuple(batch.video.shape)}"
            )
        t = torch.rand(b, c, generator=generator)
        t = shift_time(t, cfg.shift).to(dev)  # type: ignore[union-attr]
        eps = torch.randn(batch.video.shape, generator=generator).to(dev)
        s = t.view(b, c, 1, 1, 1, 1)
        x_t = (1 - s) * batch.video + s * eps
        if token_levels not in ("chunk", "independent"):
            raise ParamError(f"token_levels must be 'chunk' or 'independent'; got {token_levels!r}")
        m = (
            t
            if token_levels == "chunk"
            else shift_time(torch.rand(b, c, generator=generator), cfg.shift).to(dev)
        )
        audio_masked = torch.rand(b, c, cfg.audio_steps, generator=generator).to(dev) < m[..., None]
        text_masked = torch.rand(b, c, cfg.text_slots, generator=generator).to(dev) < m[..., None]
        audio_in = torch.where(audio_masked[..., None], cfg.audio_mask_id, batch.audio)
        text_in = torch.where(text_masked, cfg.text_mask_id, batch.text)

        pv, pa, pt = self.portrait_chunk(batch.portrait, batch.silence)
        first = batch.first_chunk.to(dev).long()
        chunk_index = first[:, None] + torch.arange(-1, c, device=dev)[None]  # prefix just before chunk 0
        out = self(
            torch.cat([pv, x_t], 1),
            torch.cat([pa, audio_in], 1),
            torch.cat([pt, text_in], 1),
            torch.cat([torch.zeros(b, 1, device=dev), t], 1),
            chunk_index,
            batch.thinker,
            batch.thinker_chunk.to(dev) + first[:, None],
            prefix=True,
        )
        video_err = (out.video[:, 1:] - (eps - batch.video)).pow(2)  # (B, C, F, Cl, H, W)
        if mouth_weight > 0 and batch.mouth is not None:
            w = mouth_weight_map(batch.mouth.to(dev), cfg.latent_size, mouth_weight, mouth_radius)
            video_loss = (video_err * w[:, :, :, None]).mean() / w.mean()
        else:
            video_loss = video_err.mean()
        audio_ce = F.cross_entropy(
            out.audio[:, 1:].flatten(0, -2), batch.audio.flatten(), reduction="none"
        ).view(b, c, cfg.audio_steps, cfg.audio_groups)
        audio_loss = (audio_ce * audio_masked[..., None]).sum() / (
            audio_masked.sum() * cfg.audio_groups
        ).clamp(min=1)
        text_ce = F.cross_entropy(out.text[:, 1:].flatten(0, -2), batch.text.flatten(), reduction="none")
        text_loss = (text_ce.view(b, c, -1) * text_masked).sum() / text_masked.sum().clamp(min=1)
        loss = video_loss + audio_weight * audio_loss + text_weight * text_loss
        return {
            "loss": loss,
            "video": video_loss,
            "audio": audio_loss,
            "text": text_loss,
            "levels": t.detach(),
        }
