"""Contract cases of the X-Streamer generator: a tiny folder (random Actor and codecs), driven by ticks; a user turn
is given as a parameter so the streams under test hold a reply."""

from __future__ import annotations

from contract import Case, Workspace

from streamrt.generator import Generator


def _build(ws: Workspace) -> Generator:
    from _xstreamer import tiny_xstreamer_folder

    from pipelines.xstreamer import XStreamerGenerator

    gen = XStreamerGenerator.load(model=str(tiny_xstreamer_folder(ws.root)))
    gen.prepare({"say": "hello there"})
    return gen


def cases() -> list[Case]:
    return [
        Case("xstreamer-ticks", "xstreamer", _build, None, out_size=(128, 128), frames=12, long_frames=200)
    ]
