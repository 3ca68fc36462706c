"""Contract cases of the StreamDiT generator (tiny random model)."""

from __future__ import annotations

from contract import Case, Workspace
from contract_t2v import SIZE, built, tiny_streamdit

from pipelines.streamdit import StreamDiTGenerator


def _load(ws: Workspace) -> StreamDiTGenerator:
    return StreamDiTGenerator.load(model=str(tiny_streamdit(ws.root)))


def cases() -> list[Case]:
    return [
        Case(
            "streamdit-ticks",
            "streamdit",
            built(_load, {}),
            None,
            out_size=(SIZE, SIZE),
            frames=10,
            long_frames=240,
        ),
        Case(
            "streamdit-ticks-s2",
            "streamdit",
            built(_load, {"micro_steps": 2}),
            None,
            out_size=(SIZE, SIZE),
            frames=9,
            long_frames=160,
        ),
    ]
