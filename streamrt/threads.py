"""The intra-op thread count a generator asks for (``GeneratorSpec.cpu_threads``), applied around a CPU render."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from streamrt.generator import GeneratorSpec


@contextmanager
def preferred_cpu_threads(spec: GeneratorSpec, device: str) -> Iterator[None]:
    """Run the block with ``spec.cpu_threads`` torch threads on the CPU, unless OMP_NUM_THREADS chose a count (the
    user's choice wins) or the generator has no preference; the previous count is restored afterwards. Only for a
    process that runs one generator (``render``): the count is global to the process."""
    before = torch.get_num_threads()
    wanted = spec.cpu_threads
    if wanted is None or not device.startswith("cpu") or "OMP_NUM_THREADS" in os.environ or wanted >= before:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)
