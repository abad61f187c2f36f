"""Typed configs from YAML: dataclasses built from plain dicts, with unknown keys as errors.

Hand-written (30 lines) rather than a dependency: the configs are a few flat dataclasses, and
the one thing that matters, rejecting a misspelt key instead of silently ignoring it, is easy
to see here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from m1data.errors import M1DataError

T = TypeVar("T")


class ConfigError(M1DataError, ValueError):
    pass


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    if origin is list and isinstance(value, list):
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is dict and isinstance(value, dict):
        return {k: _build(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`; nested dataclasses, lists and dicts of them included."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
                          + _moved_hint(hints, names, unknown))
    return cls(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _moved_hint(hints: dict[str, Any], names: set[str], unknown: list[str]) -> str:
    """Where misplaced keys belong when a nested block has them (`concurrency` is a key of an LLM
    stage's `runtime:` block): a config written for an older layout says what to move."""
    moves = []
    for key in unknown:
        for name in sorted(names):
            tp = hints[name]
            if dataclasses.is_dataclass(tp) and key in {f.name for f in dataclasses.fields(tp)}:
                moves.append(f"{key} -> {name}.{key}")
    return f" (these belong in a nested block: {', '.join(moves)})" if moves else ""


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The YAML file at `path`, which must hold a mapping (an empty file is an empty one): the one
    place m1data reads a config file."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None) -> T:
    """The defaults of `cls`, overridden by the YAML file at `path` if given."""
    if path is None:
        return cls()
    return from_dict(cls, read_mapping(path), where=str(path))


__all__ = [
    "ConfigError",
    "from_dict",
    "load_config",
    "read_mapping",
]
