"""Real aiortc peers against the server through ``POST /api/offer``, on loopback.

Each test runs its own server and clients in one event loop (``asyncio.run``); the generators run on the sessions'
worker threads. ``transport.ice.allow_loopback_candidates`` (turned on by the server when it listens on 127.0.0.1
and by the test client) is what lets these pass where ``lo`` is the only interface; check with
``unshare -rn sh -c 'ip link set lo up; pytest tests/test_webrtc.py'``. Timeouts are generous because a loaded
2-core machine runs encoders, decoders and the generator at once; every wait is on an event or a state check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _peers import Client, percentile, serving, wait_until
from tiny_sd import make_tiny_sd

from streamrt import registry

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_passthrough_echo_frames_arrive_with_measured_latency() -> None:
    async def scenario() -> None:
        async with serving() as (server, base):
            client = Client(base)
            await client.connect("passthrough")
            assert await client.wait_frames(60, 30) >= 60
            lat = client.received.latencies_ms
            p50 = percentile(lat, 50)
            log.warning(
                "passthrough echo: %d frames, p50 %.1f ms, p90 %.1f ms", len(lat), p50, percentile(lat, 90)
            )
            assert len(lat) >= 30, "barcodes must survive the round trip"
            assert 0 < p50 < 1000
            assert client.codec == "H264", "H264 is preferred when both sides offer it"
            assert client.received.sizes == {(320, 240)}
            live = server.sessions[client.session_id]
            assert live.session.metrics.snapshot().frames_out >= 60
            await client.close()
            await wait_until(lambda: not server.sessions, 10)

    run(scenario())


def test_vp8_is_negotiated_when_the_client_offers_only_vp8() -> None:
    async def scenario() -> None:
        async with serving() as (_, base):
            client = Client(base, video_codecs=("video/VP8",))
            await client.connect("passthrough")
            assert client.codec == "VP8"
            assert await client.wait_frames(10, 30) >= 10
            await client.close()

    run(scenario())


def test_streamdiffusion_generates_frames_and_takes_live_params(tmp_path: Path) -> None:
    model = make_tiny_sd(tmp_path / "tiny-sd")

    async def scenario() -> None:
        async with serving(pipeline="streamdiffusion", model=str(model)) as (server, base):
            client = Client(base, fps=15)
            t0 = time.perf_counter()
            await client.connect(params={"prompt": "a red square", "seed": 3})
            assert await client.wait_frames(8, 60) >= 8
            first = client.received.first_at - t0
            live = server.sessions[client.session_id]
            snap = live.session.metrics.snapshot()
            log.warning(
                "streamdiffusion: first frame after %.2f s, server latency p50 %.1f ms, out fps %.1f",
                first, snap.latency_p50_ms, snap.output_fps,
            )  # fmt: skip
            assert snap.latency_p50_ms > 0
            # The generated picture is not the input: no barcode survives generation.
            assert client.received.sizes and all(w % 8 == 0 and h % 8 == 0 for w, h in client.received.sizes)
            # Live parameters over the data channel: valid ones are acknowledged, invalid ones answered with an error.
            client.channel.send(
                json.dumps({"type": "params", "params": {"prompt": "a blue circle", "strength": 0.5}})
            )
            ack = await client.wait_message("ack", 20)
            assert ack["params"]["prompt"] == "a blue circle"
            client.channel.send(json.dumps({"params": {"strength": 7}}))
            err = await client.wait_message("error", 20)
            assert "strength" in err["message"]
            client.channel.send(json.dumps({"params": {"width": 64}}))
            assert "cannot change" in (await client.wait_message("error", 20))["message"]
            stats = await client.wait_message("stats", 20)
            assert stats["frames_out"] >= 1
            before = client.received.frames
            assert await client.wait_frames(before + 3, 60) >= before + 3, "frames keep coming after updates"
            await client.close()

    run(scenario())


def test_generator_without_camera_runs_on_the_session_clock() -> None:
    async def scenario() -> None:
        async with serving(fps=15) as (server, base):
            client = Client(base, send_video=False)
            await client.connect("passthrough")
            assert await client.wait_frames(10, 30) >= 10
            assert client.received.sizes == {(256, 256)}  # passthrough's black frame without input
            await client.close()

    run(scenario())


def test_two_sessions_at_once_are_independent() -> None:
    async def scenario() -> None:
        async with serving(max_sessions=2) as (server, base):
            a, b = Client(base), Client(base)
            await asyncio.gather(a.connect("passthrough"), b.connect("passthrough"))
            assert a.session_id != b.session_id and len(server.sessions) == 2
            counts = await asyncio.gather(a.wait_frames(30, 40), b.wait_frames(30, 40))
            assert min(counts) >= 30
            await a.close()
            await wait_until(lambda: len(server.sessions) == 1, 10)
            before = b.received.frames
            assert await b.wait_frames(before + 15, 30) >= before + 15, (
                "closing one session leaves the other running"
            )
            await b.close()

    run(scenario())


def test_generator_error_ends_only_its_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered the way a plug-in would be found, for this test only.
    monkeypatch.setitem(registry._BUILTIN, "failing", "_peers:FailingGenerator")

    async def scenario() -> None:
        async with serving(max_sessions=2) as (server, base):
            good, bad = Client(base), Client(base)
            await good.connect("passthrough")
            await bad.connect("failing")
            err = await bad.wait_message("error", 30)
            assert "synthetic generator failure" in err["message"]
            await wait_until(lambda: bad.session_id not in server.sessions, 10)
            assert good.session_id in server.sessions
            before = good.received.frames
            assert await good.wait_frames(before + 15, 30) >= before + 15
            assert 'streamrt_errors_total{pipeline="failing"} 1' in server.prometheus()
            await good.close()
            await bad.close()

    run(scenario())


def test_a_vanished_client_is_freed_within_5_seconds() -> None:
    async def scenario() -> None:
        async with serving() as (server, base):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "tests" / "_peers.py"), base,
                stdout=subprocess.PIPE, env=env,
            )  # fmt: skip
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 90)
                info = json.loads(line)
                assert info["session_id"] in server.sessions and info["frames"] >= 5
            finally:
                proc.kill()  # SIGKILL: no BYE, no DTLS close_notify, no ICE goodbye
                await proc.wait()
            killed = time.monotonic()
            await wait_until(lambda: not server.sessions, 15)
            freed = time.monotonic() - killed
            log.warning("vanished client freed after %.2f s", freed)
            assert freed < 5.0

    run(scenario())


def test_audio_goes_through_passthrough_and_back() -> None:
    async def scenario() -> None:
        async with serving() as (server, base):
            client = Client(base, send_audio=True)
            await client.connect("passthrough")
            assert await client.wait_frames(10, 30) >= 10
            await wait_until(lambda: client.audio_frames >= 50 and client.audio_peak > 0.1, 30)
            live = server.sessions[client.session_id]
            assert live.audio_tracks, "the answer sends audio back when the generator produces audio"
            await client.close()

    run(scenario())


def test_a_slow_generator_sees_only_the_newest_frame_and_latency_stays_flat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry._BUILTIN, "slow", "_peers:SlowGenerator")

    async def scenario() -> None:
        async with serving() as (server, base):
            client = Client(base)
            await client.connect("slow")
            assert await client.wait_frames(5, 30) >= 5
            start = time.perf_counter()
            # Twelve seconds at 30 fps in, ~6 fps out: processing every frame in order would add ~0.8 s per second.
            await client.wait_frames(client.received.frames + 60, 25)
            lat = client.received.latencies_ms
            early, late = lat[: len(lat) // 3], lat[-len(lat) // 3 :]
            p50_early, p50_late = percentile(early, 50), percentile(late, 50)
            log.warning(
                "slow generator: %d frames in %.1f s, p50 first third %.0f ms, last third %.0f ms",
                len(lat), time.perf_counter() - start, p50_early, p50_late,
            )  # fmt: skip
            assert p50_late < p50_early + 150, "latency must not grow with a slow generator"
            live = server.sessions[client.session_id]
            drops = live.session.input.stats().drops
            assert drops > 30, "newest-only input drops the frames the generator cannot take"
            metric = next(
                line for line in server.prometheus().splitlines()
                if line.startswith('streamrt_queue_drops{pipeline="slow",queue="in"}')
            )  # fmt: skip
            assert float(metric.split()[-1]) > 30
            await client.close()

    run(scenario())


@pytest.mark.parametrize("pipeline", ["ap-bwe", "binauralflow"])
def test_an_audio_generator_streams_over_an_audio_track(pipeline: str) -> None:
    # A real aiortc peer sends a microphone-like tone (48 kHz Opus) and no camera; the server resamples it to the
    # generator's rate, runs the embedded default model, and sends the generated audio back.
    async def scenario() -> None:
        async with serving(pipeline=pipeline) as (server, base):
            client = Client(base, send_video=False, send_audio=True)
            await client.connect(pipeline)
            await wait_until(lambda: client.audio_frames >= 50 and client.audio_peak > 0.01, 60)
            live = server.sessions[client.session_id]
            assert live.audio_tracks and live.error is None
            await client.close()

    run(scenario())
