"""The HTTP contract of the server: every status code of the JSON API, the page, health and metrics.

A real aiortc peer opens the sessions that PATCH/DELETE/503 need; the rest are plain HTTP requests.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from _peers import Client, serving, wait_until

TOKEN = "s3cret"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _offer_sdp() -> str:
    """A real browser-like offer (sendrecv video + data channel), made by an aiortc peer that is then dropped."""
    from aiortc import RTCPeerConnection

    from transport.ice import rtc_configuration

    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("video", direction="sendrecv")
    pc.createDataChannel("params")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


# Parses as SDP but carries no ICE credentials or DTLS fingerprint: aiortc refuses it at negotiation.
UNUSABLE_SDP = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtpmap:96 VP8/90000\r\na=sendrecv\r\n"
)


def test_page_health_metrics_and_pipelines() -> None:
    async def scenario() -> None:
        async with serving(token=TOKEN) as (_, base), aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as r:
                assert r.status == 200 and r.content_type == "text/html"
                assert "<video" in await r.text()
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200 and r.content_type == "text/plain"
                text = await r.text()
                for family in ("streamrt_sessions", "streamrt_latency_ms", "streamrt_queue_depth",
                               "streamrt_dropped_frames_total", "streamrt_ssf_skips_total"):  # fmt: skip
                    assert f"# TYPE {family} " in text
            async with http.get(f"{base}/api/pipelines") as r:
                assert r.status == 401
            async with http.get(f"{base}/api/pipelines", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
                data = await r.json()
            by_name = {p["name"]: p for p in data["pipelines"]}
            assert {"passthrough", "streamdiffusion"} <= set(by_name)
            sd = by_name["streamdiffusion"]
            assert sd["inputs"] == ["video"] and sd["outputs"] == ["video"]
            prompt = sd["params"]["properties"]["prompt"]
            assert prompt["type"] == "string" and prompt["x-live"] is True
            assert sd["params"]["properties"]["strength"]["maximum"] == 1.0

    run(scenario())


def test_offer_errors() -> None:
    async def scenario() -> None:
        sdp = await _offer_sdp()
        async with (
            serving(token=TOKEN, max_body=64 * 1024) as (server, base),
            aiohttp.ClientSession() as http,
        ):
            auth = {"Authorization": f"Bearer {TOKEN}"}

            async def post(
                body: object, headers: dict[str, str] | None = None, raw: bytes | None = None
            ) -> tuple[int, dict]:
                data = raw if raw is not None else json.dumps(body).encode()
                h = {"Content-Type": "application/json", **(auth if headers is None else headers)}
                async with http.post(f"{base}/api/offer", data=data, headers=h) as r:
                    payload = await r.json() if r.content_type == "application/json" else {}
                    return r.status, payload

            ok_body = {"sdp": sdp, "type": "offer", "pipeline": "passthrough"}
            assert (await post(ok_body, headers={}))[0] == 401
            assert (await post(ok_body, headers={"Authorization": "Bearer wrong"}))[0] == 401
            assert (await post(ok_body, headers={"Authorization": TOKEN}))[0] == 401  # scheme required
            assert (await post(None, raw=b"{not json"))[0] == 400
            assert (await post([1, 2]))[0] == 400
            assert (await post({"type": "offer"}))[0] == 400
            assert (await post({**ok_body, "type": "answer"}))[0] == 400
            status, payload = await post({**ok_body, "sdp": "hello, I am not SDP"})
            assert status == 400 and "SDP" in payload["error"]
            assert (await post({**ok_body, "sdp": UNUSABLE_SDP}))[0] == 400
            status, payload = await post({**ok_body, "pipeline": "nope"})
            assert status == 404 and "passthrough" in payload["error"]
            status, payload = await post({**ok_body, "params": {"no_such_param": 1}})
            assert status == 400 and "no_such_param" in payload["error"]
            assert (await post({**ok_body, "params": "prompt=x"}))[0] == 400
            big = {**ok_body, "padding": "x" * (70 * 1024)}
            async with http.post(f"{base}/api/offer", data=json.dumps(big), headers=auth) as r:
                assert r.status == 413
            assert not server.sessions, "no failed request may leave a session behind"

    run(scenario())


def test_capacity_patch_and_delete() -> None:
    async def scenario() -> None:
        async with serving(max_sessions=1) as (server, base), aiohttp.ClientSession() as http:
            client = Client(base)
            await client.connect("passthrough")
            sid = client.session_id
            sdp = await _offer_sdp()
            async with http.post(f"{base}/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
                assert r.status == 503 and r.headers["Retry-After"]
            url = f"{base}/api/sessions/{sid}"
            async with http.patch(url, json={"params": {}}) as r:
                assert r.status == 200  # passthrough has no parameters: an empty update is valid
            async with http.patch(url, json={"params": {"prompt": "x"}}) as r:
                assert r.status == 400
            async with http.patch(url, data=b"[", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400
            async with http.patch(f"{base}/api/sessions/nope", json={}) as r:
                assert r.status == 404
            async with http.get(url) as r:
                assert r.status == 200 and (await r.json())["pipeline"] == "passthrough"
            async with http.delete(url) as r:
                assert r.status == 200
            assert sid not in server.sessions
            async with http.delete(url) as r:
                assert r.status == 404
            await client.close()
            # The freed slot is usable again.
            again = Client(base)
            await again.connect("passthrough")
            assert await again.wait_frames(5, 30) >= 5
            await again.close()
            await wait_until(lambda: not server.sessions, 10)

    run(scenario())


def test_patch_updates_a_streamdiffusion_session(tmp_path) -> None:
    from tiny_sd import make_tiny_sd

    model = make_tiny_sd(tmp_path / "tiny-sd")

    async def scenario() -> None:
        async with (
            serving(pipeline="streamdiffusion", model=str(model)) as (server, base),
            aiohttp.ClientSession() as http,
        ):
            client = Client(base, fps=10)
            await client.connect(params={"seed": 1})
            url = f"{base}/api/sessions/{client.session_id}"
            async with http.patch(
                url, json={"params": {"prompt": "a green square", "guidance_scale": 1.5}}
            ) as r:
                assert r.status == 200
                assert (await r.json())["params"]["guidance_scale"] == 1.5
            async with http.patch(url, json={"params": {"height": 64}}) as r:
                assert r.status == 400 and "cannot change" in (await r.json())["error"]
            assert await client.wait_frames(3, 60) >= 3
            live = server.sessions[client.session_id]
            await wait_until(lambda: live.session.generator.params.get("prompt") == "a green square", 30)
            await client.close()

    run(scenario())


def test_streamrt_serve_command_starts_and_stops_on_sigterm() -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a free port; the tiny race with another process taking it is acceptable here
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = subprocess.run(
        [sys.executable, "-m", "streamrt", "serve", "--pipeline", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("streamrt: error: unknown pipeline 'nope'")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrt", "serve", "--port", str(port), "--pipeline", "passthrough"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:

        async def healthy() -> dict:
            deadline = time.monotonic() + 90
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                            return await r.json()
                    except aiohttp.ClientConnectionError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)

        assert asyncio.run(healthy())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_concurrent_offers_never_exceed_the_session_cap() -> None:
    async def scenario() -> None:
        sdps = [await _offer_sdp() for _ in range(3)]
        async with serving(max_sessions=1) as (server, base), aiohttp.ClientSession() as http:

            async def offer(sdp: str) -> tuple[int, dict]:
                async with http.post(f"{base}/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
                    return r.status, await r.json()

            results = await asyncio.gather(*(offer(s) for s in sdps))
            assert sorted(status for status, _ in results) == [200, 503, 503]
            assert len(server.sessions) == 1
            sid = next(body["session_id"] for status, body in results if status == 200)
            async with http.delete(f"{base}/api/sessions/{sid}") as r:
                assert r.status == 200

    run(scenario())


def test_client_paths_only_inside_media_roots(tmp_path) -> None:
    """Path parameters (a trajectory file here) name files on the server: refused unless the operator allowed a
    directory, and then only inside it (``..`` and symlinks resolved first)."""
    from streamrt.errors import ParamError
    from streamrt.params import Param, ParamSet
    from transport.server import check_client_paths

    root = tmp_path / "media"
    root.mkdir()
    bad = root / "bad.csv"
    bad.write_text("not,a,trajectory\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("x\n")
    (root / "link.csv").symlink_to(outside)
    spec = ParamSet((Param("trajectory", str, None, optional=True, path=True), Param("prompt", str, "")))
    check_client_paths(
        spec, {"trajectory": str(bad), "prompt": "/etc/passwd"}, (str(root),)
    )  # plain str: free
    for value in (str(outside), str(root / ".." / "secret.csv"), str(root / "link.csv")):
        try:
            check_client_paths(spec, {"trajectory": value}, (str(root),))
        except ParamError as exc:
            assert "media roots" in str(exc)
        else:
            raise AssertionError(f"{value} was accepted")

    async def scenario() -> None:
        sdp = await _offer_sdp()
        body = {"sdp": sdp, "type": "offer", "pipeline": "binauralflow"}
        async with serving() as (server, base), aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/offer", json={**body, "params": {"trajectory": str(bad)}}) as r:
                assert r.status == 403 and "--media-root" in (await r.json())["error"]
            assert not server.sessions
        async with serving(media_roots=(str(root),)) as (server, base), aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/offer", json={**body, "params": {"trajectory": str(outside)}}
            ) as r:
                assert r.status == 403
            # inside the root the path is accepted and the file itself is judged: this one is no trajectory
            async with http.post(f"{base}/api/offer", json={**body, "params": {"trajectory": str(bad)}}) as r:
                assert r.status == 400, await r.text()
            assert not server.sessions

    run(scenario())
