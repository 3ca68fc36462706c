"""X-Streamer's Actor: time-aligned mRoPE, chunk causality, diffusion forcing, and the streaming engine (sink cache,
staggered window) against the full-sequence model."""

from __future__ import annotations

import pytest
import torch

from pipelines.xstreamer.actor import PAD_CHUNK, Actor, ActorBatch, ActorConfig
from pipelines.xstreamer.actor_stream import ActorStream, PassRecord
from streamrt.errors import InputError, ParamError
from streamrt.mrope import MRope

torch.set_num_threads(1)


def tiny_config(**kw) -> ActorConfig:
    base = dict(
        dim=32,
        layers=2,
        heads=2,
        text_slots=2,
        text_vocab=20,
        codebook_size=16,
        chunk_frames=2,
        latent_size=8,
        patch=4,
        thinker_dim=12,
        levels=3,
        cache_chunks=4,
        freq_dim=32,
    )
    base.update(kw)
    return ActorConfig(**base)


def tiny_actor(seed: int = 0, **kw) -> Actor:
    torch.manual_seed(seed)
    return Actor(tiny_config(**kw)).eval()


def random_chunks(cfg: ActorConfig, b: int, c: int, gen: torch.Generator):
    video = torch.randn(
        b, c, cfg.chunk_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=gen
    )
    audio = torch.randint(0, cfg.codebook_size, (b, c, cfg.audio_steps, cfg.audio_groups), generator=gen)
    text = torch.randint(0, cfg.text_vocab + 2, (b, c, cfg.text_slots), generator=gen)
    return video, audio, text


# ---------------------------------------------------------------------------------------------------------- mRoPE
def test_audio_and_video_of_the_same_instant_share_positions() -> None:
    layout = Actor(ActorConfig(dim=64, layers=1, heads=1)).layout  # the default layout: 148 tokens per chunk
    assert layout.tokens == 4 + 16 + 8 * 16
    _, aud, vid = layout.slices()
    rope = MRope(64)
    for chunk in (0, 3, 1000):
        pos = layout.positions(chunk)
        audio_t = pos[aud, 0]
        video_t = pos[vid, 0].view(8, 16)
        assert torch.equal(audio_t, torch.arange(16, dtype=torch.float64) + 16 * chunk)
        for f in range(8):
            assert (video_t[f] == audio_t[2 * f]).all()  # frame f starts with audio step 2f
            assert (video_t[f] != audio_t[2 * f + 1]).all()
        assert (pos[:4, 0] == 16 * chunk).all()  # text slots: the chunk's first step
        # The time part of the rotation is identical for the same instant and differs otherwise.
        ang = rope.angles(pos)
        dt = rope.rope.inv_freq[0].shape[0]
        a_step2 = ang[aud.start + 2, :dt]
        assert torch.allclose(ang[vid.start + 16, :dt], a_step2)  # frame 1, patch 0 vs audio step 2
        assert not torch.allclose(ang[vid.start, :dt], a_step2)  # frame 0 vs audio step 2
    # Positions continue across chunks on one clock: chunk 1's first audio step follows chunk 0's last.
    assert layout.positions(1)[aud.start, 0] == layout.positions(0)[aud.stop - 1, 0] + 1


def test_mrope_scores_depend_on_relative_position_only() -> None:
    rope = MRope(48)
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 48, generator=gen), torch.randn(1, 1, 1, 48, generator=gen)
    p1 = torch.tensor([[5.0, 1.0, 2.0]])
    p2 = torch.tensor([[2.0, 3.0, 0.0]])
    shift = torch.tensor([[123456.0, 0.0, 0.0]])  # an hour-long call later
    s = (rope.rotate(q, p1) * rope.rotate(k, p2)).sum()
    s_far = (rope.rotate(q, p1 + shift) * rope.rotate(k, p2 + shift)).sum()
    s_moved = (rope.rotate(q, p1 + 1) * rope.rotate(k, p2)).sum()
    assert torch.allclose(s, s_far, atol=1e-4)
    assert not torch.allclose(s, s_moved, atol=1e-3)


# ------------------------------------------------------------------------------------------------------- causality
def test_chunk_sees_only_the_past_the_prefix_and_its_thinker_states() -> None:
    actor = tiny_actor()
    cfg = actor.cfg
    gen = torch.Generator().manual_seed(1)
    video, audio, text = random_chunks(cfg, 1, 4, gen)  # [prefix, c0, c1, c2]
    sigma = torch.tensor([[0.0, 0.3, 0.6, 0.9]])
    index = torch.tensor([[9, 10, 11, 12]])  # a window late in a call: positions are absolute
    thinker = torch.randn(1, 4, cfg.thinker_dim, generator=gen)
    th_chunk = torch.tensor([[10, 11, 12, PAD_CHUNK]])

    def run(v=video, a=audio, t=text, th=thinker):
        with torch.no_grad():
            return actor(v, a, t, sigma, index, th, th_chunk, prefix=True)

    base = run()

    def chunk_out(out, i):
        return torch.cat([out.video[:, i].flatten(), out.audio[:, i].flatten(), out.text[:, i].flatten()])

    def bumped(x, i):
        y = x.clone()
        y[:, i] = x[:, i] + 1 if x.is_floating_point() else (x[:, i] + 1) % cfg.codebook_size
        return y

    # chunk 11 (sequence index 2): unchanged by the later chunk and later states ...
    assert torch.equal(chunk_out(run(v=bumped(video, 3)), 2), chunk_out(base, 2))
    assert torch.equal(chunk_out(run(a=bumped(audio, 3)), 2), chunk_out(base, 2))
    th_late = thinker.clone()
    th_late[:, 2:] += 1  # visible from chunk 12 / padding
    assert torch.equal(chunk_out(run(th=th_late), 2), chunk_out(base, 2))
    assert not torch.allclose(chunk_out(run(th=th_late), 3), chunk_out(base, 3))
    # ... changed by the prefix, an earlier chunk, its own chunk and a state it may see.
    for changed in (
        run(v=bumped(video, 0)),
        run(v=bumped(video, 1)),
        run(a=bumped(audio, 1)),
        run(v=bumped(video, 2)),
    ):
        assert not torch.allclose(chunk_out(changed, 2), chunk_out(base, 2), atol=1e-5)
    th_seen = thinker.clone()
    th_seen[:, 1] += 1  # visible from chunk 11
    assert not torch.allclose(chunk_out(run(th=th_seen), 2), chunk_out(base, 2), atol=1e-5)
    assert torch.equal(chunk_out(run(th=th_seen), 1), chunk_out(base, 1))  # chunk 10 cannot see it
    # The identity prefix sees no Thinker state at all.
    assert torch.equal(chunk_out(run(th=thinker + 5), 0), chunk_out(base, 0))
    # Inside a chunk attention is bidirectional: the last frame's latents change the first frame's output.
    v2 = video.clone()
    v2[:, 2, -1] += 1
    assert not torch.allclose(run(v=v2).video[:, 2, 0], base.video[:, 2, 0], atol=1e-5)


# ------------------------------------------------------------------------------------------------------- training
def make_batch(cfg: ActorConfig, b: int, c: int, seed: int = 0) -> ActorBatch:
    gen = torch.Generator().manual_seed(seed)
    video, audio, text = random_chunks(cfg, b, c, gen)
    text = torch.where(text >= cfg.text_vocab, cfg.text_pad_id, text)
    return ActorBatch(
        video=video,
        audio=audio,
        text=text,
        portrait=torch.randn(b, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=gen),
        silence=torch.tensor([3, 1, 4, 1]),
        thinker=torch.randn(b, 3, cfg.thinker_dim, generator=gen),
        thinker_chunk=torch.tensor([[0, 1, PAD_CHUNK]] * b),
        first_chunk=torch.arange(b) * 7,
    )


def test_diffusion_forcing_draws_an_independent_level_per_chunk() -> None:
    actor = tiny_actor()
    batch = make_batch(actor.cfg, 4, 6)
    seen: list[torch.Tensor] = []
    original = actor.time_modulation

    def spy(sigma: torch.Tensor):
        seen.append(sigma.clone())
        return original(sigma)

    actor.time_modulation = spy  # type: ignore[method-assign]
    out = actor.diffusion_forcing_loss(batch, torch.Generator().manual_seed(0))
    levels = out["levels"]
    assert levels.shape == (4, 6)
    assert ((levels >= 0) & (levels <= 1)).all()
    assert levels.unique().numel() == 24  # every chunk of every sample its own level
    assert (levels.std(dim=1) > 0.05).all()  # not one level per sample
    # What the model was conditioned on: sigma 0 for the identity prefix, then each chunk's own level.
    (sigma,) = seen
    assert (sigma[:, 0] == 0).all() and torch.equal(sigma[:, 1:], levels)
    again = actor.diffusion_forcing_loss(batch, torch.Generator().manual_seed(1))["levels"]
    assert not torch.allclose(again, levels)
    for key in ("loss", "video", "audio", "text"):
        assert torch.isfinite(out[key]) and out[key] > 0


def test_diffusion_forcing_loss_decreases() -> None:
    actor = tiny_actor().train()
    batch = make_batch(actor.cfg, 2, 3)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = actor.diffusion_forcing_loss(
            batch, torch.Generator().manual_seed(0)
        )  # same draw: a fixed objective
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_config_round_trip() -> None:
    cfg = tiny_config()
    assert ActorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParamError):
        ActorConfig.from_dict({**cfg.to_dict(), "depth": 3})
    with pytest.raises(ParamError):
        ActorConfig(dim=30, heads=4)


# ------------------------------------------------------------------------------------------------------ streaming
def start_stream(actor: Actor, seed: int = 0, **kw) -> ActorStream:
    cfg = actor.cfg
    stream = ActorStream(actor, seed=seed, **kw)
    gen = torch.Generator().manual_seed(42)
    stream.reset(torch.randn(cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=gen))
    return stream


def run_chunks(stream: ActorStream, n: int) -> list:
    out = []
    while len(out) < n:
        chunk = stream.step()
        if chunk is not None:
            out.append(chunk)
    return out


def test_stream_equals_the_full_sequence_model() -> None:
    actor = tiny_actor(levels=3, cache_chunks=4)
    cfg = actor.cfg
    stream = start_stream(actor, seed=3, temperature=0.7)
    stream.record = True
    gen = torch.Generator().manual_seed(5)
    states = torch.randn(5, cfg.thinker_dim, generator=gen)
    stream.add_thinker_states(states[:3], visible_from_chunk=1)
    stream.add_thinker_states(states[3:], visible_from_chunk=3)
    chunks = run_chunks(stream, 5)
    assert [c.index for c in chunks] == list(range(5))
    for c in chunks:  # every token revealed by the end
        assert (c.audio != cfg.audio_mask_id).all() and (c.text != cfg.text_mask_id).all()
    portrait = torch.randn(
        cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=torch.Generator().manual_seed(42)
    )  # what start_stream gave reset()
    pv, pa, pt = actor.portrait_chunk(portrait[None])
    th = states[None]
    th_chunk = torch.tensor([[1, 1, 1, 3, 3]])
    checked = 0
    records: list[PassRecord] = list(stream.history)
    for rec in records:
        k = rec.chunks[0]
        if k > cfg.cache_chunks or rec.chunks[-1] >= 5:
            continue  # beyond the cache's warm-up the stream is a rolling window, not one full sequence
        assert rec.cached_chunks == k and rec.sink_chunk == -1
        clean = chunks[:k]
        video = torch.cat([pv] + [c.video[None, None] for c in clean] + [rec.video[None]], 1)
        audio = torch.cat([pa] + [c.audio[None, None] for c in clean] + [rec.audio[None]], 1)
        text = torch.cat([pt] + [c.text[None, None] for c in clean] + [rec.text[None]], 1)
        sigma = torch.cat([torch.zeros(1, 1 + k), rec.sigma[None]], 1)
        index = torch.arange(-1, k + len(rec.chunks))[None]
        with torch.no_grad():
            ref = actor(video, audio, text, sigma, index, th, th_chunk, prefix=True)
        n = 1 + k
        torch.testing.assert_close(rec.output.video, ref.video[:, n:], atol=1e-4, rtol=0)
        torch.testing.assert_close(rec.output.audio, ref.audio[:, n:], atol=1e-4, rtol=0)
        torch.testing.assert_close(rec.output.text, ref.text[:, n:], atol=1e-4, rtol=0)
        checked += len(rec.chunks)
    assert (
        checked >= 12
    )  # chunks 0..4 at every one of their 3 levels (chunk 4's last pass has cache 2..3 only)
    # The emitted video is x0 of the last level's pass.
    last = next(r for r in records if r.chunks[0] == 0 and r.levels[0] == cfg.levels - 1)
    x0 = last.video[0] - last.sigma[0] * last.output.video[0, 0]
    torch.testing.assert_close(chunks[0].video, x0)


def test_stream_is_deterministic_per_seed_and_causal_in_thinker_states() -> None:
    actor = tiny_actor()
    a = run_chunks(start_stream(actor, seed=7, temperature=1.0), 6)
    b = run_chunks(start_stream(actor, seed=7, temperature=1.0), 6)
    c = run_chunks(start_stream(actor, seed=8, temperature=1.0), 6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.video, y.video) and torch.equal(x.audio, y.audio) and torch.equal(x.text, y.text)
    assert not torch.allclose(a[0].video, c[0].video)
    # States visible from chunk 4 change chunk 4 on, never earlier chunks (masked keys may move the last float bit).
    s = start_stream(actor, seed=7, temperature=1.0)
    s.add_thinker_states(torch.randn(3, actor.cfg.thinker_dim), visible_from_chunk=4)
    d = run_chunks(s, 6)
    for i in range(4):
        torch.testing.assert_close(a[i].video, d[i].video, atol=1e-5, rtol=0)
        assert torch.equal(a[i].audio, d[i].audio) and torch.equal(a[i].text, d[i].text)
    assert (a[4].video - d[4].video).abs().max() > 1e-3
    with pytest.raises(InputError):
        s.add_thinker_states(
            torch.randn(1, actor.cfg.thinker_dim), visible_from_chunk=0
        )  # chunk 0 is long done
    with pytest.raises(InputError):
        ActorStream(actor).step()  # no call started


def test_long_stream_memory_is_bounded_and_the_sink_is_frozen_and_re_rotated() -> None:
    actor = tiny_actor(levels=2, cache_chunks=3)
    stream = start_stream(actor, seed=0, max_thinker_states=16)
    sink = [(c.sink_k.clone(), c.sink_v.clone()) for c in stream.caches.layers]  # type: ignore[union-attr]
    placements: list[tuple[int, int, int]] = []
    stream.on_pass = lambda r: placements.append((r.chunks[0], r.sink_chunk, r.cached_chunks))
    sizes = []
    for i in range(210):
        if i % 10 == 0:
            stream.add_thinker_states(torch.randn(5, actor.cfg.thinker_dim), stream.next_chunk_index)
        stream.step()
        sizes.append(stream.cache_nbytes())
    warm = actor.cfg.levels + actor.cfg.cache_chunks + 1
    assert len(set(sizes[warm:])) == 1 and max(sizes) == sizes[-1]
    assert stream.thinker.shape[0] <= 16
    for layer, (k, v) in zip(stream.caches.layers, sink, strict=True):
        assert torch.equal(layer.sink_k, k) and torch.equal(layer.sink_v, v)  # frozen
        assert layer.frames == actor.cfg.cache_chunks
    # The sink sits right before the oldest attended clean chunk: a bounded distance from every query.
    for oldest, sink_chunk, cached in placements[warm:]:
        assert cached == actor.cfg.cache_chunks
        assert sink_chunk == oldest - cached - 1
    assert placements[-1][1] > 200 - 10  # it moved along with the stream


def test_reset_checks_the_portrait() -> None:
    stream = ActorStream(tiny_actor())
    with pytest.raises(InputError):
        stream.reset(torch.zeros(3, 8, 8))


def test_mouth_weight_emphasises_the_mouth_cells_only_when_asked() -> None:
    from pipelines.xstreamer.actor import mouth_weight_map

    w = mouth_weight_map(torch.tensor([[2.5, 5.5]]), 8, 20.0, 1.0)[0]  # mouth in the middle of cell (2, 5)
    assert (
        w.shape == (8, 8) and float(w[5, 2]) == pytest.approx(21.0) and float(w[0, 7]) == pytest.approx(1.0)
    )
    assert int(w.argmax()) == 5 * 8 + 2  # row y, column x

    actor = tiny_actor()
    cfg = actor.cfg
    batch = make_batch(cfg, 2, 3)
    batch.mouth = torch.tensor([2.5, 5.5]).expand(2, 3, cfg.chunk_frames, 2).clone()

    def video_loss(b: ActorBatch, weight: float) -> float:
        with torch.no_grad():
            return float(
                actor.diffusion_forcing_loss(b, torch.Generator().manual_seed(0), mouth_weight=weight)[
                    "video"
                ]
            )

    plain = video_loss(batch, 0.0)
    assert plain == pytest.approx(video_loss(ActorBatch(**{**vars(batch), "mouth": None}), 20.0))

    def bumped(y: int, x: int) -> ActorBatch:  # the same target with one latent cell changed in every frame
        video = batch.video.clone()
        video[..., y, x] += 3.0
        return ActorBatch(**{**vars(batch), "video": video})

    at_mouth = video_loss(bumped(5, 2), 20.0) - video_loss(batch, 20.0)
    far = video_loss(bumped(0, 7), 20.0) - video_loss(batch, 20.0)
    assert at_mouth > 10 * far > 0  # the mouth cell's error counts ~21x a far cell's
    plain_mouth = video_loss(bumped(5, 2), 0.0) - plain
    plain_far = video_loss(bumped(0, 7), 0.0) - plain
    assert plain_mouth == pytest.approx(plain_far, rel=0.5)  # unweighted: cells count alike


@pytest.mark.parametrize("mode", ["chunk", "independent"])
def test_token_mask_level_follows_or_leaves_the_chunk_level(mode: str) -> None:
    actor = tiny_actor(chunk_frames=8)
    cfg = actor.cfg
    batch = make_batch(cfg, 16, 8)
    seen: list[torch.Tensor] = []
    original = actor.embed

    def spy(video, audio, text):
        seen.append(audio.clone())
        return original(video, audio, text)

    actor.embed = spy  # type: ignore[method-assign]
    with torch.no_grad():
        out = actor.diffusion_forcing_loss(batch, torch.Generator().manual_seed(0), token_levels=mode)
    masked = (
        (seen[0][:, 1:] == cfg.audio_mask_id).all(-1).float().mean(-1)
    )  # (B, C) masked fraction per chunk
    corr = torch.corrcoef(torch.stack([masked.flatten(), out["levels"].flatten()]))[0, 1]
    if mode == "chunk":
        assert corr > 0.8, corr  # audio masked as much as the video is noised
    else:
        assert abs(corr) < 0.35, corr  # its own draw
        assert masked.min() < 0.2 and masked.max() > 0.8  # still the whole range
    with pytest.raises(ParamError):
        actor.diffusion_forcing_loss(batch, torch.Generator().manual_seed(0), token_levels="per-token")
