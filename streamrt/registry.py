"""Generators are found by name through the entry-point group ``streamrt.pipelines``.

A third-party package adds one with, in its pyproject.toml::

    [project.entry-points."streamrt.pipelines"]
    mygen = "mypkg.module:MyGenerator"

The built-in generators are also listed here so that a source checkout that was never pip-installed still finds them.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from streamrt.errors import UnknownPipelineError
from streamrt.generator import Generator

log = logging.getLogger(__name__)

GROUP = "streamrt.pipelines"

_BUILTIN = {
    "passthrough": "streamrt.passthrough:PassthroughGenerator",
    "streamdiffusion": "pipelines.streamdiffusion:StreamDiffusionGenerator",
    "ap-bwe": "pipelines.ap_bwe:APBWEGenerator",
    "binauralflow": "pipelines.binauralflow:BinauralFlowGenerator",
    "streamdit": "pipelines.streamdit:StreamDiTGenerator",
    "rolling-forcing": "pipelines.rolling_forcing:RollingForcingGenerator",
    "streamingt2v": "pipelines.streamingt2v:StreamingT2VGenerator",
    "rain": "pipelines.rain:RainGenerator",
    "evanimate": "pipelines.evanimate:EvAnimateGenerator",
    "xstreamer": "pipelines.xstreamer:XStreamerGenerator",
}


def _targets() -> dict[str, str]:
    targets = dict(_BUILTIN)
    for ep in entry_points(group=GROUP):
        targets[ep.name] = ep.value
    return targets


def available() -> list[str]:
    """Names of every registered generator, sorted."""
    return sorted(_targets())


def get(name: str) -> type[Generator]:
    """The generator class registered under ``name``."""
    targets = _targets()
    if name not in targets:
        raise UnknownPipelineError(f"unknown pipeline {name!r}; available: {', '.join(sorted(targets))}")
    module_name, _, attr = targets[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"entry point {name!r} ({targets[name]}) is not a streamrt Generator subclass")
    return cls
