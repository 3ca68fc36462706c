"""Real WebRTC peers for the transport tests: an aiortc client that talks to a running streamrt server.

The client sends barcode-stamped frames (a 16-bit frame counter drawn as black/white blocks, which survive
VP8/H264 compression) and reads the barcode back from what it receives, so passthrough latency is measured end to
end on one clock. Run as a script (``python tests/_peers.py URL``) it is a client in another process that the
vanished-client test kills with SIGKILL: a real disappearance, with no BYE, no DTLS close and no ICE goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streamrt.frames import DataFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind
from transport.ice import allow_loopback_candidates, rtc_configuration
from transport.probe import BITS, BarcodeTrack, read_stamp, stamp  # noqa: F401 - re-exported for the tests


class ToneTrack(MediaStreamTrack):
    """A microphone stand-in: a 440 Hz tone in 20 ms mono s16 frames at 48 kHz."""

    kind = "audio"

    def __init__(self, rate: int = 48_000) -> None:
        super().__init__()
        self.rate = rate
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.perf_counter()
        n = self.rate // 50
        await asyncio.sleep(max(0.0, self._start + self._samples / self.rate - time.perf_counter()))
        t = (np.arange(n) + self._samples) / self.rate
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = (
            self.rate,
            self._samples,
            fractions.Fraction(1, self.rate),
        )
        self._samples += n
        return frame


@dataclass
class Received:
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_at: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)
    last: np.ndarray | None = None
    got: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = 1


class Client:
    """One aiortc peer talking to the server's JSON offer endpoint."""

    def __init__(
        self,
        base: str,
        *,
        token: str | None = None,
        send_video: bool = True,
        fps: float = 30.0,
        video_codecs: tuple[str, ...] = (),
        send_audio: bool = False,
        recv_audio: bool = False,
    ) -> None:
        allow_loopback_candidates()  # this process may have no interface but lo (see transport.ice)
        self.base = base
        self.token = token
        self.video_codecs = video_codecs  # e.g. ("video/VP8",) to offer only VP8
        self.pc = RTCPeerConnection(rtc_configuration())
        self.source = BarcodeTrack(fps=fps) if send_video else None
        self.received = Received()
        self.tone = ToneTrack() if send_audio else None
        self.recv_audio = recv_audio  # no microphone, but take the generator's audio track
        self.audio_frames = 0
        self.audio_peak = 0.0
        self.session_id: str | None = None
        self.codec: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.message_event = asyncio.Event()
        self.channel = self.pc.createDataChannel("params")
        self._tasks: list[asyncio.Task[None]] = []

        @self.channel.on("message")
        def _on_message(message: str) -> None:
            self.messages.append(json.loads(message))
            self.message_event.set()

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._consume(track)))
            else:
                self._tasks.append(asyncio.ensure_future(self._consume_audio(track)))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(
        self, pipeline: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if self.source is not None:
            transceiver = self.pc.addTransceiver(self.source, direction="sendrecv")
        else:
            transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if self.tone is not None:
            self.pc.addTransceiver(self.tone, direction="sendrecv")
        elif self.recv_audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        if self.video_codecs:
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType in self.video_codecs])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {
            "sdp": self.pc.localDescription.sdp,
            "type": "offer",
            "pipeline": pipeline,
            "params": params or {},
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base}/api/offer", json=body, headers=self.headers()) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"offer failed: {resp.status} {data}")
        self.session_id = data["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        for line in data["sdp"].splitlines():
            if line.startswith("a=rtpmap:") and self.codec is None:
                self.codec = line.split(" ", 1)[1].split("/")[0]
        return data

    async def _consume(self, track: MediaStreamTrack) -> None:
        rec = self.received
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                assert isinstance(frame, av.VideoFrame)
                img = frame.to_ndarray(format="rgb24")
                rec.frames += 1
                rec.sizes.add((frame.width, frame.height))
                rec.last = img
                if rec.first_at is None:
                    rec.first_at = now
                if self.source is not None:
                    sent = self.source.sent.get(read_stamp(img))
                    if sent is not None:
                        rec.latencies_ms.append((now - sent) * 1000)
                if rec.frames >= rec.target:
                    rec.got.set()

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self.audio_frames += 1
                self.audio_peak = max(self.audio_peak, float(np.abs(frame.to_ndarray()).max()) / 32768)

    async def wait_frames(self, count: int, within: float) -> int:
        self.received.target = count
        if self.received.frames < count:
            self.received.got.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.received.got.wait(), within)
        return self.received.frames

    async def wait_message(self, kind: str, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for m in self.messages:
                if m.get("type") == kind:
                    self.messages.remove(m)
                    return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind!r} message within {within} s; got {self.messages}")
            self.message_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.message_event.wait(), remaining)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def _main(base: str) -> None:
    # Subprocess mode: connect, report the session id, then wait to be killed.
    client = Client(base)
    await client.connect("passthrough")
    await client.wait_frames(5, 60)
    print(json.dumps({"session_id": client.session_id, "frames": client.received.frames}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))


class FailingGenerator(Generator):
    """Passes a few frames through, then raises: the server must end only this session."""

    spec = GeneratorSpec(
        name="failing",
        description="Test generator that fails after a few frames.",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
        input_optional=True,
    )

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def process(self, frame: DataFrame) -> list[DataFrame]:
        self.count += 1
        if self.count > 10:
            raise RuntimeError("synthetic generator failure")
        return [frame]


@contextlib.asynccontextmanager
async def serving(**config: Any) -> Any:
    """A streamrt server on a free loopback port, in the running loop; yields (server, base_url)."""
    from transport.server import ServerConfig, start_server

    config.setdefault("port", 0)
    config.setdefault("pipeline", "passthrough")
    server, runner, port = await start_server(ServerConfig(**config))
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_until(predicate: Any, within: float, interval: float = 0.05) -> float:
    """Poll ``predicate`` (a state check, not a sleep-as-synchronisation) until true; returns the seconds taken."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


class WhepViewer:
    """An aiortc WHEP player: POSTs a recvonly offer, reads the barcode clock stamped by ``_whip_push``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        allow_loopback_candidates()
        self.url = url
        self.token = token
        self.pc = RTCPeerConnection(rtc_configuration())
        self.location: str | None = None
        self.frames = 0
        self.latencies_ms: list[float] = []
        self.got = asyncio.Event()
        self.target = 1
        self._task: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self._task = asyncio.ensure_future(self._consume(track))

    async def start(self) -> aiohttp.ClientResponse:
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, data=self.pc.localDescription.sdp, headers=headers) as resp:
                answer = await resp.text()
                if resp.status == 201:
                    self.location = resp.headers["Location"]
                    await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                return resp

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                now_ms = int(time.time() * 1000) % (1 << BITS)
                sent_ms = read_stamp(frame.to_ndarray(format="rgb24"))
                self.latencies_ms.append(float((now_ms - sent_ms) % (1 << BITS)))
                self.frames += 1
                if self.frames >= self.target:
                    self.got.set()

    async def wait_frames(self, count: int, within: float) -> int:
        self.target = count
        if self.frames < count:
            self.got.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.got.wait(), within)
        return self.frames

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()


class SlowGenerator(Generator):
    """Passthrough that takes 150 ms per frame: slower than a 30 fps camera, as a real model on a CPU."""

    spec = GeneratorSpec(
        name="slow",
        description="Test generator slower than the camera.",
        inputs=(MediaKind.VIDEO,),
        outputs=(MediaKind.VIDEO,),
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        time.sleep(0.15)  # stands for model work; it runs on the session's worker thread, not the event loop
        return [frame]
