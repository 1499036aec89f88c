"""Reproducibility: one call seeds Python, NumPy and torch."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed ``random``, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cuda_rng_state(device: torch.device) -> torch.Tensor | None:
    """The state of ``device``'s CUDA generator (None off CUDA): what a resumable state saves beside the CPU's, so a
    resumed run draws the dropout masks the uninterrupted run drew."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_cuda_rng_state(state: torch.Tensor | list | tuple | None, device: torch.device) -> None:
    """Restore what :func:`cuda_rng_state` saved; nothing off CUDA or for ``None``. A list (every visible GPU's state,
    as older states hold) gives the device's own entry, when it has one."""
    if state is None or device.type != "cuda":
        return
    if isinstance(state, list | tuple):
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= len(state):
            return
        state = state[index]
    torch.cuda.set_rng_state(state, device)
