"""Benchmark: how the victim's training recipe changes what the KKT attack recovers (issue 3's victim question).

Same task as benchmarks/kkt_digits.py (digits parity, 50 members per class, MLP 64-1000-1000-1 without biases, zero
training error), the attack always with the attacker-side defaults, three attack seeds per victim. For each recipe:
training time and epochs, held-out accuracy, how many members sit near the margin (within 10% of the smallest
y·Φ(x)), the residual the TRUE training set leaves in the KKT equation (total and per layer; NNLS, λ ≥ 0 — a victim
diagnostic, never used by the attack), and the leakage figures.
Prints a table and appends it to benchmarks/RESULTS.md.

Two recipes are slow on a CPU (``--device cuda`` helps): ``long`` continues the reference victim for ``--long-epochs``
more GD epochs at its step (Haim et al. train for 10⁶ epochs; 10⁵ took 12 minutes on 2 CPU cores), ``wd-anneal``
trains with weight decay and then anneals the step geometrically to 1/1000 of it, so the iterate stops zig-zagging
across ReLU kinks and settles at a stationary point.

Usage: python benchmarks/kkt_victims.py [--rows reference,lr0.3,init0.01,init0.1,wd1e-3,ngd] [--seeds 0,1,2]
       [--device cpu|cuda] [--long-epochs 1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kkt_digits import kink_residual, publish, section_header, truth_residual  # noqa: E402
from netinv.attacks.kkt import KKTConfig, KKTReconstruction  # noqa: E402
from netinv.data import load_data, make_task  # noqa: E402
from netinv.demo import REFERENCE_ARCH, REFERENCE_OPTIONS, REFERENCE_TRAIN  # noqa: E402
from netinv.metrics import evaluate  # noqa: E402
from netinv.models.checkpoint import is_checkpoint, save_checkpoint  # noqa: E402
from netinv.models.loading import load_model  # noqa: E402
from netinv.models.registry import parse_arch  # noqa: E402
from netinv.train import train  # noqa: E402

#: name -> (description, TrainConfig overrides, init scale)
RECIPES = {
    "reference": ("reference: GD lr 3 to loss 1e-5", {}, REFERENCE_OPTIONS["init_scale"]),
    "lr0.3": ("GD lr 0.3 to loss 1e-5 (closer to gradient flow)", {"lr": 0.3, "epochs": 40_000},
              REFERENCE_OPTIONS["init_scale"]),
    "init0.01": ("init 0.01 (smaller)", {}, 0.01),
    "init0.1": ("init 0.1 (larger)", {}, 0.1),
    "wd1e-3": ("weight decay 1e-3, GD lr 3, 3 000 epochs", {"weight_decay": 1e-3, "epochs": 3000},
               REFERENCE_OPTIONS["init_scale"]),
    "ngd": ("reference + 2 000 loss-normalised GD steps (∇log L, step 5e-4, float64)", {},
            REFERENCE_OPTIONS["init_scale"]),
    "long": ("reference + --long-epochs more GD epochs at lr 3", {}, REFERENCE_OPTIONS["init_scale"]),
    "wd-anneal": ("weight decay 1e-3, GD lr 3 for 3 000 epochs, then 30 000 epochs annealing lr 3 → 0.003",
                  {"weight_decay": 1e-3, "epochs": 3000}, REFERENCE_OPTIONS["init_scale"]),
}


def normalised_gd(model, split, steps: int = 2000, step: float = 5e-4) -> None:
    """Continue training on log(loss): the step grows as the loss shrinks, so margins keep equalising."""
    mod = model.module.double()
    x, y = model.preprocess(split.train.x).double(), (2 * split.train.y - 1).double()
    params = list(mod.parameters())
    for _ in range(steps):
        z = F.softplus(-y * mod(x)[:, 0]).clamp_min(1e-300)
        g = torch.autograd.grad(torch.logsumexp(z.log(), 0), params)
        with torch.no_grad():
            for p, gp in zip(params, g, strict=True):
                p -= step * gp
    mod.float()


def continue_gd(model, split, epochs: int, lr: float, lr_end: float | None = None, weight_decay: float = 0.0) -> None:
    """More full-batch GD on the logistic loss (+ weight decay), the step going geometrically from ``lr`` to
    ``lr_end``; no host sync inside the loop except a progress line every 10 %."""
    mod = model.module
    x, y = model.preprocess(split.train.x.to(model.device)), (2 * split.train.y - 1).float().to(model.device)
    params = list(mod.parameters())
    decay = (lr_end / lr) ** (1 / max(epochs, 1)) if lr_end else 1.0
    step, t = lr, time.perf_counter()
    for e in range(epochs):
        loss = F.softplus(-y * mod(x)[:, 0]).mean()
        g = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_add_(params, torch._foreach_add(g, params, alpha=weight_decay), alpha=-step)
        step *= decay
        if (e + 1) % max(epochs // 10, 1) == 0:
            print(f"  continue: epoch {e + 1}/{epochs}, loss {float(loss.detach()):.3e}, lr {step:.3g}, "
                  f"{time.perf_counter() - t:.0f} s", flush=True)


def victim(cache: Path, name: str, split, device: str = "cpu", long_epochs: int = 1_000_000):
    _, over, init = RECIPES[name]
    path = cache / (f"long{long_epochs}" if name == "long" else name)
    if is_checkpoint(path):
        return load_model(path, device=device), None
    t = time.perf_counter()
    if name == "long":
        model = victim(cache, "reference", split, device)[0]
        continue_gd(model, split, long_epochs, REFERENCE_TRAIN.lr)
    else:
        cfg = dataclasses.replace(REFERENCE_TRAIN, **over)
        model = train(split, REFERENCE_ARCH, cfg, device=device, show_progress=False, bias=REFERENCE_OPTIONS["bias"],
                      init_scale=init)
    if name == "ngd":
        normalised_gd(model, split)
    if name == "wd-anneal":
        continue_gd(model, split, 30_000, cfg.lr, cfg.lr / 1000, weight_decay=cfg.weight_decay)
    if name in ("long", "wd-anneal"):
        model.meta["continued"] = RECIPES[name][0].replace("--long-epochs", str(long_epochs))
    spec = parse_arch(REFERENCE_ARCH, split.train.input_shape, 1, bias=REFERENCE_OPTIONS["bias"], init_scale=init)
    save_checkpoint(path, model.module, spec, model.meta, model.mean)
    return model, time.perf_counter() - t


def victim_bench(ap: argparse.ArgumentParser, rows: str, long_epochs: int = 1_000_000):
    """The command line and setup the victim benchmarks share (this one, kkt_kinks.py, kkt_coverage.py): adds
    --rows/--cache/--device/--long-epochs/--no-append to ``ap`` (after the script's own options), parses it, and
    returns (args, the reference's digits parity split, load average and clock at the start, the attack defaults)."""
    ap.add_argument("--rows", default=rows)
    ap.add_argument("--cache", type=Path, default=Path("runs/bench-kkt-victims"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda: victims trained and attacked there")
    ap.add_argument("--long-epochs", type=int, default=long_epochs, help="extra GD epochs of the 'long' recipe")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("NETINV_PROGRESS", "0")
    split = make_task(load_data("digits"), "parity", n_per_class=50, seed=0)
    return args, split, os.getloadavg()[0], time.perf_counter(), KKTConfig(show_progress=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    args, split, load0, t_all, cfg = victim_bench(ap, ",".join(RECIPES))
    seeds = [int(s) for s in args.seeds.split(",")]
    head = ("| victim recipe | train s | epochs | held-out acc | members within 10% of min margin | KKT resid. "
            "(truth) | per layer | on-kink pairs per member (hidden 1 / 2) | "
            "resid. with free kink derivatives (per layer) | attack: above τ (seeds) | AUC (seeds) | "
            "mean above τ / AUC | on-margin leaked (seeds) | all seeds pooled: above τ / AUC / on-margin leaked |\n|"
            + "---|" * 14)
    lines = [head]
    print(head, flush=True)
    for name in args.rows.split(","):
        model, train_s = victim(args.cache, name, split, args.device, args.long_epochs)
        y = (2 * split.train.y - 1).float()
        with torch.no_grad():
            marg = y * model.logits(split.train.x)[:, 0].cpu()
        near = float((marg <= 1.1 * marg.min()).float().mean())
        resid, layers = truth_residual(model, split, per_layer=True)
        kink, kink_layers, on_kink = kink_residual(model, split)
        leaked, aucs, on_margin, pool = [], [], [], []
        for s in seeds:
            cands = KKTReconstruction(model, cfg).invert(seed=s)
            ev = evaluate(cands.x, split.train, split.heldout, model=model, candidate_labels=cands.y)
            leaked.append(ev.attack.frac_leaked)
            aucs.append(ev.attack.auc)
            on_margin.append(ev.margin_leakage["leaked"]["attack"])
            pool.append(cands)
        # the candidates of all seeds as one set (more candidates match non-members too: τ is recomputed)
        evp = evaluate(torch.cat([c.x for c in pool]), split.train, split.heldout, model=model,
                       candidate_labels=torch.cat([c.y for c in pool]))
        n_on = evp.margin_leakage["n_on_margin"]
        epochs = model.meta.get("epochs_run", "?") if isinstance(model.meta, dict) else "?"
        label = RECIPES[name][0].replace("--long-epochs", f"{args.long_epochs:,}")
        line = (f"| {label} | {'cached' if train_s is None else round(train_s)} | {epochs} | "
                f"{model.accuracy(split.heldout.x, split.heldout.y):.3f} | {near:.0%} | {resid:.3f} | "
                + ", ".join(f"{v:.2f}" for v in layers.values()) + f" | {on_kink[0]:.0f} / {on_kink[1]:.0f} | "
                f"{kink:.3f} (" + ", ".join(f"{v:.2f}" for v in kink_layers) + ") | "
                + ", ".join(f"{v:.0%}" for v in leaked) + " | " + ", ".join(f"{v:.3f}" for v in aucs)
                + f" | {sum(leaked) / len(leaked):.0%} / {sum(aucs) / len(aucs):.3f} | "
                + ", ".join(f"{k}/{n_on}" for k in on_margin)
                + f" | {evp.attack.frac_leaked:.0%} / {evp.attack.auc:.3f} / "
                f"{evp.margin_leakage['leaked']['attack']}/{n_on} |")
        lines.append(line)
        print(line, flush=True)
    text = (section_header("KKT victim recipes — digits parity MLP 64-1000-1000-1 (benchmarks/kkt_victims.py)",
                           load0, t_all) +
            f" Attack: {cfg}, seeds {seeds}. 'cached': trained by an earlier run; per-layer residuals in parameter "
            f"order (input layer first). On-kink: (member, unit) pairs with |pre-activation| < 10⁻³ × the layer's "
            f"median; the free-kink residual lets their ReLU derivative take any value in [0, 1] (Clarke).\n\n"
            + "\n".join(lines) + "\n")
    publish(text, append=not args.no_append)


if __name__ == "__main__":
    main()
