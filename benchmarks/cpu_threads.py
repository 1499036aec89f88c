"""Benchmark: torch CPU threads on a small machine, idle and with a competing job (why NETINV_THREADS=auto exists).

KKT iterations per second on two models — the reference digits MLP 64-1000-1000-1 (m = 200, matmul-bound) and a
small bias-free CNN (m = 100, many small ops) — each in a fresh process with: torch's default threads, 1 thread,
the default threads with OMP_WAIT_POLICY=PASSIVE, and the CLI's rule (netinv._utils.device.cpu_threads("auto"));
once on the machine as it is and once while a competing
process keeps one core busy (a 1-thread matmul loop). Prints a table and appends it to benchmarks/RESULTS.md.

Usage: python benchmarks/cpu_threads.py
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CHILD = r"""
import os, sys, warnings, torch
warnings.filterwarnings("ignore")
if os.environ.get("BENCH_T1"):
    torch.set_num_threads(1)
if os.environ.get("BENCH_AUTO"):
    from netinv._utils.device import cpu_threads
    cpu_threads("auto")  # what the netinv CLI does (NETINV_THREADS=auto)
from torch import nn
from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.models.loaded import LoadedModel
torch.manual_seed(0)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 1000, bias=False), nn.ReLU(), nn.Linear(1000, 1000, bias=False),
                    nn.ReLU(), nn.Linear(1000, 1, bias=False)).eval()
cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                    nn.Linear(16 * 64, 10, bias=False)).eval()
out = []
for model, k, m in ((mlp, 1, 200), (cnn, 10, 100)):
    lm = LoadedModel(model, (1, 8, 8), k)
    KKTReconstruction(lm, KKTConfig(iterations=3, show_progress=False)).invert(m)
    c = KKTReconstruction(lm, KKTConfig(iterations=40, show_progress=False)).invert(m)
    out.append(c.info["iterations_per_s"])
print(torch.get_num_threads(), *out)
"""
BUSY = "import torch; torch.set_num_threads(1); a = torch.randn(512, 512)\nwhile True: a @ a"


def run(env_extra: dict[str, str]) -> tuple[int, float, float]:
    env = {**os.environ, "NETINV_PROGRESS": "0", **env_extra}
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
    threads, mlp, cnn = res.stdout.split()
    return int(threads), float(mlp), float(cnn)


def main() -> None:
    settings = [("torch default", {}), ("1 thread", {"BENCH_T1": "1"}),
                ("default + OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
                ("netinv CLI default (NETINV_THREADS=auto)", {"BENCH_AUTO": "1"})]
    rows = []
    load0 = os.getloadavg()[0]
    for machine in ("as is", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if machine != "as is" else None
        try:
            if busy is not None:
                time.sleep(1.0)  # let it take its core
            for name, env in settings:
                threads, mlp, cnn = run(env)
                rows.append(f"| {machine} | {name} | {threads} | {mlp:.1f} | {cnn:.1f} |")
                print(rows[-1], flush=True)
        finally:
            if busy is not None:
                busy.kill()
    text = (f"\n## CPU threads (benchmarks/cpu_threads.py)\n\n{dt.datetime.now().isoformat(timespec='seconds')}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load0:.1f} at start. KKT it/s, 40 "
            f"iterations after a 3-iteration warm-up, fresh process per row.\n\n"
            "| machine | threads setting | threads | MLP 64-1000-1000-1, m = 200 | CNN 16 ch., m = 100 |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(text)
    with open(ROOT / "RESULTS.md", "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
