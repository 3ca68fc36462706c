"""Contract cases of the ``binauralflow`` generator: a tiny random U-Net (seeded, so two builds are the same model),
mono 48 kHz input in 10 ms chunks."""

from __future__ import annotations

import torch
from contract import Case, Workspace

from pipelines.binauralflow.generator import BinauralFlowGenerator
from pipelines.binauralflow.model import CausalUNet
from pipelines.binauralflow.train import TINY
from streamrt.generator import Generator, MediaKind


def tiny_generator(params: dict | None = None) -> BinauralFlowGenerator:
    torch.manual_seed(0)
    net = CausalUNet(TINY)
    # the pose path starts at zero for training; a random model for the checks must depend on the poses
    torch.nn.init.normal_(net.pose_mlp[-1].weight, std=0.5)
    gen = BinauralFlowGenerator(net)
    gen.prepare(params or {})
    return gen


def _build(params: dict):
    def build(ws: Workspace) -> Generator:
        return tiny_generator(params)

    return build


def cases() -> list[Case]:
    common = {"feed": MediaKind.AUDIO, "sample_rate": 48_000, "channels": 1, "chunk": 480}
    return [
        Case("binauralflow-audio", "binauralflow", _build({}), long_frames=120, **common),
        # a source on the left, a short schedule without early skip (nfe == steps)
        Case(
            "binauralflow-left-nfe4",
            "binauralflow",
            _build({"source_position": "0,1.5,0", "nfe": 4, "steps": 4}),
            long_frames=100,
            **common,
        ),
    ]
