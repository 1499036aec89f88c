"""Evaluation and SAT-sample bookkeeping at user scale: time and peak memory of ``netinv.evaluate`` on CIFAR-sized
sets (32×32×3: 500 members, 1 000 non-members) and digits, against the SSIM chunk size, and of the pairwise Hamming
matrix of ``sat sample`` (products vs the K×K×D comparison it replaced).

Prints a table and appends it to benchmarks/RESULTS.md (not with --quick). Run:
``.venv/bin/python benchmarks/evaluate_scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netinv.metrics.evaluation as ev_mod  # noqa: E402
from kkt_digits import PeakRSS, publish, section_header  # noqa: E402
from netinv.data import Dataset, load_data, make_task  # noqa: E402
from netinv.sat.sampling import pairwise_hamming  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(min seconds, max peak MiB) over ``repeats`` runs."""
    times, peaks = [], []
    for _ in range(repeats):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        peaks.append(mem.mib)
    return min(times), max(peaks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one repeat, small sizes (smoke run, not for RESULTS)")
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    t_all, load0 = time.perf_counter(), __import__("os").getloadavg()[0]
    g = torch.Generator().manual_seed(0)
    n_tr, n_ho = (100, 200) if args.quick else (500, 1000)
    tr = Dataset(torch.rand(n_tr, 3, 32, 32, generator=g), torch.arange(n_tr) % 2, ["a", "b"], {})
    ho = Dataset(torch.rand(n_ho, 3, 32, 32, generator=g), torch.arange(n_ho) % 2, ["a", "b"], {})
    digits = make_task(load_data("digits"), "parity", n_per_class=50, seed=0)
    rows = []
    for m in ((200,) if args.quick else (1000, 5000)):
        cands = torch.rand(m, 3, 32, 32, generator=g)
        for chunk in (1024, 256):
            ev_mod._CHUNK = chunk
            s, mib = best_of(lambda c=cands: ev_mod.evaluate(c, tr, ho, seed=0), reps)
            rows.append((f"evaluate 32×32×3, {n_tr} + {n_ho} images, {m} candidates, SSIM chunk {chunk}", s, mib))
    ev_mod._CHUNK = 256
    dc = torch.rand(2000, 1, 8, 8, generator=g)
    s, mib = best_of(lambda: ev_mod.evaluate(dc, digits.train, digits.heldout, seed=0), reps)
    rows.append((f"evaluate 8×8 digits, {len(digits.train)} + {len(digits.heldout)} images, 2000 candidates", s, mib))
    k = 500 if args.quick else 2000
    bits = np.random.default_rng(0).random((k, 784)) < 0.5
    s, mib = best_of(lambda: pairwise_hamming(bits), reps)
    rows.append((f"sat sample Hamming matrix, {k} × 784 bits, products", s, mib))
    s, mib = best_of(lambda: (bits[:, None, :] != bits[None, :, :]).sum(2), 1)
    rows.append((f"sat sample Hamming matrix, {k} × 784 bits, K×K×D comparison (before)", s, mib))
    text = section_header("Evaluation and SAT bookkeeping at user scale (benchmarks/evaluate_scale.py)", load0, t_all)
    text += (f" Min time of {reps} runs (the comparison: 1 run), peak resident memory above the start; "
             "NETINV_THREADS / torch threads as the environment sets them.\n\n| what | s | peak MiB |\n|---|---|---|\n")
    text += "".join(f"| {w} | {s:.2f} | {mib:.0f} |\n" for w, s, mib in rows)
    publish(text, append=not args.quick)


if __name__ == "__main__":
    main()
