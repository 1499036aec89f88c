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
