"""Exact BNN inversion through CNF (issue 5): encoding sizes and query times on a digits BNN (64 binary inputs)
and on 784-input BNNs trained on digits upsampled to 28×28 (dense binary, and ternary for verifiability).

Per net and encoding: variables, clauses, encode time, inference agreement with PyTorch (must be 100%),
inversion time per class (solver only, and the default with cheap candidates first), samples per second, count
time (ApproxMC, one class), robustness-check time (radius 2, solver only). Appends the tables to
benchmarks/RESULTS.md. Run: ``.venv/bin/python benchmarks/sat_bnn.py [--quick]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from netinv.data import load_data, make_task
from netinv.data._dataset import Dataset
from netinv.sat import QueryConfig, Status, count, encode, infer, invert, robust, sample
from netinv.sat.cardinality import cardinality
from netinv.train import TrainConfig, train

ENCODINGS = ["totalizer", "seqcounter", "sortnet", "adder"]


def upsample(ds: Dataset) -> Dataset:
    x = F.interpolate(ds.x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return Dataset(x, ds.y, ds.classes, {**ds.source, "name": "digits-upsampled-28x28"})


def one_neuron_sizes(n: int = 784) -> dict[str, tuple[int, int]]:
    from pysat.formula import IDPool

    out = {}
    for enc in ENCODINGS:
        vp = IDPool()
        xs = [vp.id(i) for i in range(n)]
        _, cl = cardinality(xs, n // 2, vpool=vp, encoding=enc)
        out[enc] = (vp.top - n, len(cl))
    return out


def bench_net(name: str, model, split, encodings: list[str], tl: float, quick: bool, n_real: int,
              n_rand: int) -> list[dict]:
    rows = []
    x_test = torch.cat([split.heldout.x[:n_real], torch.rand(n_rand, *split.heldout.x.shape[1:])])
    for enc in encodings:
        t0 = time.perf_counter()
        f = encode(model, enc)
        row = {"net": name, "encoding": f"auto: {'+'.join(dict.fromkeys(f.encodings))}" if enc == "auto" else enc,
               "vars": f.num_vars, "clauses": f.num_clauses, "encode_s": time.perf_counter() - t0}
        r = infer(f, x_test)
        ref = model.predict(x_test).numpy()
        row["agree"] = float((r.sat_classes == ref).mean())
        row["infer_ms"] = 1e3 * float(np.median(r.times_s))
        solver_only = QueryConfig(candidates=0, enumerate_max=0, time_limit=tl)
        inv = invert(f, None, None, solver_only)
        ts = [o.time_s for o in inv.outcomes]
        row["inv_med_s"], row["inv_max_s"] = float(np.median(ts)), float(max(ts))
        row["inv_status"] = "".join({"SAT": "S", "UNSAT": "U", "UNKNOWN": "?"}[o.status.value] for o in inv.outcomes)
        ok = bool((model.predict(torch.from_numpy(inv.x)).numpy() == inv.y).all())  # PyTorch checks every preimage
        if enc == "auto":  # the default query: cheap candidates, enumeration of small spaces, then the solver
            inv2 = invert(model, None, None, QueryConfig(time_limit=tl))
            ts2 = [o.time_s for o in inv2.outcomes]
            row["default_med_s"], row["default_max_s"] = float(np.median(ts2)), float(max(ts2))
            row["default_status"] = "".join(o.status.value[0] if o.status.value != "UNKNOWN" else "?"
                                            for o in inv2.outcomes)
            ok = ok and inv2.verified is True
            rd = [robust(f, split.heldout.x[i], 2, QueryConfig(time_limit=tl)) for i in range(3)]
            row["robust_default_s"] = float(np.median([q.time_s for q in rd]))
            row["robust_default"] = "".join({"SAT": "N", "UNSAT": "R", "UNKNOWN": "?"}[q.status.value] for q in rd)
        row["verified"] = ok
        s = sample(f, int(np.bincount(ref).argmax()), 20 if quick else 50, config=solver_only)
        row["solver_samples_per_s"] = s.per_second
        s2 = sample(f, 0, 200, config=QueryConfig(time_limit=tl))
        row["samples_per_s"], row["sample_status"] = s2.per_second, s2.status.value
        row["sample_min_ham"] = s2.hamming_stats["min"]
        rt = [robust(f, split.heldout.x[i], 2, solver_only) for i in range(3)]
        row["robust_med_s"] = float(np.median([q.time_s for q in rt]))
        row["robust"] = "".join({"SAT": "N", "UNSAT": "R", "UNKNOWN": "?"}[q.status.value] for q in rt)
        if enc == "auto" and not quick:
            c = count(f, [int(np.bincount(ref).argmax())], config=QueryConfig(time_limit=30))
            row["count_s"] = c.counts[0].time_s
            row["count"] = "UNKNOWN" if c.counts[0].status is Status.UNKNOWN else f"2^{c.counts[0].log2_count:.1f}"
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def solver_line(model) -> str:
    """Solver-only inversion of every class of the digits BNN (totalizer) per PySAT back end."""
    f = encode(model, "totalizer")
    parts = []
    for name in ("g42", "g4", "m22", "cd195"):
        r = invert(f, None, None, QueryConfig(candidates=0, enumerate_max=0, time_limit=10, solver=name))
        ts = [o.time_s for o in r.outcomes]
        parts.append(f"{name} median {np.median(ts) * 1e3:.0f} ms / max {max(ts) * 1e3:.0f} ms")
    return "Back ends, digits totalizer, solver-only inversion per class: " + ", ".join(parts) + \
        " (cd195 has no interrupt in PySAT, so it runs in a forked child per query: the fork is included)."


def table(rows: list[dict]) -> str:
    cols = [("net", "net"), ("encoding", "encoding"), ("vars", "vars"), ("clauses", "clauses"),
            ("encode_s", "encode s"), ("agree", "infer agree"), ("infer_ms", "infer ms/input"),
            ("inv_med_s", "invert med s (solver)"), ("inv_max_s", "invert max s (solver)"),
            ("inv_status", "status per class (solver)"), ("default_med_s", "invert med s (default)"),
            ("default_max_s", "invert max s (default)"), ("default_status", "status (default)"),
            ("verified", "PyTorch-checked"),
            ("samples_per_s", "samples/s (default)"), ("solver_samples_per_s", "samples/s (solver)"),
            ("sample_min_ham", "min pairwise Hamming"), ("count_s", "count s (1 class)"), ("count", "count"),
            ("robust_med_s", "robust r=2 med s (solver)"), ("robust", "robust (solver)"),
            ("robust_default_s", "robust r=2 med s (default)"), ("robust_default", "robust (default)")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer samples/robustness inputs, no counting")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    digits = load_data("digits")
    cfg = TrainConfig(optimizer="adam", loss="ce", batch_size=64, lr=1e-2, epochs=20, log_every=10)
    split = make_task(digits, "all", seed=0)
    nets = [("digits 64-32-10", train(split, "bnn:32", cfg, device="cpu", show_progress=False), split,
             ENCODINGS + ["auto"], 10.0, 360, 200)]
    split28 = make_task(upsample(digits), "all", seed=0)
    dense = train(split28, "bnn:32", cfg, device="cpu", show_progress=False)
    tern = train(split28, "bnn:32", cfg, device="cpu", show_progress=False, ternary=0.9)
    nets += [("28x28 784-32-10 dense", dense, split28, ["sortnet", "auto"], 5.0, 60, 40),
             ("28x28 784-32-10 ternary 0.9", tern, split28, ENCODINGS + ["auto"], 5.0, 200, 100)]
    rows, acc = [], [solver_line(nets[0][1])]
    print(acc[0], flush=True)
    for name, m, sp, encs, tl, n_real, n_rand in nets:
        nz = float(np.mean([(q != 0).sum(1).float().mean().item() for q in m.module.weights()[:1]]))
        acc.append(f"{name}: held-out accuracy {m.meta['test_accuracy']:.3f}, first-layer nonzero weights per "
                   f"neuron {nz:.0f}")
        print(acc[-1], flush=True)
        rows += bench_net(name, m, sp, encs, tl, args.quick, n_real, n_rand)
    sizes = one_neuron_sizes()
    size_line = "One 784-input neuron at k = 392 (aux vars / clauses): " + ", ".join(
        f"{k} {v[0]}/{v[1]}" for k, v in sizes.items())
    load1 = os.getloadavg()
    md = "\n".join([
        f"\n## sat_bnn.py — exact BNN inversion ({dt.date.today().isoformat()})\n",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other "
        f"engineers' jobs (load average {load0[0]:.1f} at start, {load1[0]:.1f} at end); torch 1 thread; solver "
        f"Glucose 4.2 (PySAT). Total run {time.perf_counter() - t_all:.0f} s. Command: "
        f"`.venv/bin/python benchmarks/sat_bnn.py{' --quick' if args.quick else ''}`.",
        "", *[f"- {a}" for a in acc], f"- {size_line}", "",
        "Solver-only = no cheap candidates, no enumeration (the encoding alone); default = random + model-guided "
        "candidates checked by the exact model, then the solver. Status per class: S = SAT, U = UNSAT (proof), "
        "? = UNKNOWN at the time limit (10 s per class for digits, 5 s for 784 inputs). Robust: R = proved robust, "
        "N = counterexample. Infer agreement: held-out digits plus uniform random inputs (360+200 for 8x8, "
        "60+40 dense and 200+100 ternary for 28x28).", "",
        table(rows), ""])
    print(md)
    if not args.no_write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as fh:
            fh.write(md)


if __name__ == "__main__":
    main()
