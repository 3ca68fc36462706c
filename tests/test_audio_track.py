"""The generated audio track sends what a generator returns in pieces of at most 20 ms, losing nothing."""

from __future__ import annotations

import asyncio

import torch

from streamrt.frames import AudioFrame
from transport.media import GeneratedAudioTrack


def test_a_long_chunk_goes_out_as_20_ms_pieces_with_continuous_pts():
    async def scenario() -> None:
        track = GeneratedAudioTrack()
        long = AudioFrame(
            data=torch.linspace(-0.5, 0.5, 2 * 9700).reshape(2, 9700), sample_rate=48_000, pts=4800
        )
        track.offer(long)
        track.offer(AudioFrame(data=torch.zeros(2, 100), sample_rate=48_000, pts=14_500))  # short: as it is
        pieces = [await track.queue.aget() for _ in range(len(track.queue))]
        assert [p.samples for p in pieces] == [960] * 10 + [100, 100]
        assert [p.pts for p in pieces[:11]] == [4800 + 960 * i for i in range(11)]
        assert torch.equal(torch.cat([p.data for p in pieces[:11]], 1), long.data)
        track.stop()

    asyncio.run(scenario())
