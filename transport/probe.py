"""A latency probe: an aiortc peer that sends barcode-stamped frames and reads the barcode back from what returns.

The barcode is a 16-bit frame counter drawn as black/white 16x16 blocks along the top edge; blocks that size survive
VP8/H264 compression and chroma subsampling. The sender remembers when each counter left, so a picture that comes
back unchanged (passthrough, an echo) gives its round-trip latency on one clock. Used by ``streamrt bench webrtc``
and by the transport tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from transport.ice import allow_loopback_candidates, rtc_configuration

log = logging.getLogger(__name__)

BITS = 16
BLOCK = 16  # pixels per bit


def stamp(img: np.ndarray, value: int) -> None:
    """Draw ``value`` as BITS black/white blocks across the top-left of ``img`` (H, W, 3) uint8."""
    for bit in range(BITS):
        img[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (value >> bit) & 1 else 0


def read_stamp(img: np.ndarray) -> int:
    """The value ``stamp`` drew (block centres only: edges blur under compression)."""
    value = 0
    for bit in range(BITS):
        if img[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2].mean() > 127:
            value |= 1 << bit
    return value


# Pre-encoded cycles, shared by every probe of one process: (width, height, fps) -> H264 packets.
_ENCODED: dict[tuple[int, int, float], list[bytes]] = {}
# The pre-encoded cycle: 8 s at 30 fps (a latency above that would be ambiguous), one IDR per second.
CYCLE = 240
GOP = 30


def _picture(base: np.ndarray, count: int, value: int) -> np.ndarray:
    img = base.copy()
    h, w = img.shape[:2]
    x = (count * 4) % (w - 32)
    img[h // 2 : h // 2 + 32, x : x + 32] = (255, 64, 64)
    stamp(img, value)
    return img


class BarcodeTrack(MediaStreamTrack):
    """A camera stand-in: a moving picture with a frame-counter barcode, paced at ``fps`` on a 90 kHz clock.

    With ``encoded=True`` it hands aiortc pre-encoded H264 (a cycle of ``CYCLE`` frames encoded once) instead of raw
    pictures, which aiortc packetises without encoding: several probes in one process then cost almost nothing to
    send, so a benchmark measures the server rather than its own encoders. The peer must negotiate H264.
    """

    kind = "video"

    def __init__(
        self, width: int = 320, height: int = 240, fps: float = 30.0, *, encoded: bool = False
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.sent: dict[int, float] = {}  # counter -> perf_counter when handed to the encoder
        self._count = 0
        self._start: float | None = None
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 96)], -1).astype(
            np.uint8
        )
        self._packets = self._encode_cycle() if encoded else None

    def _encode_cycle(self) -> list[bytes]:
        key = (self.width, self.height, self.fps)
        if key not in _ENCODED:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
            ctx.time_base = fractions.Fraction(1, round(self.fps))
            # Baseline without B-frames, as WebRTC receivers expect; Annex B output, which aiortc splits into NALs.
            ctx.options = {"tune": "zerolatency", "preset": "ultrafast", "profile": "baseline", "g": str(GOP)}
            packets: list[bytes] = []
            for i in range(CYCLE):
                frame = av.VideoFrame.from_ndarray(_picture(self._base, i, i), format="rgb24")
                frame.pts = i
                packets += [bytes(p) for p in ctx.encode(frame)]
            packets += [bytes(p) for p in ctx.encode(None)]
            if len(packets) != CYCLE:
                raise RuntimeError(f"expected {CYCLE} packets from the encoder, got {len(packets)}")
            _ENCODED[key] = packets
        return _ENCODED[key]

    async def recv(self) -> av.VideoFrame | av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.perf_counter()
        due = self._start + self._count / self.fps
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        out: av.VideoFrame | av.Packet
        if self._packets is not None:
            value = self._count % CYCLE
            out = av.Packet(self._packets[value])
        else:
            value = self._count % (1 << BITS)
            out = av.VideoFrame.from_ndarray(_picture(self._base, self._count, value), format="rgb24")
        out.pts = round(self._count * 90_000 / self.fps)
        out.time_base = fractions.Fraction(1, 90_000)
        self.sent[value] = time.perf_counter()
        if len(self.sent) > 4096:  # bounded: counters older than ~2 min at 30 fps cannot come back
            self.sent.pop(next(iter(self.sent)))
        self._count += 1
        return out


@dataclass
class ProbeStats:
    frames: int = 0
    arrivals: list[float] = field(default_factory=list)  # perf_counter of each received frame
    latencies: list[tuple[float, float]] = field(
        default_factory=list
    )  # (arrival, latency ms) of stamped frames

    def window(self, start: float, end: float) -> tuple[list[float], float]:
        """Latencies (ms) and received fps between two perf_counter times."""
        lat = [ms for t, ms in self.latencies if start <= t < end]
        n = sum(1 for t in self.arrivals if start <= t < end)
        return lat, n / max(end - start, 1e-9)


class ProbeClient:
    """Sends a BarcodeTrack through ``POST {base}{path}`` (the JSON offer shape) and measures what comes back."""

    def __init__(self, base: str, *, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        allow_loopback_candidates()
        self.base = base
        self.pc = RTCPeerConnection(rtc_configuration())
        self.source = BarcodeTrack(width, height, fps, encoded=True)
        self.stats = ProbeStats()
        self.session_id: str | None = None
        self.receiving = asyncio.Event()  # set once a few frames came back (the stream is up and warm)
        self._task: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._task = asyncio.ensure_future(self._consume(track))

    async def connect(self, path: str = "/api/offer", **body: Any) -> None:
        transceiver = self.pc.addTransceiver(self.source, direction="sendrecv")
        # The source is pre-encoded H264 (constrained baseline, packetization-mode 1): offer nothing else.
        h264 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType == "video/H264"
            and c.parameters.get("packetization-mode") == "1"
            and str(c.parameters.get("profile-level-id", "")).startswith("42")
        ]
        transceiver.setCodecPreferences(h264)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        payload = {"sdp": self.pc.localDescription.sdp, "type": "offer", **body}
        async with aiohttp.ClientSession() as http, http.post(self.base + path, json=payload) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"offer refused: {resp.status} {data}")
        self.session_id = data.get("session_id")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                assert isinstance(frame, av.VideoFrame)
                self.stats.frames += 1
                self.stats.arrivals.append(now)
                if self.stats.frames >= 3:
                    self.receiving.set()
                # Decoders give yuv420p: the luma rows of the strip are enough (white/black blocks), and skipping
                # a full-frame RGB conversion keeps the probe from loading the machine it measures.
                if frame.format.name == "yuv420p":
                    strip = frame.to_ndarray()[:BLOCK]
                else:
                    strip = frame.to_ndarray(format="rgb24")[:BLOCK]
                sent = self.source.sent.get(read_stamp(strip))
                if sent is not None:
                    self.stats.latencies.append((now, (now - sent) * 1000.0))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
