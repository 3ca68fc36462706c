"""buffers.kv_cache: the sink is written once and frozen, the rolling part evicts the oldest frames, never the sink,
and memory is bounded by the capacity."""

from __future__ import annotations

import pytest
import torch

from buffers.kv_cache import LayerCaches, SinkKVCache

T = 2  # tokens per frame


def frames(n: int, start: int) -> torch.Tensor:
    # (1, n*T, 1, 1): each token's value is its frame index, so evictions are visible
    return torch.arange(start, start + n).repeat_interleave(T).float().view(1, n * T, 1, 1)


def test_sink_frozen_and_rolling_eviction():
    c = SinkKVCache(T, sink_frames=3, capacity_frames=8)
    c.write_sink(frames(3, 0) + 100, frames(3, 0))
    sink = c.sink_k.clone()
    with pytest.raises(RuntimeError, match="frozen"):
        c.write_sink(frames(3, 0), frames(3, 0))
    for b in range(1, 6):
        c.write(frames(3, 3 * b), frames(3, 3 * b), 3 * b)
        assert c.cached_frames <= 8 and c.frames <= 5
        assert torch.equal(c.sink_k, sink), "writes never touch the sink"
    # 15 rolling frames written (3..17), 5 kept: 13..17
    assert c.first_frame == 13 and c.frames == 5
    assert c.k[0, :, 0, 0].tolist() == frames(5, 13)[0, :, 0, 0].tolist()
    ctx = c.context(2)
    assert ctx.frames == 2 and ctx.first_frame == 16
    assert ctx.k[0, :, 0, 0].tolist() == frames(2, 16)[0, :, 0, 0].tolist()
    assert c.context(0).k is None and c.context(0).first_frame == 18


def test_writes_must_be_contiguous_and_sink_sized():
    c = SinkKVCache(T, sink_frames=2, capacity_frames=4)
    with pytest.raises(ValueError, match="sink holds 2 frames"):
        c.write_sink(frames(3, 0), frames(3, 0))
    c.write(frames(1, 5), frames(1, 5), 5)
    with pytest.raises(ValueError, match="contiguous"):
        c.write(frames(1, 7), frames(1, 7), 7)
    with pytest.raises(ValueError):
        SinkKVCache(T, sink_frames=3, capacity_frames=3)


def test_memory_is_bounded_over_a_long_stream():
    caches = LayerCaches(2, T, sink_frames=1, capacity_frames=4)
    for layer in caches.layers:
        layer.write_sink(frames(1, 0), frames(1, 0))
    sizes = []
    for i in range(1, 400):
        for layer in caches.layers:
            layer.write(frames(1, i), frames(1, i), i)
        sizes.append(caches.nbytes())
    assert max(sizes[10:]) == min(sizes[10:]) == sizes[-1]
    caches.reset()
    assert caches.nbytes() == 0 and not caches[0].has_sink
