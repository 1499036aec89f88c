"""KKT reconstruction on the reference digits victim: speed against the FLOP floor, peak memory, and the leakage
figures beside their null baselines; optionally other training-set sizes and weight decays (the papers' trends).

    .venv/bin/python benchmarks/kkt_digits.py                      # reference: 50 per class, reference weight decay
    .venv/bin/python benchmarks/kkt_digits.py --n 25 50 100 250 --wd 0 1e-3 1e-2

Victims are cached in --cache (trained once). Appends a table to benchmarks/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time
from pathlib import Path

import torch

from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.data import split_from_record
from netinv.demo import REFERENCE_TRAIN, reference_victim
from netinv.metrics import evaluate

RESULTS = Path(__file__).with_name("RESULTS.md")


def matmul_rate(m: int, a: int, b: int, reps: int = 20, trials: int = 5) -> float:
    """Multiply-adds per second of a plain (m×a)·(a×b) matmul in this process: the best of ``trials`` timings, so
    a busy moment does not lower the floor."""
    x, w = torch.randn(m, a), torch.randn(a, b)
    x @ w
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(reps):
            x @ w
        best = min(best, time.perf_counter() - t)
    return reps * m * a * b / best


def flop_floor_s(model, m: int) -> float:
    """Seconds one attack iteration needs at the plain-matmul rate. Each Linear (a→b) costs m·a·b multiply-adds in
    the forward pass; the first backward (∂θ of Σλ·margin, create_graph) 2× that (∂W and ∂h); the second backward
    (to x and λ only) 2× through ∂W = δᵀh, 1× through ∂h = δW and 1× through the forward: 7·m·a·b per layer."""
    layers = [mod for mod in model.module.modules() if isinstance(mod, torch.nn.Linear)]
    macs = sum(7 * m * lin.in_features * lin.out_features for lin in layers)
    biggest = max(layers, key=lambda lin: lin.in_features * lin.out_features)
    return macs / matmul_rate(m, biggest.in_features, biggest.out_features)


def run(n: int, wd: float | None, cache: Path, seed: int, cfg: KKTConfig) -> dict:
    tag = f"n{n}_wd{wd if wd is not None else REFERENCE_TRAIN.weight_decay:g}_s{seed}"
    t = time.perf_counter()
    victim = reference_victim(n, weight_decay=wd, seed=seed, out=cache / tag, device="cpu", show_progress=False)
    train_s = time.perf_counter() - t
    split = split_from_record(victim.meta["data"])
    attack = KKTReconstruction(victim, cfg)
    m = attack.default_n()
    floor = flop_floor_s(victim, m)
    t = time.perf_counter()
    cands = attack.invert(m, seed=seed, out=cache / f"{tag}_attack")
    attack_s = time.perf_counter() - t
    ev = evaluate(cands.x, split.train, split.heldout, model=victim, seed=seed, out=cache / f"{tag}_attack")
    it_s = cands.info["iterations_per_s"]
    return {"tag": tag, "n_train": len(split.train), "wd": victim.meta["train_config"]["weight_decay"],
            "train_acc": victim.meta["train_accuracy"], "test_acc": victim.meta["test_accuracy"],
            "train_s": train_s, "m": m, "it_per_s": it_s, "iter_ms": 1000 / it_s, "floor_ms": 1000 * floor,
            "attack_s": attack_s, "criterion": cands.info["criterion"], "ev": ev}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[50], help="members per class")
    ap.add_argument("--wd", type=float, nargs="+", default=[None], help="weight decays (default: the reference)")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("runs/bench_kkt"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cfg = KKTConfig(show_progress=False) if args.iterations is None else KKTConfig(iterations=args.iterations,
                                                                                  show_progress=False)
    load0 = os.getloadavg()[0]
    rows = [run(n, wd, args.cache, args.seed, cfg) for n in args.n for wd in args.wd]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = ("| members | weight decay | train / held-out acc | m | it/s | ms per it | FLOP floor ms | ratio | attack s "
            "| leaked (attack / noise / real) | AUC (attack / noise / real) | SSIM>0.4 | best-10 SSIM |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        a, z, h = r["ev"].sets
        lines.append(f"| {r['n_train']} | {r['wd']:g} | {r['train_acc']:.3f} / {r['test_acc']:.3f} | {r['m']} | "
                     f"{r['it_per_s']:.1f} | {r['iter_ms']:.0f} | {r['floor_ms']:.0f} | "
                     f"{r['iter_ms'] / r['floor_ms']:.2f} | {r['attack_s']:.0f} | {a.frac_leaked:.0%} / "
                     f"{z.frac_leaked:.0%} / {h.frac_leaked:.0%} | {a.auc:.3f} / {z.auc:.3f} / {h.auc:.3f} | "
                     f"{a.n_above_threshold}/{r['n_train']} | {a.best_mean_ssim:.3f} |")
    table = "\n".join(lines)
    print(table)
    print(rows[0]["ev"].table())
    if not args.no_write:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with RESULTS.open("a") as f:
            f.write(f"\n## KKT reconstruction — digits parity, MLP 64-1000-1000-1 bias-free (benchmarks/kkt_digits.py)"
                    f"\n\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                    f"{torch.get_num_threads()} threads, load average {load0:.1f} at start / {os.getloadavg()[0]:.1f}"
                    f" at end, peak RSS {peak_mb:.0f} MB. Attack: KKTConfig defaults ({cfg.iterations} iterations, "
                    f"m = 2n), attacker-side only; figures from netinv.metrics.evaluate (seed {args.seed}).\n\n"
                    f"{table}\n\nReference run in full:\n\n```\n{rows[0]['ev'].table()}\n```\n")


if __name__ == "__main__":
    main()
