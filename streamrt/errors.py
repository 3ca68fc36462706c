"""Errors meant for people: each message names the problem and, where there is one, the fix.

Library code raises these; only the command line turns them into exit codes (one line on stderr, no traceback),
and the server turns them into HTTP statuses or session error events.
"""

from __future__ import annotations


class StreamrtError(Exception):
    """Base of every error streamrt reports to a user."""


class ParamError(StreamrtError, ValueError):
    """An unknown parameter, a value of the wrong type or out of range, or a non-live parameter changed live."""


class InputError(StreamrtError, ValueError):
    """Input media the generator cannot take: wrong size, sample rate, channels, kind or a corrupt file."""


class UnknownPipelineError(StreamrtError, KeyError):
    """No generator is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(StreamrtError):
    """Weights or a model folder could not be loaded."""


class MissingDependencyError(StreamrtError, ImportError):
    """An optional dependency is not installed; the message carries the pip command."""


def require(module: str, extra: str):
    """Import an optional dependency or fail with the install hint (``pip install 'streamrt[extra]'``)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'streamrt[{extra}]'"
        ) from exc
