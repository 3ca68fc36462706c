"""Typed generator parameters: declared once, validated everywhere (CLI ``--set``, HTTP JSON, data channel).

A ``Param`` knows its type, default, range and whether it may change while a stream runs. ``ParamSet`` validates a
mapping of raw values (strings from the command line or JSON values) against the declarations and produces a
JSON schema that drives the web page's controls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamrt.errors import ParamError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


@dataclass(frozen=True)
class Param:
    """One parameter of a generator.

    ``type`` is int, float, str, bool or list (then ``item_type`` says of what). ``live`` parameters may change while
    the stream runs; the others only at ``prepare``. ``default=None`` with ``optional=True`` means "derived"
    (e.g. a size taken from the first input frame).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    live: bool = True
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    item_type: type = int
    optional: bool = False
    # The value names a file or folder on the machine that runs the generator. A server takes such values from a
    # client only inside the directories its operator allows (``streamrt serve --media-root``).
    path: bool = False

    def coerce(self, value: Any) -> Any:
        """Convert a raw value (string or JSON) to the declared type, or raise ``ParamError`` naming the fix."""
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"parameter {self.name!r} needs a value ({self.describe_type()})")
        try:
            out = self._convert(value)
        except (TypeError, ValueError) as exc:
            raise ParamError(
                f"parameter {self.name!r} expects {self.describe_type()}, got {value!r}"
            ) from exc
        self._check_range(out)
        return out

    def _convert(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if self.type is list:
            if isinstance(value, str):
                text = value.strip()
                items: Iterable[Any] = (
                    json.loads(text) if text.startswith("[") else [x for x in text.split(",") if x.strip()]
                )
            else:
                items = value
            return [self._item(x) for x in items]
        if self.type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip())
        if self.type is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        raise TypeError(f"unsupported parameter type {self.type}")

    def _item(self, x: Any) -> Any:
        if self.item_type is int and isinstance(x, str):
            return int(x.strip())
        if self.item_type is int and (isinstance(x, bool) or (isinstance(x, float) and not x.is_integer())):
            raise ValueError(x)
        return self.item_type(x)

    def _check_range(self, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ParamError(f"parameter {self.name!r} must be a finite number; got {v!r}")
            if self.choices is not None and v not in self.choices:
                raise ParamError(
                    f"parameter {self.name!r} must be one of {', '.join(map(str, self.choices))}; got {v!r}"
                )
            if self.minimum is not None and isinstance(v, int | float) and v < self.minimum:
                raise ParamError(f"parameter {self.name!r} must be >= {self.minimum}; got {v!r}")
            if self.maximum is not None and isinstance(v, int | float) and v > self.maximum:
                raise ParamError(f"parameter {self.name!r} must be <= {self.maximum}; got {v!r}")
            if self.maximum is not None and isinstance(v, str) and len(v) > self.maximum:
                # for text, ``maximum`` bounds the length (a live text box must not take unbounded input)
                raise ParamError(
                    f"parameter {self.name!r} takes at most {int(self.maximum)} characters; got {len(v)}"
                )

    def describe_type(self) -> str:
        if self.type is list:
            return f"a comma-separated list of {self.item_type.__name__}"
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return {int: "an integer", float: "a number", str: "text", bool: "true or false"}[self.type]

    def json_schema(self) -> dict[str, Any]:
        if self.type is list:
            schema: dict[str, Any] = {"type": "array", "items": {"type": _JSON_TYPES[self.item_type]}}
        else:
            schema = {"type": _JSON_TYPES[self.type]}
        if self.optional:
            schema = {"anyOf": [schema, {"type": "null"}]}
        schema.update({"default": self.default, "description": self.help, "x-live": self.live})
        if self.path:
            schema["x-server-path"] = True
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maxLength" if self.type is str else "maximum"] = (
                int(self.maximum) if self.type is str else self.maximum
            )
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        return schema


@dataclass(frozen=True)
class ParamSet:
    """The declared parameters of one generator."""

    params: tuple[Param, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate parameter names in {names}")

    def __iter__(self):
        return iter(self.params)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def get(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ParamError(f"unknown parameter {name!r}; known parameters: {known}")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, raw: Mapping[str, Any], *, live_only: bool = False) -> dict[str, Any]:
        """Coerce every value; unknown names and (with ``live_only``) non-live names raise ``ParamError``."""
        out: dict[str, Any] = {}
        for name, value in raw.items():
            param = self.get(name)
            if live_only and not param.live:
                raise ParamError(
                    f"parameter {name!r} cannot change during a stream; set it when the session starts"
                )
            out[name] = param.coerce(value)
        return out

    def resolve(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with validated ``raw``."""
        values = self.defaults()
        values.update(self.validate(raw or {}))
        return values

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {p.name: p.json_schema() for p in self.params},
        }


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "prompt=a cat"]`` -> ``{"a": "1", "prompt": "a cat"}`` (values stay strings until validated)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out
