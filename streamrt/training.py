"""`streamrt train PIPELINE`: each trainable pipeline's recipe, behind one subcommand.

A recipe module exposes ``add_arguments(parser)`` (whose defaults ARE the recipe that produced the committed
weights) and ``run(args) -> int``. CI runs each recipe with ``--quick`` (a few steps on tiny data); it never trains.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Pipeline name -> recipe module. Pipelines without a recipe here have no trainable default.
RECIPES: dict[str, str] = {
    "streamdiffusion": "pipelines.streamdiffusion.train",
    "ap-bwe": "pipelines.ap_bwe.train",
    "binauralflow": "pipelines.binauralflow.train",
    "streamdit": "pipelines.streamdit.train",
    "rolling-forcing": "pipelines.rolling_forcing.train",
    "streamingt2v": "pipelines.streamingt2v.train",
    "rain": "pipelines.rain.train",
    "evanimate": "pipelines.evanimate.train",
    "puppet-keypoints": "streamrt.puppet_keypoints",
    "xstreamer": "pipelines.xstreamer.train",
    "face-probe": "streamrt.face_probe",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a pipeline's embedded default model with its recipe")
    recipes = parser.add_subparsers(dest="recipe", metavar="PIPELINE", required=True)
    for name, module_name in RECIPES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # One recipe that cannot import (a missing optional dependency) must not take the whole CLI down.
            sub = recipes.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(handler=_unavailable(name, exc))
            continue
        sub = recipes.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(handler=_runner(module))


def _unavailable(name: str, exc: ImportError):
    def handler(args: argparse.Namespace) -> str:
        from streamrt.errors import MissingDependencyError

        raise MissingDependencyError(f"the {name} recipe cannot load: {exc}")

    return handler


def _runner(module: Any):
    def handler(args: argparse.Namespace) -> str:
        code = module.run(args)
        if code:
            from streamrt.errors import StreamrtError

            raise StreamrtError(f"training {args.recipe} failed (exit {code})")
        return f"trained {args.recipe}: model written to {args.out}"

    return handler
