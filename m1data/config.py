"""Typed configs from YAML: dataclasses built from plain dicts, with unknown keys as errors.

Hand-written rather than a dependency: the configs are a few flat dataclasses, and the two
things that matter, rejecting a misspelt key instead of silently ignoring it and a value of the
wrong type (`threshold: "high"`) at load time, naming the file and the key, are easy to see here.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from m1data.errors import UserError
from m1data.redact import redact_environment

T = TypeVar("T")


class ConfigError(UserError):
    """A config that cannot be built: bad input like any other (code that catches UserError or
    ValueError catches it), with the file and key it came from in its message."""


def _build(tp: Any, value: Any, where: str) -> Any:
    """`value` as type `tp`, checked: a YAML value of the wrong type (`threshold: "high"`) is a
    ConfigError naming the file and key here, not a TypeError deep inside a stage later."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _build(inner[0], value, where)
        shaped = [a for a in inner if _shape(a) == _shape(value)]
        if len(shaped) == 1:  # one option of the value's shape: its own, precise error
            return _build(shaped[0], value, where)
        for option in shaped or inner:  # the first type the value fits
            try:
                return _build(option, value, where)
            except ConfigError:
                continue
        raise _wrong(where, " or ".join(_describe(a) for a in inner), value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{_at(where)}: must be one of {', '.join(map(repr, args))}, got {_shown(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and hasattr(tp, "parse"):  # its text form, e.g. an eval entry "NAME=FILE"
            return _with_where(where, tp.parse, value)
        if not isinstance(value, dict):
            raise _wrong(where, "a mapping", value)
        return from_dict(tp, value, where)
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, "a list", value)
        item = args[0] if args else Any
        built = [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(built) if origin is tuple else built
    if origin in (dict, typing.Mapping, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a mapping", value)
        item = args[1] if len(args) == 2 else Any
        return {k: _build(item, v, key_path(where, k)) for k, v in value.items()}
    return _scalar(tp, value, where)


def _with_where(where: str, build: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`build(...)`, with a problem it finds in the value (a UserError) reported at `where`."""
    try:
        return build(*args, **kwargs)
    except ConfigError:
        raise
    except UserError as err:
        raise ConfigError(f"{_at(where)}: {err}") from None


def file_root(path: str | Path) -> str:
    """The `where` of a config file's top level: keys below it read `FILE:key.subkey`."""
    return f"{path}:"


def key_path(where: str, key: Any) -> str:
    """The `where` of `key` inside `where` (`FILE:a` -> `FILE:a.key`)."""
    return f"{where}{key}" if where.endswith(":") else f"{where}.{key}"


def _at(where: str) -> str:
    """`where` as a message's subject (a file's top level is the file itself)."""
    return where.removesuffix(":")


def _scalar(tp: Any, value: Any, where: str) -> Any:
    """Numbers, strings, flags and paths; any other type is taken as given."""
    if tp is bool:
        if not isinstance(value, bool):
            raise _wrong(where, "true or false", value)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(where, "a whole number", value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong(where, "a number", value)
    elif tp is str:
        if not isinstance(value, str):
            raise _wrong(where, "a string", value)
    elif tp is Path:
        if not isinstance(value, (str, Path)):
            raise _wrong(where, "a path", value)
        return Path(value)
    return value


def _shape(tp_or_value: Any) -> str:
    """"mapping", "list" or "scalar": of a type, or of a YAML value."""
    if isinstance(tp_or_value, dict) or dataclasses.is_dataclass(tp_or_value) or tp_or_value is dict:
        return "mapping"
    if isinstance(tp_or_value, (list, tuple)):
        return "list"
    origin = typing.get_origin(tp_or_value)
    if origin in (dict, typing.Mapping, collections.abc.Mapping):
        return "mapping"
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
        return "list"
    return "scalar"


def _describe(tp: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", Path: "a path"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "a mapping"
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    return getattr(tp, "__name__", str(tp))


def _shown(value: Any) -> str:
    """How a message quotes a value or key of the user's file: its repr, with whatever looks like
    a key or holds the value of a key variable masked (m1data.redact.redact_environment). Why: the
    mistakes that make a config error are the ones that put a key in the wrong place (a key pasted
    under `max_tokens:`, `{api_key_env:sk-...}` without its space, which YAML reads as one key),
    and the message goes to the terminal and into CI logs."""
    return redact_environment(repr(value))


def _shown_key(key: Any) -> str:
    """A key of the user's file as a message names it: as written, masked as `_shown` masks."""
    return redact_environment(str(key))


def _wrong(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{_at(where)}: expected {expected}, got {_shown(value)} ({type(value).__name__})")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`; nested dataclasses, lists and dicts of them included."""
    if not isinstance(data, dict):  # a str's characters were read as its keys ("unknown key(s) a, r, y")
        raise ConfigError(f"{_at(where)}: expected a mapping of {cls.__name__}'s settings, got {type(data).__name__} "
                          f"{data!r:.60}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{_at(where)}: unknown key(s) {', '.join(map(_shown_key, unknown))}; known: {', '.join(sorted(names))}"
                          + _moved_hint(hints, names, unknown))
    return _with_where(where, cls, **{k: _build(hints[k], v, key_path(where, k)) for k, v in data.items()})


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
    place m1data reads a config file. A syntax error is one ConfigError naming the file, line and
    column."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    except IsADirectoryError:  # an OSError, else taken for a bug
        raise ConfigError(f"{path}: is a folder; a config is a YAML file") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None) -> T:
    """The defaults of `cls`, overridden by the YAML file at `path` if given."""
    if path is None:
        return cls()
    return from_dict(cls, read_mapping(path), where=file_root(path))


__all__ = [
    "ConfigError",
    "file_root",
    "from_dict",
    "key_path",
    "load_config",
    "read_mapping",
]
