"""Reproducibility: one call seeds Python, NumPy and torch."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])


def seed_everything(seed: int) -> torch.Generator:
    """Seed ``random``, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def keeps_global_rng(fn: F) -> F:
    """Run ``fn`` (which seeds and draws from the global generators) and then put Python's, NumPy's and torch's
    global random states back as the caller had them: a notebook's own draws do not depend on netinv calls."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        py, nps, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        try:
            return fn(*args, **kwargs)
        finally:
            random.setstate(py)
            np.random.set_state(nps)
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)

    return wrapper  # type: ignore[return-value]


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
