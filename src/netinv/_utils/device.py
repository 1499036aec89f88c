"""Device selection: ``auto`` takes a GPU when one is present."""

from __future__ import annotations

import torch

from .._errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:i]`` to a device; CUDA asked for without one is an error, not a silent CPU run."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but no CUDA GPU is available", "use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}", "use auto, cpu or cuda[:N]")
