"""Frozen config dataclasses: merge flag/YAML overrides into them, type-checked, with one-line errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .._errors import ConfigError

C = TypeVar("C")


def read_yaml(yaml_file: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (``safe_load``: plain data only).

    Raises:
        ConfigError: an unreadable file or one that is not a mapping.
    """
    import yaml

    try:
        loaded = yaml.safe_load(Path(yaml_file).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {yaml_file}: {e}", "pass a readable YAML mapping") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {yaml_file} is not a mapping", "write key: value lines")
    return loaded


def merge_config(config: C, overrides: dict[str, Any] | None = None, *, yaml_file: str | Path | None = None) -> C:
    """Return ``config`` with values from ``yaml_file`` then ``overrides`` (``None`` values ignored), type-checked.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    merged: dict[str, Any] = dict(read_yaml(yaml_file)) if yaml_file is not None else {}
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    clean: dict[str, Any] = {}
    for key, value in merged.items():
        k = key.replace("-", "_")
        if k not in fields:
            raise ConfigError(f"unknown option {key!r} for {type(config).__name__}",
                              f"use one of: {', '.join(sorted(fields))}")
        clean[k] = _coerce(k, value, hints[k], type(config).__name__)
    return dataclasses.replace(config, **clean)  # type: ignore[type-var]


def _coerce(name: str, value: Any, hint: Any, owner: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a, owner)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if errors else ConfigError(f"{owner}.{name} cannot be None", "give a value")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{owner}.{name}={value!r} is not allowed", f"use one of {', '.join(map(str, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{owner}.{name} must be a list, got {value!r}", "write it as [a, b, ...]")
        inner = args[0] if args else Any
        items = [v if inner is Any or inner is Ellipsis else _coerce(name, v, inner, owner) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is Any:
        return value
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{owner}.{name}={value!r} has the wrong type", f"expected {getattr(hint, '__name__', hint)}")
