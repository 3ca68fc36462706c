"""WHIP ingest and WHEP egress: the RFC 9725 status codes, then FFmpeg's WHIP muxer pushing while an aiortc WHEP
viewer watches the generated output."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import aiohttp
from _peers import BarcodeTrack, WhepViewer, percentile, serving, wait_until
from aiortc import RTCPeerConnection, RTCSessionDescription

from transport.ice import allow_loopback_candidates, rtc_configuration

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "whip-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SDP = {"Content-Type": "application/sdp"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 150))


async def _offer(
    kind: str, direction: str, track: BarcodeTrack | None = None
) -> tuple[RTCPeerConnection, str]:
    allow_loopback_candidates()
    pc = RTCPeerConnection(rtc_configuration())
    if kind == "application":
        pc.createDataChannel("x")
    else:
        pc.addTransceiver(track or kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def test_whip_and_whep_status_codes() -> None:
    async def scenario() -> None:
        async with serving(token=TOKEN, max_sessions=1) as (server, base), aiohttp.ClientSession() as http:
            whip = f"{base}/whip/cam?pipeline=passthrough"
            async with http.options(f"{base}/whip/cam") as r:  # CORS pre-flight: no token needed
                assert r.status == 204 and r.headers["Accept-Post"] == "application/sdp"
                assert "POST" in r.headers["Access-Control-Allow-Methods"]
            async with http.get(whip, headers=AUTH) as r:
                assert r.status == 405 and "POST" in r.headers["Allow"]
            async with http.put(whip, headers=AUTH) as r:
                assert r.status == 405
            pc, offer = await _offer("video", "sendonly", BarcodeTrack())
            async with http.post(whip, data=offer, headers=SDP) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.post(whip, data=offer, headers={**AUTH, "Content-Type": "text/plain"}) as r:
                assert r.status == 415
            async with http.post(whip, data="v=0 nonsense", headers={**AUTH, **SDP}) as r:
                assert r.status == 400
            async with http.post(f"{base}/whip/cam?pipeline=nope", data=offer, headers={**AUTH, **SDP}) as r:
                assert r.status == 404
            async with http.post(whip, data="x" * (70 * 1024), headers={**AUTH, **SDP}) as r:
                assert r.status == 413
            dc_pc, dc_offer = await _offer("application", "")
            async with http.post(whip, data=dc_offer, headers={**AUTH, **SDP}) as r:
                assert r.status == 406  # nothing passthrough could ingest
            await dc_pc.close()
            async with http.post(f"{base}/whep/cam", data=offer, headers={**AUTH, **SDP}) as r:
                assert r.status == 404  # no such stream yet

            async with http.post(whip, data=offer, headers={**AUTH, **SDP}) as r:
                assert r.status == 201 and r.content_type == "application/sdp"
                location = r.headers["Location"]
                assert location.startswith("/whip/cam/")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=await r.text(), type="answer"))
            assert "cam" in server.streams
            pc2, offer2 = await _offer("video", "sendonly", BarcodeTrack())
            async with http.post(whip, data=offer2, headers={**AUTH, **SDP}) as r:
                assert r.status == 409  # the stream is taken
            async with http.post(
                f"{base}/whip/other?pipeline=passthrough", data=offer2, headers={**AUTH, **SDP}
            ) as r:
                assert r.status == 503 and "Retry-After" in r.headers
            await pc2.close()
            async with http.options(base + location) as r:
                assert r.status == 204
            # A WHEP viewer comes and goes; its tracks leave the stream's fan-out with it.
            viewer_pc, viewer_offer = await _offer("video", "recvonly")
            async with http.post(
                f"{base}/whep/cam", data=viewer_offer, headers={**AUTH, "Content-Type": "text/plain"}
            ) as r:
                assert r.status == 415
            async with http.post(f"{base}/whep/cam", data=viewer_offer, headers={**AUTH, **SDP}) as r:
                assert r.status == 201
                viewer_location = r.headers["Location"]
                assert viewer_location.startswith("/whep/cam/")
            live = server.streams["cam"]
            assert len(live.viewers) == 1 and len(live.video_tracks) == 1
            async with http.patch(base + viewer_location, headers=AUTH) as r:
                assert r.status == 501
            async with http.delete(base + viewer_location, headers=AUTH) as r:
                assert r.status == 200
            assert not live.viewers and not live.video_tracks
            async with http.delete(base + viewer_location, headers=AUTH) as r:
                assert r.status == 404
            await viewer_pc.close()
            async with http.patch(
                base + location,
                data="a=end-of-candidates",
                headers={**AUTH, "Content-Type": "application/trickle-ice-sdpfrag"},
            ) as r:
                assert r.status == 501
            async with http.get(base + location, headers=AUTH) as r:
                assert r.status == 405
            async with http.delete(base + location) as r:
                assert r.status == 401
            async with http.delete(base + location, headers=AUTH) as r:
                assert r.status == 200
            assert not server.streams and not server.sessions
            async with http.delete(base + location, headers=AUTH) as r:
                assert r.status == 404
            await pc.close()

    run(scenario())


def test_ffmpeg_whip_push_with_aiortc_whep_viewer() -> None:
    async def scenario() -> None:
        async with serving(token=TOKEN) as (server, base):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
            pusher = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "tests" / "_whip_push.py"), f"{base}/whip/cam?pipeline=passthrough",
                "12", TOKEN, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                await wait_until(lambda: "cam" in server.streams or pusher.returncode is not None, 60)
                assert "cam" in server.streams, "FFmpeg's WHIP muxer did not create the stream"
                live = server.streams["cam"]
                await wait_until(lambda: live.session.metrics.frames_in >= 10, 30)
                viewer = WhepViewer(f"{base}/whep/cam", token=TOKEN)
                resp = await viewer.start()
                assert resp.status == 201 and viewer.location.startswith("/whep/cam/")
                assert await viewer.wait_frames(60, 40) >= 60
                lat = viewer.latencies_ms[10:]  # after the first keyframe settles
                log.warning(
                    "WHIP (FFmpeg) -> passthrough -> WHEP (aiortc): %d frames, p50 %.1f ms, p90 %.1f ms",
                    viewer.frames, percentile(lat, 50), percentile(lat, 90),
                )  # fmt: skip
                assert 0 < percentile(lat, 50) < 2000
                out, err = await asyncio.wait_for(pusher.communicate(), 60)
                assert pusher.returncode == 0, err.decode(errors="replace")[-2000:]
                assert b"pushed" in out
                # Closing the muxer sent DELETE: the stream, its session and the viewer's resource are gone.
                await wait_until(lambda: not server.sessions and not server.streams, 10)
                async with (
                    aiohttp.ClientSession() as http,
                    http.delete(base + viewer.location, headers=AUTH) as r,
                ):
                    assert r.status == 404
                await viewer.close()
            finally:
                if pusher.returncode is None:
                    pusher.kill()
                    await pusher.wait()

    run(scenario())
