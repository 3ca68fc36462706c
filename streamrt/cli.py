"""The ``streamrt`` command line: a thin dispatcher over subcommands that live in their own modules.

Each subcommand module has a ``register(subparsers)`` function that adds its parser and sets ``handler``: a function
``(args) -> str | Iterable[str] | None`` whose result is printed line by line. To add a subcommand (bench, train,
serve), write that function and list it in ``_REGISTRARS``.

This is the only place that prints to the terminal for the library or turns errors into exit codes: a
``StreamrtError`` (or an unreadable file) becomes one line ``streamrt: error: ...`` on stderr and exit status 2,
an interrupt exits with 130. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streamrt.errors import StreamrtError

log = logging.getLogger(__name__)

EXIT_ERROR = 2  # the same status argparse uses for usage errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

Handler = Callable[[argparse.Namespace], "str | Iterable[str] | None"]


def _register_render(subparsers: Any) -> None:
    from streamrt.render import register

    register(subparsers)


def _register_pipelines(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pipelines", help="list the registered pipelines, their inputs, outputs and parameters"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of the pipelines' specs")
    p.set_defaults(handler=_pipelines)


def _register_train(subparsers: Any) -> None:
    from streamrt.training import register

    register(subparsers)


def _register_bench(subparsers: Any) -> None:
    from streamrt.bench import register

    register(subparsers)


def _register_serve(subparsers: Any) -> None:
    from transport.server import register

    register(subparsers)


# Subcommands in the order `streamrt --help` lists them.
_REGISTRARS: list[Callable[[Any], None]] = [
    _register_render,
    _register_pipelines,
    _register_train,
    _register_bench,
    _register_serve,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrt",
        description="Real-time streaming media generation: render, benchmark and serve generators.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: argparse has printed its message
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    _configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        _emit(handler(args))
    except BrokenPipeError:  # `streamrt pipelines | head`: the reader left, which is not an error
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        _error("interrupted; no output written")
        return EXIT_INTERRUPTED
    except StreamrtError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except OSError as exc:  # unreadable/unwritable files, and the av errors that are OSErrors
        _error(_os_message(exc))
        return EXIT_ERROR
    except Exception as exc:
        if _is_av_error(exc):
            _error(str(exc))
            return EXIT_ERROR
        raise
    return 0


def _emit(result: str | Iterable[str] | None) -> None:
    if result is None:
        return
    lines = [result] if isinstance(result, str) else result
    for line in lines:
        print(line, flush=True)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _error(message: str) -> None:
    # One line, whatever the message holds: scripts and people read the first line only.
    text = " ".join(message.split()) or "unknown error"
    print(f"streamrt: error: {text}", file=sys.stderr, flush=True)


def _os_message(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)


def _is_av_error(exc: BaseException) -> bool:
    av = sys.modules.get("av")  # never import av just to classify an error
    return av is not None and isinstance(exc, av.FFmpegError)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="streamrt: %(levelname)s: %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose == 0:
        _quiet_model_libraries()


def _quiet_model_libraries() -> None:
    """diffusers/transformers print weight-loading bars and config notes on stderr; users see only ours."""
    for name in ("diffusers", "transformers"):
        try:
            lib_logging = __import__(f"{name}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        lib_logging.set_verbosity_error()
        lib_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------------- pipelines
def _pipelines(args: argparse.Namespace) -> list[str]:
    from streamrt import registry

    specs: list[dict[str, Any]] = []
    for name in registry.available():
        try:
            specs.append(registry.get(name).spec.describe())
        except Exception as exc:  # noqa: BLE001 - one broken plug-in must not hide the others
            log.debug("cannot load pipeline %s", name, exc_info=True)
            specs.append({"name": name, "error": f"cannot load: {' '.join(str(exc).split())}"})
    if args.json:
        return [json.dumps(specs, indent=2, default=str)]
    return [line for spec in specs for line in _describe(spec)]


def _describe(spec: dict[str, Any]) -> list[str]:
    if "error" in spec:
        return [f"{spec['name']}: {spec['error']}", ""]
    inputs = ", ".join(spec["inputs"]) or "nothing"
    if spec["inputs"] and spec.get("input_optional"):
        inputs += " (optional)"
    outputs = ", ".join(spec["outputs"]) or "nothing"
    lines = [f"{spec['name']}: {spec['description']}", f"  inputs: {inputs}", f"  outputs: {outputs}"]
    props = spec["params"].get("properties", {})
    if not props:
        lines.append("  parameters: none")
    else:
        lines.append("  parameters:")
        for name, schema in props.items():
            lines.append(
                f"    {name} ({_type_name(schema)}, default {schema.get('default')!r}"
                f"{', live' if schema.get('x-live') else ''}): {schema.get('description', '')}".rstrip()
            )
    lines.append("")
    return lines


def _type_name(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_name(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "|".join(map(str, schema["enum"]))
    if schema.get("type") == "array":
        return f"list of {schema['items']['type']}"
    return str(schema.get("type", "?"))


if __name__ == "__main__":
    sys.exit(main())
