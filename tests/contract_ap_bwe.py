"""Contract cases of the ``ap-bwe`` generator: a tiny random AP-BWE (8 blocks, so the receptive field and the declared
latency are the published ones; 16 channels, so it is fast), seeded so that two builds are the same model; mono
16 kHz input in 10 ms chunks."""

from __future__ import annotations

import torch
from contract import Case, Workspace

from pipelines.ap_bwe.generator import APBWEGenerator
from pipelines.ap_bwe.model import APBWE, APBWEConfig
from streamrt.generator import Generator, MediaKind

TINY = APBWEConfig(channels=16, layers=8)


def tiny_generator(params: dict | None = None, config: APBWEConfig = TINY) -> APBWEGenerator:
    torch.manual_seed(0)
    gen = APBWEGenerator(APBWE(config))
    gen.prepare(params or {})
    return gen


def _build(params: dict):
    def build(ws: Workspace) -> Generator:
        return tiny_generator(params)

    return build


def cases() -> list[Case]:
    common = {"feed": MediaKind.AUDIO, "channels": 1}
    return [
        # 10 ms chunks at 16 kHz; the stream is long enough for outputs to leave before the end (latency 155 ms)
        Case(
            "ap-bwe-16k",
            "ap-bwe",
            _build({}),
            sample_rate=16_000,
            chunk=160,
            frames=48,
            long_frames=300,
            **common,
        ),
        # 48 kHz (the full-band models' rate), 20 ms chunks
        Case(
            "ap-bwe-48k",
            "ap-bwe",
            _build({"target_rate": 48_000}),
            sample_rate=48_000,
            chunk=960,
            frames=12,
            long_frames=200,
            **common,
        ),
    ]
