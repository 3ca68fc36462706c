"""Contract cases of the Rolling Forcing generator (tiny random model, published window settings)."""

from __future__ import annotations

from contract import Case, Workspace
from contract_t2v import SIZE, built, tiny_rolling_forcing

from pipelines.rolling_forcing import RollingForcingGenerator


def _load(ws: Workspace) -> RollingForcingGenerator:
    return RollingForcingGenerator.load(model=str(tiny_rolling_forcing(ws.root)))


def cases() -> list[Case]:
    return [
        Case(
            "rolling-forcing-ticks",
            "rolling-forcing",
            built(_load, {}),
            None,
            out_size=(SIZE, SIZE),
            frames=10,
            long_frames=240,
        ),
    ]
