"""``streamrt bench webrtc``: latency and throughput of live sessions over real WebRTC on loopback.

Method. A server runs in its own process (as ``streamrt serve`` does, so its CPU is measured apart from the probes'):
a ``StreamrtServer`` plus two bench-only additions, a raw aiortc echo endpoint (``POST /echo/offer``: the received
track relayed straight back, no streamrt session, no conversion) and a ``slow`` pipeline (passthrough that takes
100 ms per frame: a generator slower than the 30 fps camera). Probes (``transport.probe.ProbeClient``) in the bench
process send barcode-stamped 640x480 frames at 30 fps and read the barcode back: round-trip latency on one clock.

Rows (every row has ``suite, pipeline, sessions, p50_ms, p90_ms, fps, cpu_percent``):

- ``echo`` (1 session) and ``passthrough`` (1 session), measured alternately in the same run (``--rounds``), medians
  reported; the passthrough row adds ``echo_p50_ms`` and ``over_echo_ms`` (target: at most one frame interval +
  20 ms, ``target_over_echo_ms``);
- ``passthrough`` with 4 sessions at once: ``fps`` is the slowest session's (target: >= 28 each);
- ``slow`` (1 session) for ``--drift-seconds`` (default 120): ``p90_first_10s_ms`` and ``p90_last_10s_ms`` (target:
  within 10%), which is what newest-only input buys;
- ``streamdiffusion`` (1 session, the embedded default weights or ``--model``): generated pictures lose the barcode,
  so its latency is the server's arrival-to-emit figure (``latency_source: "server"``).

``cpu_percent`` is the server process's CPU time over wall time (100 = one core busy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from streamrt.bench.suite import Row, Suite
from streamrt.errors import StreamrtError

log = logging.getLogger(__name__)

FPS = 30.0
SLOW_SECONDS = 0.1  # the slow generator's time per frame: 10 fps, a third of the camera rate


# ---------------------------------------------------------------------------------------------------- server side
def _bench_server_main(argv: list[str]) -> None:
    """Entry of the server process: ``python -m transport.bench_webrtc --serve PORT [--model DIR]``."""
    import av  # noqa: F401 - loaded before the event loop starts, as in `streamrt serve`
    from aiohttp import web
    from aiortc import RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from streamrt.frames import DataFrame
    from streamrt.generator import Generator
    from streamrt.passthrough import PassthroughGenerator
    from transport.live import Peer
    from transport.server import ServerConfig, StreamrtServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, required=True)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)

    class SlowPassthrough(PassthroughGenerator):
        def process(self, frame: DataFrame) -> list[DataFrame]:
            time.sleep(SLOW_SECONDS)  # stands for model work on the worker thread
            return [frame]

    class BenchServer(StreamrtServer):
        def check_pipeline(self, name: str) -> None:
            if name != "slow":
                super().check_pipeline(name)

        def _open_generator(self, pipeline: str, params: dict[str, Any]) -> Generator:
            if pipeline == "slow":
                gen = SlowPassthrough()
                gen.prepare(params)
                return gen
            return super()._open_generator(pipeline, params)

    relay = MediaRelay()
    peers: set[Peer] = set()

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        peer = server.new_peer("echo")
        peers.add(peer)

        @peer.pc.on("track")
        def _on_track(track: Any) -> None:
            peer.pc.addTrack(relay.subscribe(track, buffered=False))

        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
        await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        return web.json_response(
            {"sdp": peer.pc.localDescription.sdp, "type": "answer", "session_id": peer.id}
        )

    server = BenchServer(
        ServerConfig(port=args.serve, pipeline="streamdiffusion", model=args.model, max_sessions=8)
    )
    app = server.make_app()
    app.router.add_post("/echo/offer", echo)

    async def close_echo(app: web.Application) -> None:
        await asyncio.gather(*(p.close() for p in peers))

    app.on_shutdown.append(close_echo)
    web.run_app(app, host="127.0.0.1", port=args.serve, print=None, access_log=None)


class _ServerProcess:
    def __init__(self, model: str | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "transport.bench_webrtc", "--serve", str(self.port)]
        if model:
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, within: float = 120.0) -> None:
        import aiohttp

        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise StreamrtError(f"the bench server exited: {err[-500:]}")
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise StreamrtError("the bench server did not start")
                await asyncio.sleep(0.2)

    def cpu_seconds(self) -> float:
        # utime + stime of the server process (all its threads), from /proc (Linux); NaN elsewhere.
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------------- measuring
def _pct(values: list[float], q: float) -> float:
    from streamrt.metrics import percentile

    return percentile(values, q)


async def _measure(
    srv: _ServerProcess,
    *,
    path: str,
    pipeline: str | None,
    sessions: int,
    seconds: float,
    settle: float = 2.0,
) -> dict[str, Any]:
    """Run ``sessions`` probes for ``settle + seconds``; statistics over the last ``seconds``."""
    from transport.probe import ProbeClient

    probes = [ProbeClient(srv.base, fps=FPS) for _ in range(sessions)]
    body: dict[str, Any] = {} if pipeline is None else {"pipeline": pipeline}
    try:
        await asyncio.gather(*(p.connect(path, **body) for p in probes))
        await asyncio.sleep(settle)  # a measurement window, not synchronisation: ICE, first keyframe, warm-up
        cpu0, t0 = srv.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu1, t1 = srv.cpu_seconds(), time.perf_counter()
        lat: list[float] = []
        fps: list[float] = []
        for p in probes:
            window, rate = p.stats.window(t0, t1)
            lat += window
            fps.append(rate)
        return {
            "p50_ms": _pct(lat, 50),
            "p90_ms": _pct(lat, 90),
            "fps": min(fps),
            "mean_fps": statistics.fmean(fps),
            "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
            "samples": len(lat),
            "probes": probes,
            "t0": t0,
            "t1": t1,
        }
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)


def _row(pipeline: str, sessions: int, m: dict[str, Any], **extra: Any) -> Row:
    return {
        "suite": "webrtc",
        "pipeline": pipeline,
        "sessions": sessions,
        "p50_ms": m["p50_ms"],
        "p90_ms": m["p90_ms"],
        "fps": m["fps"],
        "cpu_percent": m["cpu_percent"],
        **extra,
    }


async def _run(args: argparse.Namespace) -> AsyncGenerator[Row, None]:
    srv = _ServerProcess(args.model)
    try:
        await srv.wait_ready()
        # Echo and passthrough alternate, so both see the same background load; medians over the rounds.
        echo, single = [], []
        for _ in range(args.rounds):
            echo.append(
                await _measure(srv, path="/echo/offer", pipeline=None, sessions=1, seconds=args.seconds)
            )
            single.append(
                await _measure(
                    srv, path="/api/offer", pipeline="passthrough", sessions=1, seconds=args.seconds
                )
            )
        e, s = _median(echo), _median(single)
        yield _row("echo", 1, e, samples=e["samples"])
        interval = 1000.0 / FPS
        yield _row(
                "passthrough", 1, s, samples=s["samples"], echo_p50_ms=e["p50_ms"],
                over_echo_ms=s["p50_ms"] - e["p50_ms"], target_over_echo_ms=interval + 20.0,
        )  # fmt: skip
        if args.sessions > 1:
            m = await _measure(
                srv, path="/api/offer", pipeline="passthrough", sessions=args.sessions, seconds=args.seconds
            )
            yield _row("passthrough", args.sessions, m, mean_fps=m["mean_fps"], target_fps=28.0)
        if args.drift_seconds > 0:
            total = max(args.drift_seconds, 20.0)
            m = await _measure(srv, path="/api/offer", pipeline="slow", sessions=1, seconds=total, settle=1.0)
            stats = m["probes"][0].stats
            first, _ = stats.window(m["t0"], m["t0"] + 10)
            last, _ = stats.window(m["t1"] - 10, m["t1"])
            p90_first, p90_last = _pct(first, 90), _pct(last, 90)
            yield _row(
                    "slow", 1, m, generator_ms=SLOW_SECONDS * 1000, seconds=total, p90_first_10s_ms=p90_first,
                    p90_last_10s_ms=p90_last, drift=(p90_last / p90_first - 1.0) if p90_first else float("nan"),
                    target_drift=0.10,
            )  # fmt: skip
        if not args.skip_streamdiffusion:
            yield await _streamdiffusion_row(srv, args.seconds)
    finally:
        srv.stop()


async def _streamdiffusion_row(srv: _ServerProcess, seconds: float) -> Row:
    import aiohttp

    from transport.probe import ProbeClient

    probe = ProbeClient(srv.base, fps=FPS)
    try:
        try:
            await probe.connect("/api/offer", pipeline="streamdiffusion")
        except (
            RuntimeError
        ) as exc:  # e.g. the default weights are missing: report it in the row, keep the others
            return {"suite": "webrtc", "pipeline": "streamdiffusion", "sessions": 1, "error": str(exc)}
        async with aiohttp.ClientSession() as http:
            # The first frames include weight loading and warm-up: wait for output, then measure a window.
            await asyncio.wait_for(probe.receiving.wait(), 180)
            cpu0, t0 = srv.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu1, t1 = srv.cpu_seconds(), time.perf_counter()
            async with http.get(f"{srv.base}/api/sessions/{probe.session_id}") as r:
                info = await r.json()
        _, fps = probe.stats.window(t0, t1)
        return {
            "suite": "webrtc",
            "pipeline": "streamdiffusion",
            "sessions": 1,
            "p50_ms": info.get("latency_p50_ms"),
            "p90_ms": info.get("latency_p90_ms"),
            "fps": fps,
            "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
            "latency_source": "server",
        }
    finally:
        await probe.close()


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("p50_ms", "p90_ms", "fps", "mean_fps", "cpu_percent", "samples")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


# ---------------------------------------------------------------------------------------------------- suite
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    # The shared options the bench front end validates; torch threads matter only inside the server process.
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="echo/passthrough alternations (default 2)")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent passthrough sessions (default 4)")
    parser.add_argument(
        "--drift-seconds", type=float, default=120.0,
        help="length of the slow-generator run whose p90 drift is reported (default 120; 0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default=None, help="streamdiffusion weights (default: the embedded tiny model)"
    )
    parser.add_argument(
        "--skip-streamdiffusion", action="store_true", help="leave out the streamdiffusion row"
    )


def run(args: argparse.Namespace) -> Iterator[Row]:
    if args.seconds <= 0 or args.rounds < 1 or args.sessions < 1:
        raise StreamrtError("--seconds must be positive, --rounds and --sessions at least 1")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    # Rows are printed as soon as each is measured: drive the async generator one row at a time on one loop.
    loop = asyncio.new_event_loop()
    rows = _run(args)
    try:
        while True:
            try:
                yield loop.run_until_complete(rows.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(rows.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


SUITE = Suite(
    name="webrtc",
    help="WebRTC round trip on loopback: raw aiortc echo vs passthrough, 4 sessions, a slow generator, streamdiffusion",
    fields=("suite", "pipeline", "sessions", "p50_ms", "p90_ms", "fps", "cpu_percent"),
    add_arguments=add_arguments,
    run=run,
)


if __name__ == "__main__":
    _bench_server_main(sys.argv[1:])
