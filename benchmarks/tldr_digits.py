"""TLDR (arXiv 2410.16884) vs plain generator inversion on digits CNNs trained on subsets of different sizes.

Victims: cnn:32,64 (BatchNorm, dropout, leaky ReLU, weight decay 5e-4, Adam 1e-3, batch 64, ~2000 optimiser steps
whatever the set size) trained on 10, 50 and all (114) digits per class, 60 held-out digits per class as
non-members; less data -> more memorisation (the paper's MNIST 1k / 10k / 60k). Each victim is drawn with several
member subsets (``--victim-seeds``). Per victim: plain generator inversion with hot conditioning
(``attacks.generator``, same step count) and TLDR (``attacks.tldr`` defaults), 1000 candidates each, scored by the
evaluation protocol (``metrics.evaluation.evaluate``: member vs non-member AUC, fraction above τ, Haim's figures)
beside the noise and real-held-out baselines; plus the cost of the gradient term per generator step.

Appends the tables to benchmarks/RESULTS.md (not with --quick). Run:
``.venv/bin/python benchmarks/tldr_digits.py [--quick]``. Default one torch thread: the machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from netinv.attacks.generator import GeneratorConfig, GeneratorInversion
from netinv.attacks.tldr import TLDR, TLDRConfig
from netinv.data import load_data, make_task
from netinv.metrics.evaluation import evaluate
from netinv.train import TrainConfig, train

SIZES = {"10/class": 10, "50/class": 50, "all (114/class)": 114}  # 114 + 60 held out ≤ 174, the smallest class
HELDOUT = 60
FIGS = ("auc", "frac_leaked", "best_mean_ssim", "n_above_threshold")


def victim(n_per_class: int, seed: int, train_steps: int) -> tuple:
    split = make_task(load_data("digits"), None, n_per_class=n_per_class, heldout_per_class=HELDOUT, seed=seed)
    epochs = math.ceil(train_steps / math.ceil(len(split.train) / 64))  # same optimiser steps for every size
    cfg = TrainConfig(optimizer="adam", loss="ce", lr=1e-3, batch_size=64, weight_decay=5e-4, epochs=epochs,
                      seed=seed)
    t0 = time.perf_counter()
    model = train(split, "cnn:32,64", cfg, device="cpu", show_progress=False)
    return model, split, time.perf_counter() - t0


def run_method(name: str, model, split, steps: int, n: int, work: Path) -> dict:
    t0 = time.perf_counter()
    if name == "generator (hot)":
        c = GeneratorInversion(model, GeneratorConfig(conditioning="hot", steps=steps)).invert(n, seed=0)
    else:
        c = TLDR(model, TLDRConfig(steps=steps)).invert(n, seed=0, out=work)
    wall = time.perf_counter() - t0
    ev = evaluate(c.x, split.train, split.heldout, model=model, candidate_labels=c.y, seed=0)
    row = {"wall": wall, "assigned": ev.conditioning["assigned_fraction"]}
    for f in ev.sets:
        row.update({f"{f.name}.{k}": float(getattr(f, k)) for k in FIGS})
    return row


def grad_cost(model, steps: int = 20) -> dict[str, float]:
    """Seconds per generator step without the gradient term, with the batch-mean version, per sample."""
    out = {}
    for label, kw in (("no gradient term", dict(grad_weight=0.0)), ("batch-mean ‖∇θ‖", dict(grad_mode="batch")),
                      ("per-sample ‖∇θ‖ (vmap)", dict(grad_mode="per_sample"))):
        att = TLDR(model, TLDRConfig(steps=steps, monitor_every=10 * steps, **kw))
        att.setup(0)
        t0 = time.perf_counter()
        att.fit(steps)
        out[label] = (time.perf_counter() - t0) / steps
    return out


def ms(vals: list[float], pct: bool = False) -> str:
    m = statistics.mean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * sd:.1f}%" if pct else f"{m:.3f} ± {sd:.3f}"


def table(results: dict, seeds: list[int]) -> str:
    lines = ["| victim (test acc.) | candidates | member vs non-member AUC | leaked (> τ) | mean SSIM best 10 | "
             "SSIM > 0.4 | assigned | wall (s) |", "|---|---|---|---|---|---|---|---|"]
    for size, (acc, n_train, rows) in results.items():
        for method in rows[0]:
            r = [row[method] for row in rows]
            lines.append(f"| {size}, {n_train} train ({ms(acc)}) | {method} | {ms([x['attack.auc'] for x in r])} | "
                         f"{ms([x['attack.frac_leaked'] for x in r], True)} | "
                         f"{ms([x['attack.best_mean_ssim'] for x in r])} | "
                         f"{statistics.mean(x['attack.n_above_threshold'] for x in r):.0f}/{n_train} | "
                         f"{ms([x['assigned'] for x in r], True)} | {statistics.mean(x['wall'] for x in r):.0f} |")
        for b, label in (("noise", "uniform noise"), ("real_heldout", "real held-out digits")):
            r = [row["generator (hot)"] for row in rows]  # the baselines do not depend on the method (same seed)
            lines.append(f"| {size} | *{label}* | {ms([x[f'{b}.auc'] for x in r])} | "
                         f"{ms([x[f'{b}.frac_leaked'] for x in r], True)} | {ms([x[f'{b}.best_mean_ssim'] for x in r])}"
                         f" | {statistics.mean(x[f'{b}.n_above_threshold'] for x in r):.0f}/{n_train} | – | – |")
    lines.append("\nPaired AUC differences on the same victims and reference sets (mean ± std over victim seeds):\n")
    for size, (_, _, rows) in results.items():
        t, g = [r["TLDR"] for r in rows], [r["generator (hot)"] for r in rows]
        dg = [a["attack.auc"] - b["attack.auc"] for a, b in zip(t, g, strict=True)]
        lines.append(f"- {size}: TLDR − generator {ms(dg)}; "
                     f"TLDR − noise {ms([a['attack.auc'] - a['noise.auc'] for a in t])}; "
                     f"generator − noise {ms([b['attack.auc'] - b['noise.auc'] for b in g])}")
    return "\n".join(lines) + f"\n\nmean ± std over victim seeds {seeds} (different member subsets)."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps, one victim seed (smoke run)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1000, help="generator steps, both methods")
    ap.add_argument("--n", type=int, default=1000, help="candidates per method")
    ap.add_argument("--victim-seeds", default="1,2,3")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_tldr_digits"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("NETINV_PROGRESS", "0")
    seeds = [1] if args.quick else [int(s) for s in args.victim_seeds.split(",")]
    steps, train_steps = (150, 300) if args.quick else (args.steps, 2000)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    results: dict = {}
    cost: dict[str, float] = {}
    for size, npc in SIZES.items():
        accs, rows = [], []
        for s in seeds:
            model, split, t_train = victim(npc, s, train_steps)
            accs.append(model.meta["test_accuracy"])
            row = {m: run_method(m, model, split, steps, args.n, args.work / f"{npc}_{s}")
                   for m in ("generator (hot)", "TLDR")}
            rows.append(row)
            print(size, s, f"acc {accs[-1]:.3f} train {t_train:.0f}s",
                  {m: (round(r["attack.auc"], 3), round(r["wall"])) for m, r in row.items()}, flush=True)
            if not cost and npc == max(SIZES.values()):
                cost = grad_cost(model)
        results[size] = (accs, len(split.train), rows)
    load1 = os.getloadavg()
    total = f"{time.perf_counter() - t_start:.0f} s" + (" (QUICK)" if args.quick else "")
    cost_txt = " | ".join(f"{k}: {1000 * v:.0f} ms" for k, v in cost.items())
    text = f"""
## TLDR vs plain generator inversion — digits CNNs on 10 / 50 / all digits per class (benchmarks/tldr_digits.py)

{dt.datetime.now().isoformat(timespec="seconds")}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores,
torch {torch.__version__}, {args.threads} torch thread(s), shared machine (load average {load0[0]:.1f} at start,
{load1[0]:.1f} at end, 2 cores shared by ~5 engineers), total {total}. Victims: cnn:32,64 (BatchNorm, dropout, leaky
ReLU), Adam 1e-3, weight decay 5e-4, batch 64, {train_steps} optimiser steps; {HELDOUT} held-out digits per class are
the non-members (half of them the real-data candidates, half set τ). Both methods: {steps} generator steps, seed 0,
{args.n} candidates (balanced over the 10 classes); generator = `GeneratorConfig(conditioning="hot")`, TLDR =
`TLDRConfig()` defaults (docs/tldr.md). The baselines are the evaluation's own: uniform noise and real held-out
digits as candidates. Leakage shows only as AUC > 0.5 *beyond* what noise gets.

{table(results, seeds)}

Cost of the gradient term per generator step (batch 64, all-digits victim): {cost_txt}.
"""
    print(text)
    if not args.quick:  # a smoke run is not a result
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
