"""The identity generator: for tests, and as the latency baseline of the runtime itself."""

from __future__ import annotations

from fractions import Fraction

from streamrt.frames import DataFrame, VideoFrame
from streamrt.generator import Generator, GeneratorSpec, MediaKind


class PassthroughGenerator(Generator):
    spec = GeneratorSpec(
        name="passthrough",
        description="Identity: every input frame comes out unchanged (runtime baseline).",
        inputs=(MediaKind.VIDEO, MediaKind.AUDIO),
        outputs=(MediaKind.VIDEO, MediaKind.AUDIO),
        input_optional=True,
    )

    def process(self, frame: DataFrame) -> list[DataFrame]:
        return [frame]

    def generate(self, pts: int, time_base: Fraction) -> list[DataFrame]:
        # Without input there is nothing to pass through; emit black so `render passthrough --frames N` works.
        import torch

        return [VideoFrame(data=torch.zeros(256, 256, 3, dtype=torch.uint8), pts=pts, time_base=time_base)]
