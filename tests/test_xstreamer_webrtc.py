"""X-Streamer over WebRTC with a real aiortc peer: no camera, no microphone; the user's turns go over the data
channel as the live ``say`` parameter; the character's video and audio tracks come back on one session clock."""

from __future__ import annotations

import asyncio
import json

import torch
from _peers import Client, serving, wait_until
from _xstreamer import tiny_xstreamer_folder

torch.set_num_threads(1)


def test_a_call_streams_video_and_audio_and_takes_turns(tmp_path) -> None:
    folder = tiny_xstreamer_folder(tmp_path)

    async def scenario() -> None:
        async with serving(pipeline="xstreamer", model=str(folder), fps=25) as (server, base):
            client = Client(base, send_video=False, recv_audio=True)
            await client.connect("xstreamer", params={"say": "hello there"})
            assert await client.wait_frames(10, 60) >= 10
            await wait_until(lambda: client.audio_frames >= 25, 60)
            live = server.sessions[client.session_id]
            assert live.audio_tracks and live.video_tracks and live.error is None
            assert client.received.sizes == {(128, 128)}
            client.channel.send(json.dumps({"type": "params", "params": {"say": "what is your name?"}}))
            ack = await client.wait_message("ack", 20)
            assert ack["params"]["say"] == "what is your name?"
            client.channel.send(json.dumps({"params": {"say": "x" * 400}}))
            assert "300" in (await client.wait_message("error", 20))["message"]
            before = client.audio_frames
            await wait_until(lambda: client.audio_frames >= before + 25, 60)
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 150))
