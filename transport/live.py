"""Live sessions: one generator session between WebRTC peers.

::

    remote track --(event loop: decode, convert)--> newest-only input queue --> worker thread (generator)
        --> output queue --(router)--> one newest-only queue per viewer track --> aiortc encoder --> peer

The event loop only converts and moves frames; the generator runs on the session's worker thread. A ``LiveSession``
has one ingest peer (the browser of ``/api/offer``, or a WHIP client) and any number of WHEP viewers, each a
``Peer``. Every peer has a liveness watchdog: a peer that stops sending packets (receiver reports arrive at least
every ~1.5 s from aiortc and browsers, and the server keeps its own stream alive with ``KEEPALIVE_S``) is treated as
gone after ``idle_timeout`` seconds, well inside the 5 s budget, without waiting for ICE consent expiry (30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.reformatter import VideoReformatter

from buffers.queues import FrameQueue, QueueClosed, QueuePolicy
from streamrt.errors import StreamrtError
from streamrt.frames import AudioFrame, EndOfStream, ErrorEvent, Tick, VideoFrame
from streamrt.generator import Generator, MediaKind
from streamrt.session import CAPTURE_TIME, Session
from transport.ice import rtc_configuration
from transport.media import (
    VIDEO_TIME_BASE,
    AudioInput,
    GeneratedAudioTrack,
    GeneratedVideoTrack,
    SessionClock,
    video_from_av,
)

log = logging.getLogger(__name__)

# Video codecs offered in this order of preference: H264 first (lower capture-to-display latency in Chromium in the
# measurements of the reference page, and hardware decoders everywhere), VP8 as the universal fallback.
VIDEO_CODEC_ORDER = ("video/H264", "video/VP8")
# Audio chunks queued ahead of a slow audio generator before new ones are dropped (20 ms each: 1 s).
MAX_AUDIO_BACKLOG = 50


def _live_droppable(item: object) -> bool:
    # Only pictures and ticks may be replaced by newer ones; audio must stay continuous and control frames in order.
    return isinstance(item, VideoFrame | Tick)


def preferred_video_codecs() -> list[Any]:
    caps = RTCRtpSender.getCapabilities("video").codecs
    ordered = []
    for mime in VIDEO_CODEC_ORDER:
        ordered += [c for c in caps if c.mimeType == mime]
    # RTX entries follow their base codecs (aiortc pairs them by payload type).
    ordered += [c for c in caps if c.mimeType == "video/rtx"]
    return ordered


class Peer:
    """One RTCPeerConnection with a liveness watchdog; ``on_gone`` is called once when it ends for any reason."""

    def __init__(
        self,
        role: str,
        *,
        ice_servers: tuple[str, ...] = (),
        idle_timeout: float = 3.0,
        connect_timeout: float = 20.0,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.role = role
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.on_gone: Callable[[Peer, str], Coroutine[Any, Any, None]] | None = None
        self.connected = asyncio.Event()
        self.created = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._teardown: asyncio.Task[None] | None = None
        self._gone = False

        @self.pc.on("connectionstatechange")
        async def _state() -> None:
            state = self.pc.connectionState
            log.debug("peer %s (%s): %s", self.id[:8], self.role, state)
            if state == "connected":
                self.connected.set()
            elif state in ("failed", "closed"):
                await self._report_gone(f"connection {state}")

    def add_video_transceiver(self, track: MediaStreamTrack | None) -> None:
        """Created before the offer is applied so that it takes the offer's video m-line with our codec order."""
        t = self.pc.addTransceiver(track if track is not None else "video", direction="sendrecv")
        t.setCodecPreferences(preferred_video_codecs())

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._watchdog = asyncio.create_task(self._watch(), name=f"watchdog-{self.id[:8]}")
        return self.pc.localDescription.sdp

    async def _watch(self) -> None:
        last_rx = -1
        last_change = time.monotonic()
        while not self._gone:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if not self.connected.is_set():
                if now - self.created > self.connect_timeout:
                    await self._report_gone(f"not connected after {self.connect_timeout:.0f} s")
                continue
            # Public stats API: packets received on the DTLS transport(s) counts RTP, RTCP and data channel traffic.
            stats = await self.pc.getStats()
            rx = sum(getattr(s, "packetsReceived", 0) for s in stats.values() if s.type == "transport")
            if rx != last_rx:
                last_rx, last_change = rx, now
            elif now - last_change > self.idle_timeout:
                await self._report_gone(f"no packets for {self.idle_timeout:.1f} s")

    async def _report_gone(self, reason: str) -> None:
        if self._gone:
            return
        self._gone = True
        log.info("peer %s (%s) gone: %s", self.id[:8], self.role, reason)
        if self.on_gone is not None:
            # Its own task: the tear-down closes this peer, which cancels the watchdog that may be calling us.
            self._teardown = asyncio.create_task(self.on_gone(self, reason), name=f"teardown-{self.id[:8]}")

    async def close(self) -> None:
        self._gone = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.pc.close()


class LiveSession:
    """A generator session fed by one ingest peer and watched by its viewers."""

    def __init__(
        self,
        pipeline: str,
        generator: Generator,
        *,
        fps: float = 30.0,
        on_closed: Callable[[LiveSession], None] | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.pipeline = pipeline
        self.spec = generator.spec
        self.fps = fps
        self.clock = SessionClock()
        self.session = Session(
            generator,
            input_policy=QueuePolicy.NEWEST_ONLY,
            output_policy=QueuePolicy.DROP_OLDEST,
            output_size=4,
            name=f"{pipeline}-{self.id[:8]}",
        )
        # Live input is newest-only for pictures but keeps audio (see _live_droppable); replaced before start.
        self.session.input = FrameQueue(
            8, QueuePolicy.NEWEST_ONLY, name=f"{self.session.name}.in", droppable=_live_droppable
        )
        self.ingest: Peer | None = None
        self.viewers: dict[str, Peer] = {}
        self._viewer_tracks: dict[str, list[MediaStreamTrack]] = {}
        self.video_tracks: list[GeneratedVideoTrack] = []
        self.audio_tracks: list[GeneratedAudioTrack] = []
        self.channels: list[Any] = []
        self.error: str | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.audio_dropped = 0
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._receiving_video = False
        self._closing = False
        self._close_task: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ set-up
    def new_video_track(self) -> GeneratedVideoTrack:
        track = GeneratedVideoTrack(self.clock)
        self.video_tracks.append(track)
        return track

    def new_audio_track(self) -> GeneratedAudioTrack:
        track = GeneratedAudioTrack()
        self.audio_tracks.append(track)
        return track

    async def attach_ingest(self, peer: Peer, offer_sdp: str, *, send_back: bool) -> str:
        """Apply the ingest peer's offer; with ``send_back`` (the browser demo) it also receives the output."""
        self.ingest = peer
        peer.on_gone = self._peer_gone
        offer_kinds = media_kinds(offer_sdp)
        if "video" in offer_kinds:
            peer.add_video_transceiver(self.new_video_track() if send_back else None)
        if "audio" in offer_kinds and send_back and MediaKind.AUDIO in self.spec.outputs:
            peer.pc.addTransceiver(self.new_audio_track(), direction="sendrecv")

        @peer.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and MediaKind.VIDEO in self.spec.inputs:
                self._receiving_video = True
                self._spawn(self._pump_video(track), "video-in")
            elif track.kind == "audio" and MediaKind.AUDIO in self.spec.inputs:
                self._spawn(self._pump_audio(track), "audio-in")
            else:
                self._spawn(_drain(track), f"{track.kind}-drain")

        @peer.pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if channel.label == "params":
                self._attach_channel(channel)

        return await peer.answer(offer_sdp)

    async def attach_viewer(self, peer: Peer, offer_sdp: str) -> str:
        """A WHEP viewer: it receives the generated output and sends nothing."""
        peer.on_gone = self._viewer_gone
        kinds = media_kinds(offer_sdp)
        tracks: list[MediaStreamTrack] = []
        if "video" in kinds:
            tracks.append(self.new_video_track())
            peer.add_video_transceiver(tracks[-1])
        if "audio" in kinds and MediaKind.AUDIO in self.spec.outputs:
            tracks.append(self.new_audio_track())
            peer.pc.addTransceiver(tracks[-1], direction="sendonly")
        self.viewers[peer.id] = peer
        self._viewer_tracks[peer.id] = tracks
        return await peer.answer(offer_sdp)

    def start(self) -> None:
        self.session.start()
        self._spawn(self._route(), "router")
        self._spawn(self._report(), "stats")
        needs_clock = not self.spec.inputs or (self.spec.input_optional and not self._receiving_video)
        if needs_clock and MediaKind.VIDEO in self.spec.outputs:
            # Text-to-video (or no camera): the session clock drives the generator; newest-only drops missed ticks.
            self._spawn(self._tick(), "ticks")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.session.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task %s failed", self.id[:8], task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ live parameters
    def validate_params(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise StreamrtError("params must be a JSON object")
        return self.spec.params.validate(params, live_only=True)

    def update(self, params: Any) -> dict[str, Any]:
        """Validate on the caller's thread (so errors answer at once), apply on the worker in stream order."""
        values = self.validate_params(params)
        self.session.update(values)
        return values

    def _attach_channel(self, channel: Any) -> None:
        self.channels.append(channel)

        @channel.on("message")
        def _on_message(message: Any) -> None:
            try:
                msg = json.loads(message) if isinstance(message, str) else None
                if not isinstance(msg, dict):
                    raise StreamrtError("messages are JSON objects")
                if msg.get("type") == "ping":
                    channel.send(json.dumps({"type": "pong", "t": msg.get("t")}))
                    return
                values = self.update(msg.get("params", msg) if msg.get("type", "params") == "params" else {})
                channel.send(json.dumps({"type": "ack", "params": values}))
            except (StreamrtError, ValueError) as exc:
                channel.send(json.dumps({"type": "error", "message": str(exc)}))

    def _broadcast(self, msg: dict[str, Any]) -> None:
        text = json.dumps(msg)
        for ch in self.channels:
            if ch.readyState == "open":
                with contextlib.suppress(Exception):
                    ch.send(text)

    # ------------------------------------------------------------------ pumps
    async def _pump_video(self, track: MediaStreamTrack) -> None:
        multiple = self.spec.size_multiple
        reformatter = VideoReformatter()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.VideoFrame)  # a remote track yields decoded frames
            # Stamped at arrival: latency metrics run from here to emit, on the same perf_counter clock.
            out = video_from_av(frame, multiple, reformatter)
            out.metadata[CAPTURE_TIME] = time.perf_counter()
            try:
                self.session.submit(out)  # newest-only: never waits
            except QueueClosed:
                return

    async def _pump_audio(self, track: MediaStreamTrack) -> None:
        # The microphone's Opus audio is resampled (and down- or up-mixed) at the edge to what the generator takes
        # with its current parameters; a live stream adapts rather than refusing the caller's device.
        conv = AudioInput(*self.session.generator.audio_input_format())
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            for chunk in conv.convert(frame):
                if len(self.session.input) > MAX_AUDIO_BACKLOG:
                    self.audio_dropped += 1
                    continue
                try:
                    self.session.submit(chunk)
                except QueueClosed:
                    return

    async def _tick(self) -> None:
        interval = 1.0 / self.fps
        next_t = time.perf_counter()
        while not self._closing:
            try:
                self.session.submit(Tick(pts=self.clock.pts(VIDEO_TIME_BASE), time_base=VIDEO_TIME_BASE))
            except QueueClosed:
                return
            next_t += interval
            # Pacing on absolute deadlines; after a stall, skip ahead rather than bursting.
            next_t = max(next_t, time.perf_counter())
            await asyncio.sleep(next_t - time.perf_counter())

    async def _route(self) -> None:
        while True:
            try:
                item = await self.session.output.aget()
            except QueueClosed:
                break
            if isinstance(item, VideoFrame):
                for t in self.video_tracks:
                    with contextlib.suppress(QueueClosed):
                        t.queue.put_nowait(item)
            elif isinstance(item, AudioFrame):
                for a in self.audio_tracks:
                    with contextlib.suppress(QueueClosed):
                        a.offer(item)
            elif isinstance(item, ErrorEvent):
                self.error = item.message
                self._broadcast({"type": "error", "message": item.message, "exception": item.exception_type})
                await self.close(f"generator error: {item.message}")
                return
            elif isinstance(item, EndOfStream):
                break
        await self.close("end of stream")

    async def _report(self) -> None:
        while not self._closing:
            await asyncio.sleep(1.0)
            snap = self.session.metrics.snapshot()
            self._broadcast(
                {
                    "type": "stats",
                    "input_fps": round(snap.input_fps, 2),
                    "output_fps": round(snap.output_fps, 2),
                    "latency_p50_ms": None
                    if snap.latency_p50_ms != snap.latency_p50_ms
                    else round(snap.latency_p50_ms, 1),
                    "frames_out": snap.frames_out,
                }
            )

    # ------------------------------------------------------------------ tear-down
    async def _peer_gone(self, peer: Peer, reason: str) -> None:
        await self.close(f"ingest peer: {reason}")

    async def _viewer_gone(self, peer: Peer, reason: str) -> None:
        await self.close_viewer(peer.id)

    async def close_viewer(self, viewer_id: str) -> bool:
        """End one viewer; its tracks leave the router's fan-out, so viewer churn keeps nothing behind."""
        peer = self.viewers.pop(viewer_id, None)
        for track in self._viewer_tracks.pop(viewer_id, []):
            track.stop()
            if isinstance(track, GeneratedVideoTrack) and track in self.video_tracks:
                self.video_tracks.remove(track)
            if isinstance(track, GeneratedAudioTrack) and track in self.audio_tracks:
                self.audio_tracks.remove(track)
        if peer is None:
            return False
        await peer.close()
        return True

    async def close(self, reason: str = "closed") -> None:
        """End the session: idempotent, never raises; the worker thread is joined off the event loop.

        The work runs in its own shielded task, so a caller that is cancelled (a request handler whose client left)
        cannot leave the session half closed.
        """
        if self._close_task is None:
            self._closing = True
            self.close_reason = reason
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        reason = self.close_reason
        log.info("session %s (%s) closing: %s", self.id[:8], self.pipeline, reason)
        for task in list(self._tasks):
            task.cancel()
        for t in self.video_tracks + self.audio_tracks:
            t.stop()
        peers = [p for p in [self.ingest, *self.viewers.values()] if p is not None]
        self.viewers.clear()
        for p in peers:
            try:
                await asyncio.wait_for(p.close(), 5.0)
            except Exception:  # a peer that fails to close must not keep the session alive
                log.warning("session %s: closing peer %s failed", self.id[:8], p.id[:8], exc_info=True)
        await asyncio.to_thread(self.session.close)
        if self._on_closed is not None:
            self._on_closed(self)
        self.closed.set()


async def _drain(track: MediaStreamTrack) -> None:
    # Media the generator does not take is still read, so aiortc's receive buffers do not fill.
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


def media_kinds(sdp: str) -> list[str]:
    """The m-line kinds of an SDP ("video", "audio", "application")."""
    return [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]
