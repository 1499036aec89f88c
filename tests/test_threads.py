"""CPU threads: NETINV_THREADS, and the auto rule (1 thread only when the machine is already fully busy)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from netinv import ConfigError
from netinv._utils.device import cpu_threads


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_explicit_count_and_bad_value(restore_threads):
    assert cpu_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="not a thread count"):
        cpu_threads("many")
    with pytest.raises(ConfigError, match="not a thread count"):
        cpu_threads(0)


@pytest.mark.parametrize(("cores", "busy", "expected"), [(2, 0.1, 2), (2, 0.8, 1), (2, 1.9, 1), (16, 1.0, 15),
                                                         (16, 0.0, 16)])
def test_auto_leaves_the_busy_cores_alone(restore_threads, monkeypatch, cores, busy, expected):
    from netinv._utils import device

    torch.set_num_threads(cores)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(device, "busy_cores", lambda: busy)
    assert cpu_threads("auto") == expected


def test_busy_cores_sees_a_busy_process():
    from netinv._utils.device import busy_cores

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert busy_cores(0.3) > 0.7
    finally:
        spin.kill()


def test_cli_reads_netinv_threads():
    env = {**os.environ, "NETINV_THREADS": "nope"}
    res = subprocess.run([sys.executable, "-m", "netinv", "data", "list"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: NETINV_THREADS='nope' is not a thread count")


def test_progress_for_a_log_is_a_plain_line_every_tenth(monkeypatch, capsys):
    """With NETINV_PROGRESS=1 and stderr not a terminal (CI logs), rich drew only the final bar, at exit."""
    from netinv._utils.progress import progress_bar

    monkeypatch.setenv("NETINV_PROGRESS", "1")
    with progress_bar(50, "kkt") as bar:
        for i in range(50):
            bar.update(1, loss=1.0 / (i + 1))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 10 and lines[0].startswith("kkt 5/50 (10%) ") and lines[0].endswith("loss=0.2")
    assert lines[-1].startswith("kkt 50/50 (100%)") and lines[-1].endswith("loss=0.02")
    monkeypatch.setenv("NETINV_PROGRESS", "0")
    with progress_bar(50, "kkt") as bar:
        bar.update(50, loss=1.0)
    assert capsys.readouterr().err == ""


_FAULTS = r"""
import resource, sys, torch
from netinv._utils.device import keep_freed_memory
print(keep_freed_memory(sys.argv[1]))
for _ in range(3):  # 64 MiB: above glibc's largest default mmap threshold (32 MiB); the heap grows once here
    torch.ones(16 * 2**20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 * 2**20).sum()  # allocated, touched and freed again, as a loop's per-step tensors are
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_per_step_page_faults():
    """NETINV_MALLOC=keep (the CLI's default) reuses a freed 64 MiB block; glibc's default unmaps it and faults all
    16 384 pages back in on every allocation (benchmarks/malloc.py: TLDR 10.6 s → 5.8 s)."""
    from netinv._utils.device import keep_freed_memory

    faults = {}
    for mode in ("system", "keep"):
        r = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=120)
        applied, n = r.stdout.split()
        assert applied == str(mode == "keep"), r.stderr
        faults[mode] = int(n)
    assert faults["system"] > 5 * 10_000 and faults["keep"] < 1_000, faults
    with pytest.raises(ConfigError, match="NETINV_MALLOC='lots'"):
        keep_freed_memory("lots")
