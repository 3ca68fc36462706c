"""The WebRTC server: ``streamrt serve``.

Endpoints (aiohttp):

=====================================  ==============================================================================
``GET /``                              the webcam demo page (``transport/demo.html``)
``GET /healthz``                       ``{"status": "ok", "sessions": N}``
``GET /metrics``                       Prometheus text: per pipeline sessions, fps, latency, queue depth, drops, SSF
``GET /api/pipelines``                 registered generators with inputs, outputs and a JSON schema of parameters
``POST /api/offer``                    ``{sdp, type, pipeline, params}`` -> ``{sdp, type, session_id}`` (sendrecv)
``PATCH /api/sessions/{id}``           live parameter update (JSON object); the "params" data channel does the same
``DELETE /api/sessions/{id}``          end a session
``POST /whip/{stream}?pipeline=NAME``  WHIP ingest (RFC 9725), see ``transport.whip``
``POST /whep/{stream}``                WHEP egress of a WHIP-ingested stream's generated output
=====================================  ==============================================================================

With a token set, ``/api/*``, ``/whip/*`` and ``/whep/*`` need ``Authorization: Bearer <token>`` (401 otherwise;
CORS pre-flight OPTIONS requests carry no credentials and are answered without). Request bodies are capped
(413); sessions are capped (503 with Retry-After). Generators load and run on worker threads, never on the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import math
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import sdp as aiortc_sdp

from streamrt import registry
from streamrt.errors import ModelLoadError, ParamError, StreamrtError, UnknownPipelineError
from streamrt.generator import Generator
from streamrt.loading import open_generator
from streamrt.metrics import percentile
from streamrt.params import ParamSet
from transport.ice import allow_loopback_candidates, is_loopback_host
from transport.live import LiveSession, Peer

log = logging.getLogger(__name__)

# SDP offers are a few kB (a browser's with simulcast and many codecs stays under 20 kB); 64 kB leaves room and
# bounds what one request can make the server buffer.
MAX_BODY = 64 * 1024
# A WHEP stream fans out to at most this many viewers (each costs one encoder).
MAX_VIEWERS = 8

SERVER_KEY: web.AppKey[StreamrtServer] = web.AppKey("streamrt_server")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    pipeline: str = "streamdiffusion"  # the default for requests that name none
    token: str | None = None
    max_sessions: int = 4
    model: str | None = None  # weights for the default pipeline (folder or hub id)
    checkpoint: str | None = None
    device: str = "cpu"
    fps: float = 30.0  # tick rate for generators that run without input
    idle_timeout: float = 3.0  # a peer silent this long is gone (the budget is 5 s)
    connect_timeout: float = 20.0
    ice_loopback: bool | None = None  # None: on when the host is a loopback address
    ice_servers: tuple[str, ...] = ()
    max_body: int = MAX_BODY
    default_params: dict[str, Any] = field(default_factory=dict)
    # Directories inside which a client may name server files in path parameters (a reference portrait, a pose
    # trajectory); none by default, so a client cannot make the server open files of its choosing.
    media_roots: tuple[str, ...] = ()


def check_client_paths(spec: ParamSet, params: dict[str, Any], roots: tuple[str, ...]) -> None:
    """Raise ``ParamError`` if a client's value of a path parameter (``Param.path``) lies outside every root.

    Paths are resolved (symlinks and ``..`` followed) before the check, so a link inside a root cannot lead out.
    Unknown names are left to the generator's own validation.
    """
    for name, value in params.items():
        param = next((p for p in spec.params if p.name == name), None)
        if param is None or not param.path or value is None:
            continue
        if not roots:
            raise ParamError(
                f"parameter {name!r} names a file on the server, which this server does not accept from clients; "
                "its operator can allow a directory with `streamrt serve --media-root DIR`"
            )
        target = Path(str(value)).expanduser().resolve()
        allowed = [Path(r).expanduser().resolve() for r in roots]
        if not any(target.is_relative_to(root) for root in allowed):
            raise ParamError(
                f"parameter {name!r}: {value!r} is outside the server's media roots "
                f"({', '.join(map(str, allowed))}); put the file there and name it by its path"
            )


class HTTPError(Exception):
    """An error answered as JSON ``{"error": message}`` (or plain text for WHIP/WHEP) with this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class _Totals:
    """Counters of closed sessions, so that Prometheus ``_total`` series never go down."""

    sessions: int = 0
    frames_in: int = 0
    frames_out: int = 0
    drops: int = 0
    ssf_skips: int = 0
    errors: int = 0


class StreamrtServer:
    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.sessions: dict[str, LiveSession] = {}
        self.streams: dict[str, LiveSession] = {}  # WHIP stream name -> its session
        self._reserved = 0  # sessions being set up (weights loading) count against the cap
        self._totals: dict[str, _Totals] = defaultdict(_Totals)
        self._pipelines: list[dict[str, Any]] | None = None
        self._load_lock = asyncio.Lock()
        self.started = time.time()
        loopback = self.config.ice_loopback
        if loopback is None:
            loopback = is_loopback_host(self.config.host)
        if loopback:
            allow_loopback_candidates()

    # ------------------------------------------------------------------ app
    def make_app(self) -> web.Application:
        from transport import whip

        app = web.Application(client_max_size=self.config.max_body, middlewares=[self._errors])
        app[SERVER_KEY] = self
        app.router.add_get("/", self.index)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/pipelines", self.pipelines)
        app.router.add_post("/api/offer", self.offer)
        app.router.add_patch("/api/sessions/{id}", self.patch_session)
        app.router.add_delete("/api/sessions/{id}", self.delete_session)
        app.router.add_get("/api/sessions/{id}", self.get_session)
        whip.add_routes(app, self)
        app.on_shutdown.append(self._shutdown)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except HTTPError as exc:
            if request.path.startswith(("/whip", "/whep")):
                return web.Response(status=exc.status, text=exc.message + "\n", headers=exc.headers)
            return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)

    async def _shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(s.close("server shutting down") for s in list(self.sessions.values())))

    # ------------------------------------------------------------------ helpers
    def check_token(self, request: web.Request) -> None:
        token = self.config.token
        if not token:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPError(
                401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="streamrt"'}
            )

    def check_capacity(self) -> None:
        if len(self.sessions) + self._reserved >= self.config.max_sessions:
            raise HTTPError(
                503,
                f"the server is at its limit of {self.config.max_sessions} sessions",
                {"Retry-After": "5"},
            )

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        """Hold a session slot from the capacity check until the session is registered (or the request fails):
        loading weights and negotiating both await, and concurrent offers must not overshoot the cap meanwhile."""
        self.check_capacity()
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def check_pipeline(self, name: str) -> None:
        if name not in registry.available():
            raise HTTPError(404, f"unknown pipeline {name!r}; available: {', '.join(registry.available())}")

    @staticmethod
    def check_sdp(sdp: Any) -> str:
        if not isinstance(sdp, str) or not sdp.strip():
            raise HTTPError(400, "sdp must be a non-empty string")
        try:
            parsed = aiortc_sdp.SessionDescription.parse(sdp)
        except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError... on bad SDP
            raise HTTPError(400, f"malformed SDP: {exc}") from exc
        if not sdp.lstrip().startswith("v=0") or not parsed.media:
            raise HTTPError(400, "malformed SDP: no v=0 line or no media section")
        return sdp

    def new_peer(self, role: str) -> Peer:
        return Peer(
            role,
            ice_servers=self.config.ice_servers,
            idle_timeout=self.config.idle_timeout,
            connect_timeout=self.config.connect_timeout,
        )

    async def open_session(self, pipeline: str, params: Any) -> LiveSession:
        """Load and prepare the generator on a worker thread; the caller holds a slot (``reserve``)."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise HTTPError(400, "params must be a JSON object")
        try:
            check_client_paths(registry.get(pipeline).spec.params, params, self.config.media_roots)
        except UnknownPipelineError as exc:
            raise HTTPError(404, str(exc)) from exc
        except ParamError as exc:
            raise HTTPError(403, str(exc)) from exc
        merged = {**self.config.default_params, **params} if pipeline == self.config.pipeline else params
        try:
            gen = await asyncio.to_thread(self._open_generator, pipeline, merged)
        except UnknownPipelineError as exc:
            raise HTTPError(404, str(exc)) from exc
        except ModelLoadError as exc:
            raise HTTPError(500, str(exc)) from exc
        except StreamrtError as exc:  # ParamError, InputError: the request asked for something invalid
            raise HTTPError(400, str(exc)) from exc
        except Exception as exc:
            # A broken plug-in or missing weights: this request fails, the server stays up.
            log.exception("cannot open pipeline %s", pipeline)
            raise HTTPError(500, f"cannot open pipeline {pipeline!r}: {exc}") from exc
        return LiveSession(pipeline, gen, fps=self.config.fps, on_closed=self._session_closed)

    def _open_generator(self, pipeline: str, params: dict[str, Any]) -> Generator:
        own = pipeline == self.config.pipeline
        return open_generator(
            pipeline,
            model=self.config.model if own else None,
            checkpoint=self.config.checkpoint if own else None,
            device=self.config.device,
            params=params,
        )

    def register(self, live: LiveSession) -> None:
        self.sessions[live.id] = live
        log.info("session %s opened (%s); %d running", live.id[:8], live.pipeline, len(self.sessions))

    def _session_closed(self, live: LiveSession) -> None:
        self.sessions.pop(live.id, None)
        for name, s in list(self.streams.items()):
            if s is live:
                del self.streams[name]
        snap = live.session.metrics.snapshot()
        t = self._totals[live.pipeline]
        t.sessions += 1
        t.frames_in += snap.frames_in
        t.frames_out += snap.frames_out
        t.drops += sum(q.drops for q in live.session.queue_stats())
        t.ssf_skips += snap.ssf_skips
        t.errors += snap.errors

    def get_live(self, session_id: str) -> LiveSession:
        live = self.sessions.get(session_id)
        if live is None:
            raise HTTPError(404, f"no session {session_id!r}")
        return live

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.read()  # raises 413 past client_max_size
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HTTPError(400, "the body must be a JSON object")
        return data

    # ------------------------------------------------------------------ handlers
    async def index(self, request: web.Request) -> web.Response:
        html = resources.files("transport").joinpath("demo.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "sessions": len(self.sessions), "uptime_s": round(time.time() - self.started, 1)}
        )

    async def pipelines(self, request: web.Request) -> web.Response:
        self.check_token(request)
        if self._pipelines is None:
            # Importing a pipeline may import torch/diffusers: once, off the loop.
            self._pipelines = await asyncio.to_thread(_describe_pipelines)
        return web.json_response({"default": self.config.pipeline, "pipelines": self._pipelines})

    async def offer(self, request: web.Request) -> web.Response:
        self.check_token(request)
        body = await self.read_json(request)
        if body.get("type", "offer") != "offer":
            raise HTTPError(400, "type must be 'offer'")
        sdp = self.check_sdp(body.get("sdp"))
        pipeline = body.get("pipeline") or self.config.pipeline
        if not isinstance(pipeline, str):
            raise HTTPError(400, "pipeline must be a string")
        self.check_pipeline(pipeline)
        with self.reserve():
            live = await self.open_session(pipeline, body.get("params"))
            peer = self.new_peer("offer")
            try:
                answer = await live.attach_ingest(peer, sdp, send_back=True)
            except Exception as exc:  # aiortc rejects SDP it cannot use with ValueError/OperationError/...
                await live.close("negotiation failed")
                raise HTTPError(400, f"cannot use this offer: {exc}") from exc
            self.register(live)
        live.start()
        return web.json_response({"sdp": answer, "type": "answer", "session_id": live.id})

    async def get_session(self, request: web.Request) -> web.Response:
        self.check_token(request)
        live = self.get_live(request.match_info["id"])
        return web.json_response(session_info(live))

    async def patch_session(self, request: web.Request) -> web.Response:
        self.check_token(request)
        live = self.get_live(request.match_info["id"])
        body = await self.read_json(request)
        params = body.get("params", body)
        try:
            values = live.update(params)
        except (ParamError, StreamrtError) as exc:
            raise HTTPError(400, str(exc)) from exc
        return web.json_response({"session_id": live.id, "params": values})

    async def delete_session(self, request: web.Request) -> web.Response:
        self.check_token(request)
        live = self.get_live(request.match_info["id"])
        await live.close("deleted by the client")
        return web.json_response({"session_id": live.id, "closed": True})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.prometheus(), content_type="text/plain", charset="utf-8")

    def prometheus(self) -> str:
        """Prometheus text exposition format 0.0.4, one series per pipeline."""
        by_pipe: dict[str, list[LiveSession]] = defaultdict(list)
        for live in self.sessions.values():
            by_pipe[live.pipeline].append(live)
        pipes = sorted(set(by_pipe) | set(self._totals))
        out: list[str] = []

        def family(name: str, kind: str, help_: str, rows: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in rows:
                text = ",".join(f'{k}="{v}"' for k, v in labels.items())
                out.append(f"{name}{{{text}}} {_num(value)}")

        snaps = {p: [s.session.metrics.snapshot() for s in by_pipe[p]] for p in pipes}
        family(
            "streamrt_sessions",
            "gauge",
            "Running sessions.",
            [({"pipeline": p}, len(by_pipe[p])) for p in pipes],
        )
        family(
            "streamrt_sessions_total", "counter", "Sessions opened and closed.",
            [({"pipeline": p}, self._totals[p].sessions + len(by_pipe[p])) for p in pipes],
        )  # fmt: skip
        family("streamrt_input_fps", "gauge", "Input frames per second, summed over sessions.",
               [({"pipeline": p}, sum(s.input_fps for s in snaps[p])) for p in pipes])  # fmt: skip
        family("streamrt_output_fps", "gauge", "Generated frames per second, summed over sessions.",
               [({"pipeline": p}, sum(s.output_fps for s in snaps[p])) for p in pipes])  # fmt: skip
        lat_rows: list[tuple[dict[str, str], float]] = []
        for p in pipes:
            lat = [x * 1000 for s in by_pipe[p] for x in s.session.metrics.latencies()]
            for q in (50, 90, 99):
                lat_rows.append(({"pipeline": p, "quantile": f"0.{q}"}, percentile(lat, q)))
        family("streamrt_latency_ms", "gauge", "Arrival-to-emit latency over recent frames.", lat_rows)
        depth_rows: list[tuple[dict[str, str], float]] = []
        drop_rows: list[tuple[dict[str, str], float]] = []
        for p in pipes:
            stats = [st for s in by_pipe[p] for st in s.session.queue_stats()]
            for side in ("in", "out"):
                mine = [st for st in stats if st.name.endswith("." + side)]
                depth_rows.append(({"pipeline": p, "queue": side}, sum(st.depth for st in mine)))
                drop_rows.append(({"pipeline": p, "queue": side}, sum(st.drops for st in mine)))
        family("streamrt_queue_depth", "gauge", "Items waiting in session queues.", depth_rows)
        family(
            "streamrt_queue_drops", "gauge", "Frames dropped by running sessions' queue policies.", drop_rows
        )
        family("streamrt_dropped_frames_total", "counter", "Frames dropped by queue policies, all sessions.",
               [({"pipeline": p}, self._totals[p].drops + sum(r[1] for r in drop_rows if r[0]["pipeline"] == p))
                for p in pipes])  # fmt: skip
        family("streamrt_frames_in_total", "counter", "Frames given to generators.",
               [({"pipeline": p}, self._totals[p].frames_in + sum(s.frames_in for s in snaps[p])) for p in pipes])  # fmt: skip
        family("streamrt_frames_out_total", "counter", "Frames generated.",
               [({"pipeline": p}, self._totals[p].frames_out + sum(s.frames_out for s in snaps[p])) for p in pipes])  # fmt: skip
        family("streamrt_ssf_skips_total", "counter", "Input frames skipped by the similarity filter.",
               [({"pipeline": p}, self._totals[p].ssf_skips + sum(s.ssf_skips for s in snaps[p])) for p in pipes])  # fmt: skip
        family("streamrt_errors_total", "counter", "Sessions ended by a generator error.",
               [({"pipeline": p}, self._totals[p].errors + sum(s.errors for s in snaps[p])) for p in pipes])  # fmt: skip
        return "\n".join(out) + "\n"


def _num(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _describe_pipelines() -> list[dict[str, Any]]:
    out = []
    for name in registry.available():
        try:
            out.append(registry.get(name).spec.describe())
        except Exception as exc:  # one broken plug-in must not hide the others
            log.warning("cannot load pipeline %s: %s", name, exc)
            out.append({"name": name, "error": str(exc)})
    return out


def session_info(live: LiveSession) -> dict[str, Any]:
    snap = live.session.metrics.snapshot()
    return {
        "session_id": live.id,
        "pipeline": live.pipeline,
        "frames_in": snap.frames_in,
        "frames_out": snap.frames_out,
        "input_fps": snap.input_fps,
        "output_fps": snap.output_fps,
        "latency_p50_ms": None if math.isnan(snap.latency_p50_ms) else snap.latency_p50_ms,
        "latency_p90_ms": None if math.isnan(snap.latency_p90_ms) else snap.latency_p90_ms,
        "viewers": len(live.viewers),
        "error": live.error,
    }


# ---------------------------------------------------------------------------------------------------- running
async def start_server(config: ServerConfig) -> tuple[StreamrtServer, web.AppRunner, int]:
    """Start serving in the running loop; returns the server, its runner (``await runner.cleanup()``) and the port
    (useful with ``port=0``)."""
    server = StreamrtServer(config)
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = config.port
    sockets = getattr(
        site._server, "sockets", None
    )  # the bound port when port=0 (aiohttp has no public accessor)
    if sockets:
        port = sockets[0].getsockname()[1]
    log.info("serving on http://%s:%d/", config.host, port)
    return server, runner, port


async def _serve_forever(config: ServerConfig) -> None:
    _, runner, _ = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGTERM (a service manager, `docker stop`) and SIGINT end the server cleanly: sessions are closed and their
    # peers get a DTLS close instead of waiting for a timeout.
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows event loops
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def register(subparsers: Any) -> None:
    """Add ``streamrt serve`` to the command line."""
    p = subparsers.add_parser(
        "serve", help="serve generators over WebRTC (JSON offer, WHIP, WHEP) with a demo page"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    p.add_argument("--pipeline", default="streamdiffusion", help="default pipeline (default streamdiffusion)")
    p.add_argument("--model", help="weights of the default pipeline: a local folder or hub id")
    p.add_argument("--checkpoint", help="a checkpoint file for the default pipeline")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /api, /whip and /whep")
    p.add_argument("--max-sessions", type=int, default=4, help="concurrent sessions (default 4)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of generators that run without input")
    p.add_argument(
        "--ice-loopback", action=argparse.BooleanOptionalAction, default=None,
        help="offer 127.0.0.1 ICE candidates (default: when --host is a loopback address)",
    )  # fmt: skip
    p.add_argument(
        "--ice-server", action="append", default=[], help="STUN/TURN URL (repeatable; default none)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="default pipeline parameter"
    )
    p.add_argument(
        "--media-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory whose files clients may name in path parameters (reference, trajectory, thinker); "
        "repeatable; default none: clients cannot name server files",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> None:
    from streamrt.params import parse_assignments

    if args.max_sessions < 1:
        raise ParamError("--max-sessions must be at least 1")
    if args.pipeline not in registry.available():
        raise UnknownPipelineError(
            f"unknown pipeline {args.pipeline!r}; available: {', '.join(registry.available())}"
        )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        pipeline=args.pipeline,
        token=args.token,
        max_sessions=args.max_sessions,
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        fps=args.fps,
        ice_loopback=args.ice_loopback,
        ice_servers=tuple(args.ice_server),
        default_params=parse_assignments(args.set),
        media_roots=tuple(args.media_root),
    )
    # Validate default parameters before listening, so a typo fails at start rather than on the first client.
    registry.get(config.pipeline).spec.params.resolve(config.default_params)
    logging.getLogger("transport").setLevel(min(logging.getLogger().level, logging.INFO))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(config))
