"""WHIP ingest (RFC 9725) and WHEP egress (the IETF draft that mirrors it).

WHIP::

    POST   /whip/{stream}?pipeline=NAME   application/sdp offer -> 201 Created, Location: /whip/{stream}/{id}, answer
    DELETE /whip/{stream}/{id}            ends the session (200)
    PATCH  /whip/{stream}/{id}            501: trickle ICE and ICE restarts are not supported (the answer carries
                                          every server candidate, so a client never needs to trickle)
    OPTIONS on both                       204 with Accept-Post / CORS headers (pre-flights carry no token)

WHEP::

    POST   /whep/{stream}                 recvonly offer -> 201 Created, Location: /whep/{stream}/{id}, answer:
                                          the viewer receives the generated output of the WHIP stream
    DELETE /whep/{stream}/{id}            ends that viewer

Other methods get 405 with an Allow header (aiohttp does this for any registered resource); a POST whose
Content-Type is not application/sdp gets 415; an offer without media the pipeline can take gets 406; 401, 404, 413
and 503 as on the JSON API. Error bodies are plain text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from streamrt import registry
from streamrt.generator import MediaKind
from transport.live import media_kinds

if TYPE_CHECKING:
    from transport.server import StreamrtServer

log = logging.getLogger(__name__)

SDP = "application/sdp"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch",
}


def add_routes(app: web.Application, server: StreamrtServer) -> None:
    h = _Handlers(server)
    for kind, post in (("whip", h.whip_post), ("whep", h.whep_post)):
        endpoint = app.router.add_resource(f"/{kind}/{{stream}}")
        endpoint.add_route("POST", post)
        endpoint.add_route("OPTIONS", h.options_endpoint)
        resource = app.router.add_resource(f"/{kind}/{{stream}}/{{id}}")
        resource.add_route("DELETE", h.delete)
        resource.add_route("PATCH", h.patch)
        resource.add_route("OPTIONS", h.options_resource)


class _Handlers:
    def __init__(self, server: StreamrtServer) -> None:
        self.server = server

    async def options_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                **_CORS,
                "Accept-Post": SDP,
                "Allow": "POST, OPTIONS",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
            },
        )

    async def options_resource(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                **_CORS,
                "Allow": "DELETE, PATCH, OPTIONS",
                "Access-Control-Allow-Methods": "DELETE, PATCH, OPTIONS",
            },
        )

    async def _read_offer(self, request: web.Request) -> str:
        from transport.server import HTTPError

        self.server.check_token(request)
        if request.content_type != SDP:
            raise HTTPError(415, f"Content-Type must be {SDP}", {"Accept-Post": SDP})
        try:
            text = (await request.read()).decode("utf-8")  # 413 past the body cap
        except UnicodeDecodeError as exc:
            raise HTTPError(400, "the SDP offer is not UTF-8") from exc
        return self.server.check_sdp(text)

    async def whip_post(self, request: web.Request) -> web.Response:
        from transport.server import HTTPError

        offer = await self._read_offer(request)
        stream = request.match_info["stream"]
        server = self.server
        pipeline = request.query.get("pipeline") or server.config.pipeline
        server.check_pipeline(pipeline)
        if stream in server.streams:
            raise HTTPError(409, f"stream {stream!r} is already being ingested; DELETE its session first")
        # Ingest without media the generator takes is pointless, even for generators whose input is optional; the
        # class is imported off the loop (a pipeline module may import torch) and checked before weights load.
        spec = (await asyncio.to_thread(registry.get, pipeline)).spec
        wanted = {k.value for k in spec.inputs}
        if not wanted & set(media_kinds(offer)):
            raise HTTPError(
                406,
                f"pipeline {pipeline!r} takes {'/'.join(sorted(wanted)) or 'no'} media; the offer has none",
            )
        with server.reserve():
            live = await server.open_session(pipeline, _query_params(request))
            peer = server.new_peer("whip")
            try:
                answer = await live.attach_ingest(peer, offer, send_back=False)
            except Exception as exc:
                await live.close("negotiation failed")
                raise HTTPError(400, f"cannot use this offer: {exc}") from exc
            if stream in server.streams:  # another ingest won the race while the weights loaded
                await live.close("stream taken")
                raise HTTPError(409, f"stream {stream!r} is already being ingested")
            server.register(live)
            server.streams[stream] = live
        live.start()
        location = f"/whip/{stream}/{live.id}"
        return web.Response(
            status=201,
            text=answer,
            content_type=SDP,
            headers={**_CORS, "Location": location, "ETag": f'"{live.id}"'},
        )

    async def whep_post(self, request: web.Request) -> web.Response:
        from transport.server import MAX_VIEWERS, HTTPError

        offer = await self._read_offer(request)
        stream = request.match_info["stream"]
        live = self.server.streams.get(stream)
        if live is None:
            raise HTTPError(404, f"no stream {stream!r} is being ingested")
        if len(live.viewers) >= MAX_VIEWERS:
            raise HTTPError(
                503, f"stream {stream!r} has its maximum of {MAX_VIEWERS} viewers", {"Retry-After": "5"}
            )
        kinds = set(media_kinds(offer))
        if not kinds & {k.value for k in live.spec.outputs if k is not MediaKind.TEXT}:
            raise HTTPError(406, "the offer asks for no media this stream produces")
        peer = self.server.new_peer("whep")
        try:
            answer = await live.attach_viewer(peer, offer)
        except Exception as exc:
            await live.close_viewer(peer.id)
            await peer.close()
            raise HTTPError(400, f"cannot use this offer: {exc}") from exc
        location = f"/whep/{stream}/{peer.id}"
        return web.Response(
            status=201,
            text=answer,
            content_type=SDP,
            headers={**_CORS, "Location": location, "ETag": f'"{peer.id}"'},
        )

    def _find(self, request: web.Request) -> tuple[str, str]:
        from transport.server import HTTPError

        self.server.check_token(request)
        stream, rid = request.match_info["stream"], request.match_info["id"]
        live = self.server.streams.get(stream)
        kind = request.path.split("/")[1]
        if (
            live is None
            or (kind == "whip" and live.id != rid)
            or (kind == "whep" and rid not in live.viewers)
        ):
            raise HTTPError(404, f"no {kind.upper()} session {rid!r} on stream {stream!r}")
        return kind, rid

    async def delete(self, request: web.Request) -> web.Response:
        kind, rid = self._find(request)
        live = self.server.streams[request.match_info["stream"]]
        if kind == "whip":
            await live.close("WHIP client sent DELETE")
        else:
            await live.close_viewer(rid)
        return web.Response(status=200, headers=_CORS)

    async def patch(self, request: web.Request) -> web.Response:
        from transport.server import HTTPError

        self._find(request)
        raise HTTPError(
            501, "trickle ICE and ICE restarts are not supported; the answer carries all candidates"
        )


def _query_params(request: web.Request) -> dict[str, str]:
    # Every query argument but `pipeline` is a generator parameter (strings, coerced by the parameter declarations).
    return {k: v for k, v in request.query.items() if k != "pipeline"}
