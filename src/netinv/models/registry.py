"""Architecture strings -> spec dataclasses -> modules. A spec is plain data: it goes into a checkpoint's
meta.json and rebuilds the module with no pickle.

Each architecture module defines a frozen dataclass with ``kind`` (class attribute), ``from_string(args,
input_shape, num_outputs, **options)``, ``build() -> nn.Module`` and ``asdict()``; register it in ``ARCHS``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol

from torch import nn

from .._errors import ConfigError

#: kind -> "module:SpecClass" (imported lazily).
ARCHS: dict[str, str] = {
    "mlp": "netinv.models.mlp:MLPSpec",
    "cnn": "netinv.models.cnn:CNNSpec",
    "bnn": "netinv.models.bnn:BNNSpec",
}


class ArchSpec(Protocol):
    kind: str

    def build(self) -> nn.Module: ...


def _spec_class(kind: str) -> type:
    if kind not in ARCHS:
        raise ConfigError(f"unknown architecture {kind!r}", f"use one of: {', '.join(ARCHS)} (e.g. mlp:1000,1000)")
    mod, _, cls = ARCHS[kind].partition(":")
    return getattr(importlib.import_module(mod), cls)


def parse_arch(arch: str, input_shape: tuple[int, ...], num_outputs: int, **options: Any) -> Any:
    """Parse ``KIND[:ARGS]`` (e.g. ``mlp:1000,1000``, ``cnn:32,64``, ``bnn:100``) into a spec.

    ``options`` are architecture fields given separately (``bias="none"``, ``init_scale=1e-3`` …); ``None`` values
    are ignored so CLI defaults pass through.
    """
    kind, _, args = arch.partition(":")
    cls = _spec_class(kind.strip().lower())
    return cls.from_string(args.strip(), tuple(input_shape), int(num_outputs),
                           **{k: v for k, v in options.items() if v is not None})


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A spec as JSON-ready data with its ``kind``."""
    d = dataclasses.asdict(spec)
    return {"kind": spec.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}


def spec_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a spec from :func:`spec_to_dict` output."""
    d = dict(d)
    cls = _spec_class(d.pop("kind"))
    hints = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(hints)
    if unknown:
        raise ConfigError(f"checkpoint spec has unknown fields {sorted(unknown)}",
                          "use the netinv version that wrote it")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def check_fields(kind: str, options: dict[str, Any], allowed: set[str]) -> None:
    """One-line error for an option the architecture does not have."""
    bad = set(options) - allowed
    if bad:
        raise ConfigError(f"architecture {kind!r} has no option(s) {sorted(bad)}", f"use: {', '.join(sorted(allowed))}")


def parse_ints(kind: str, args: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """``"1000,1000"`` -> (1000, 1000); empty -> ``default``; anything else -> a ConfigError."""
    if not args:
        return default
    try:
        vals = tuple(int(a) for a in args.split(","))
    except ValueError:
        raise ConfigError(f"cannot read widths {args!r} of {kind}", f"write {kind}:W1,W2,... with integers") from None
    if any(v <= 0 for v in vals):
        raise ConfigError(f"widths of {kind} must be positive, got {args!r}", f"write {kind}:W1,W2,...")
    return vals
