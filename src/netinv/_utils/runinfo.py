"""run.json: what ran, with which settings and seed, on what machine, how fast."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from typing import Any

import torch


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """The software and hardware a result was produced on. ``cuda`` names the machine's GPU whether or not the run
    used it; ``device`` (recorded when given: the model's device) says where the run computed."""
    env = {
        "netinv": netinv_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if device is not None:
        env["device"] = str(device)
    return env


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config)


def netinv_version() -> str:
    """The installed netinv's version (``unknown`` from a source tree that was not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netinv")
    except PackageNotFoundError:
        return "unknown"
