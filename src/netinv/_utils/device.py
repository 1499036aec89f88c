"""Device selection: ``auto`` takes a GPU when one is present."""

from __future__ import annotations

import math
import os
import sys
import time

import torch

from .._errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:i]`` to a device; CUDA asked for without one is an error, not a silent CPU run."""
    name = str(device).lower()  # a torch.device is checked as its name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but no CUDA GPU is available", "use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}", "use auto, cpu or cuda[:N]")


def busy_cores(window_s: float = 0.1) -> float:
    """How many cores other work keeps busy right now: /proc/stat sampled ``window_s`` apart (Linux), else the
    1-minute load average."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait

    cores = os.cpu_count() or 1
    try:
        t0, i0 = sample()
        time.sleep(window_s)
        t1, i1 = sample()
        return cores * (1.0 - (i1 - i0) / max(t1 - t0, 1))
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def cpu_threads(setting: str | int | None = None) -> int:
    """Set and return torch's CPU threads. ``setting`` (default: the ``NETINV_THREADS`` environment variable, else
    ``auto``): a positive integer, or ``auto`` = torch's default capped at the cores other work leaves free
    (:func:`busy_cores`; at least 1). Measured on the 2-core machine (benchmarks/cpu_threads.py): with one core busy,
    torch's 2 threads spin-wait on each other and ran 1.7–3.7× slower than 1 thread (two runs, MLP and small CNN);
    idle, 2 threads were up to 1.9× faster — so ``auto`` gives up a thread only to work that is really there."""
    value = str(setting if setting is not None else os.environ.get("NETINV_THREADS", "auto")).strip().lower()
    if value == "auto":
        cores = os.cpu_count() or 1
        free = math.floor(cores - busy_cores() + 0.3)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), free)))
        return torch.get_num_threads()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"NETINV_THREADS={value!r} is not a thread count", "use a positive integer or auto")
    torch.set_num_threads(n)
    return n


def keep_freed_memory(setting: str | None = None) -> bool:
    """Ask glibc's allocator to keep freed memory for reuse (the CLI calls this; a library leaves the process's
    allocator alone). By default glibc serves blocks above 32 MiB with fresh mmaps and returns them on free, so a
    loop that allocates tens of MB of tensors every step (TLDR's per-sample parameter gradients) page-faults them back
    in each time: a 295 k-parameter MLP spent 5.5 of 10.6 s of 40 TLDR steps in the kernel (benchmarks/malloc.py).
    ``setting`` (default: ``NETINV_MALLOC``, else ``keep``): ``keep`` raises the mmap and trim thresholds to 2 GiB
    (the process keeps its peak memory until it exits); ``system`` leaves them. Returns whether they were raised
    (False off glibc)."""
    value = (setting or os.environ.get("NETINV_MALLOC", "keep")).strip().lower()
    if value not in ("keep", "system"):
        raise ConfigError(f"NETINV_MALLOC={value!r}", "use keep (the default) or system")
    if value == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold, limit = -1, -3, 2**31 - 1
        return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
