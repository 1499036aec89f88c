"""Benchmark: training points sit on ReLU kinks, and what that means for the KKT attack (docs/kkt.md, "Third round").

For each victim (the reference, and the weight-decay victim annealed to a stationary point, both from
benchmarks/kkt_victims.py): how many hidden units have a pre-activation of (numerically) zero at each member and at
each held-out image; the same for the smallest-margin members; the residual the TRUE training set leaves in the
KKT equation with the exact ReLU derivative and with a free derivative in [0, 1] at on-kink pairs (the Clarke
generalised derivative); and the attack with its defaults started cold (seed 0) and warm from the training set
itself (an oracle experiment: x0 = every member twice). Prints a table and appends it to benchmarks/RESULTS.md.

Usage: python benchmarks/kkt_kinks.py [--rows reference,wd-anneal] [--tol 1e-3] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kkt_digits import kink_residual, publish, section_header, truth_residual  # noqa: E402
from kkt_victims import victim, victim_bench  # noqa: E402
from netinv.attacks.kkt import KKTReconstruction  # noqa: E402
from netinv.metrics import evaluate  # noqa: E402


def hidden_preactivations(model, x: torch.Tensor) -> list[torch.Tensor]:
    """The pre-activations of every hidden Linear layer of the bias-free MLP, in float64 (the module is not touched)."""
    h = model.preprocess(x.to(model.device)).flatten(1).double()
    out = []
    for layer in model.module.net:
        if isinstance(layer, torch.nn.Linear):
            h = h @ layer.weight.detach().double().T
            out.append(h)
        else:
            h = layer(h)
    return out[:-1]  # the last Linear is the output


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tol", type=float, default=1e-3, help="on a kink: |pre-activation| < tol × the layer's median")
    args, split, load0, t_all, cfg = victim_bench(ap, "reference,wd-anneal")
    head = ("| victim | on-kink units per member, hidden 1 / 2 | per held-out image | members with ≥ 10 in hidden 1 | "
            "the 5 smallest-margin members, hidden 1 | membership AUC of the hidden-1 count | truth residual: exact "
            "ReLU (input layer) | free kink derivatives (input layer) | attack cold, seed 0: above τ / AUC / "
            "criterion | warm from the training set: above τ / AUC / criterion |\n|" + "---|" * 10)
    lines = [head]
    print(head, flush=True)
    for name in args.rows.split(","):
        model = victim(args.cache, name, split, args.device, args.long_epochs)[0]
        with torch.no_grad():
            z_tr = hidden_preactivations(model, split.train.x)
            z_ho = hidden_preactivations(model, split.heldout.x)
            scales = [z.abs().median() for z in z_tr]
            tr = [(z.abs() < args.tol * sc).sum(1).cpu() for z, sc in zip(z_tr, scales, strict=True)]
            ho = [(z.abs() < args.tol * sc).sum(1).cpu() for z, sc in zip(z_ho, scales, strict=True)]
            marg = ((2 * split.train.y - 1).float() * model.logits(split.train.x)[:, 0].cpu())
        smallest = tr[0][torch.argsort(marg)[:5]].tolist()
        auc = roc_auc_score([1] * len(tr[0]) + [0] * len(ho[0]), torch.cat([tr[0], ho[0]]).numpy())
        resid, layers = truth_residual(model, split, per_layer=True)
        kink, kink_layers, _ = kink_residual(model, split, tol=args.tol)
        runs = []
        x0, y0 = torch.cat([split.train.x, split.train.x]), torch.cat([split.train.y, split.train.y])
        for warm in (False, True):
            cands = KKTReconstruction(model, cfg).invert(seed=0, **({"x0": x0, "y0": y0} if warm else {}))
            ev = evaluate(cands.x, split.train, split.heldout, model=model, candidate_labels=cands.y)
            runs.append(f"{ev.attack.frac_leaked:.0%} / {ev.attack.auc:.3f} / {cands.info['criterion']:.4f}")
        line = (f"| {name} | {tr[0].double().mean():.1f} / {tr[1].double().mean():.1f} | "
                f"{ho[0].double().mean():.2f} / {ho[1].double().mean():.2f} | {int((tr[0] >= 10).sum())} of "
                f"{len(tr[0])} | {', '.join(map(str, smallest))} | {auc:.3f} | "
                f"{resid:.3f} ({list(layers.values())[0]:.2f}) | {kink:.3f} ({kink_layers[0]:.3f}) | "
                f"{runs[0]} | {runs[1]} |")
        lines.append(line)
        print(line, flush=True)
    text = (section_header("KKT and ReLU kinks — digits parity MLP 64-1000-1000-1 (benchmarks/kkt_kinks.py)",
                           load0, t_all) +
            f" On a kink: |pre-activation| < {args.tol:g} × the layer's median over the members. Attack: {cfg}. "
            "Criterion: the attacker-side relative stationarity residual (exact ReLU, lower = better).\n\n"
            + "\n".join(lines) + "\n")
    publish(text, append=not args.no_append)


if __name__ == "__main__":
    main()
