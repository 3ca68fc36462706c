"""Contract cases of the StreamingT2V generator (tiny random UNet3D with active CAM/APM)."""

from __future__ import annotations

from contract import Case, Workspace
from contract_t2v import SIZE, built, tiny_streamingt2v

from pipelines.streamingt2v import StreamingT2VGenerator


def _load(ws: Workspace) -> StreamingT2VGenerator:
    return StreamingT2VGenerator.load(model=str(tiny_streamingt2v(ws.root)))


def cases() -> list[Case]:
    return [
        Case(
            "streamingt2v-ticks",
            "streamingt2v",
            built(_load, {}),
            None,
            out_size=(SIZE, SIZE),
            frames=10,
            long_frames=120,
        ),
    ]
