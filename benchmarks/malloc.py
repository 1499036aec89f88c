"""Benchmark: glibc's allocator and netinv's per-step tensors (why the CLI sets NETINV_MALLOC=keep).

glibc serves blocks above its mmap threshold (at most 32 MiB by default) with fresh mmaps and unmaps them on free,
so a loop that allocates tens of MB every step faults the pages back in each time. This runs the same CLI commands
in fresh processes with NETINV_MALLOC=system (glibc's defaults) and NETINV_MALLOC=keep (thresholds raised to 2 GiB)
on a bias-free MLP 64-512-512-1 trained on digits parity (295 k parameters), and reports wall, user and system time
and the peak resident memory of each. Prints a table and appends it to benchmarks/RESULTS.md.

Usage: python benchmarks/malloc.py [--no-append]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kkt_digits import publish, section_header  # noqa: E402

NETINV = [sys.executable, "-m", "netinv"]
COMMANDS = {  # name -> arguments after the model (each run writes into its own folder)
    "reconstruct tldr, 40 steps": ["reconstruct", "tldr", "{model}", "--steps", "40"],
    "reconstruct tldr, 40 steps, --grad-mode batch": ["reconstruct", "tldr", "{model}", "--steps", "40",
                                                      "--grad-mode", "batch"],
    "invert (generator), 100 steps": ["invert", "{model}", "--steps", "100"],
    "reconstruct kkt, 200 iterations": ["reconstruct", "kkt", "{model}", "--iterations", "200"],
}


def run(args: list[str], malloc: str) -> tuple[float, float, float, float]:
    """Wall, user and system seconds and peak RSS (MiB) of one CLI run in a fresh process (its own rusage)."""
    env = {**os.environ, "NETINV_MALLOC": malloc, "NETINV_THREADS": os.environ.get("NETINV_THREADS", "1")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*NETINV, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit {proc.returncode}")
    return wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    t_all, load0 = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "victim"
        subprocess.run([*NETINV, "train", "--task", "parity", "--n-per-class", "50", "--arch", "mlp:512,512",
                        "--bias", "none", "--init-scale", "0.1", "--lr", "1", "--epochs", "2000", "--out", str(model)],
                       check=True, capture_output=True)
        rows = ["| command | NETINV_MALLOC | wall s | user s | system s | peak RSS MiB |",
                "|---|---|---|---|---|---|"]
        for name, cmd in COMMANDS.items():
            for malloc in ("system", "keep"):
                out = Path(tmp) / f"{len(rows)}"
                argv = [a.format(model=model) for a in cmd] + ["--out", str(out)]
                wall, user, sys_s, rss = run(argv, malloc)
                rows.append(f"| {name} | {malloc} | {wall:.1f} | {user:.1f} | {sys_s:.1f} | {rss:.0f} |")
                print(rows[-1], flush=True)
    text = (section_header("glibc's allocator and per-step tensors (benchmarks/malloc.py)", load0, t_all)
            + " Victim: bias-free MLP 64-512-512-1, digits parity, 100 members; each command in a fresh process, "
              f"NETINV_THREADS={os.environ.get('NETINV_THREADS', '1')}. Peak RSS: the run's own ru_maxrss.\n\n"
            + "\n".join(rows) + "\n")
    publish(text, append=not args.no_append)


if __name__ == "__main__":
    main()
