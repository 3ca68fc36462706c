"""Build a ready-to-stream generator by name: load, wrap with runtime features, prepare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamrt import registry
from streamrt.generator import Generator
from streamrt.similarity import SimilarityFilter, SimilarityFilteredGenerator


def open_generator(
    name: str,
    *,
    model: str | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Generator:
    """Load generator ``name`` and prepare it with ``params`` (validated first, so a typo fails before loading).

    Generators that declare an ``ssf`` parameter get the runtime's similarity filter in front of them.
    """
    cls = registry.get(name)
    cls.spec.params.resolve(params)  # fail fast on unknown or bad parameters, before weights load
    gen = with_runtime_features(cls.load(model=model, checkpoint=checkpoint, device=device, dtype=dtype))
    gen.prepare(params)
    return gen


def with_runtime_features(gen: Generator) -> Generator:
    """Wrap a loaded generator with the runtime's features it opted into (SSF when it declares ``ssf``)."""
    if "ssf" in gen.spec.params and not isinstance(gen, SimilarityFilteredGenerator):
        return SimilarityFilteredGenerator(gen, SimilarityFilter())
    return gen
