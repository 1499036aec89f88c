"""Benchmark: what limits the KKT attack on the digits victims — what the first layer encodes, and which members the
attack covers (docs/kkt.md, "Fourth round"). Ground truth is used throughout: this is a victim diagnostic.

For each victim (benchmarks/kkt_victims.py recipes):
- how many of W₁'s and W₂'s singular values stand above the bulk of a same-shape matrix drawn from the recipe's
  initialisation (the part that training put there, against the init residue gradient descent never removes);
- a reference scale, not a bound: the evaluation of the members themselves projected onto W₁'s top-k input
  directions (the other components set to the mean image), i.e. a perfect reconstruction of only what the top-k
  directions carry, with every member covered;
- the attack with its defaults (seed 0): above τ / AUC, how well its candidates match the members per band of W₁'s
  directions (leaked members against the rest), how many of the 30 members with the largest share of θ in the
  true training set's NNLS fit it leaks, and the members that are vertices of the first-layer arrangement
  (≥ d − 1 hyperplanes through them); and the attack's candidates each rescaled about the mean image by the factor
  that best fits the members matched to it (an oracle: is the attack's shortfall the KKT equation's scale freedom
  x → s·x, λ → λ/s of a bias-free net, or the candidates' direction?).
Prints the tables and appends them to benchmarks/RESULTS.md.

Usage: python benchmarks/kkt_coverage.py [--rows reference,long,wd-anneal] [--long-epochs 100000] [--device cpu]
       [--no-append]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kkt_digits import publish, section_header, truth_fit  # noqa: E402
from kkt_kinks import hidden_preactivations  # noqa: E402
from kkt_victims import RECIPES, victim, victim_bench  # noqa: E402
from netinv.attacks.kkt import KKTReconstruction  # noqa: E402
from netinv.metrics import evaluate  # noqa: E402

PROJECTION_K = (5, 10, 15, 20, 30, 40)
BANDS = ((0, 10), (10, 20), (20, 30), (30, None))


def init_bulk_edge(shape: tuple[int, int], init_scale: float, draws: int = 5, seed: int = 0) -> float:
    """The largest singular value of a (out, in) matrix drawn like nn.Linear's default init × ``init_scale``."""
    gen = torch.Generator().manual_seed(seed)
    bound = init_scale / math.sqrt(shape[1])
    return max(float(torch.linalg.svdvals((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)[0])
               for _ in range(draws))


def projection_ceiling(model, split, vh: torch.Tensor) -> list[str]:
    """Members projected onto the top-k right singular vectors of W₁ (each twice, like m = 2n), evaluated."""
    x = model.preprocess(split.train.x.to(model.device)).flatten(1).double().cpu()
    mean = model.mean.flatten().double().cpu() if model.mean is not None else 0.0
    out = []
    for k in PROJECTION_K:
        c = (x @ vh[:k].T @ vh[:k] + mean).float().reshape(-1, *model.input_shape)
        a = evaluate(torch.cat([c, c]), split.train, split.heldout, model=model).attack
        out.append(f"{a.frac_leaked:.0%} / {a.auc:.2f}")
    return out


def band_cosines(model, split, cands_x: torch.Tensor, match: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """(n members, bands): the cosine, within each band of W₁'s directions, between each member and its NCC-matched
    candidate, both mean-subtracted."""
    x = model.preprocess(split.train.x.to(model.device)).flatten(1).double().cpu() @ vh.T
    c = model.preprocess(cands_x.to(model.device)).flatten(1).double().cpu()[match] @ vh.T
    return torch.stack([torch.nn.functional.cosine_similarity(x[:, lo:hi], c[:, lo:hi], dim=1) for lo, hi in BANDS], 1)


def oracle_scaled(model, split, cands_x: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Each candidate rescaled about the mean image by the least-squares factor s = <c, x>/<c, c> (mean-subtracted)
    averaged over the members matched to it; unmatched candidates unchanged. The equation cannot tell x from s·x
    (λ/s makes up for it), so this asks how much of the shortfall is scale alone."""
    c = model.preprocess(cands_x.to(model.device)).flatten(1).double().cpu()
    x = model.preprocess(split.train.x.to(model.device)).flatten(1).double().cpu()
    s = (c[match] * x).sum(1) / (c[match] ** 2).sum(1).clamp_min(1e-30)
    total = torch.zeros(len(c), dtype=torch.float64).index_add_(0, match, s)
    count = torch.zeros(len(c), dtype=torch.float64).index_add_(0, match, torch.ones_like(s))
    factor = torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))
    mean = model.mean.flatten().double().cpu() if model.mean is not None else 0.0
    return (factor[:, None] * c + mean).reshape(-1, *model.input_shape)


def main() -> None:
    args, split, load0, t_all, cfg = victim_bench(argparse.ArgumentParser(), "reference", long_epochs=100_000)
    head1 = ("| victim | W₁ singular values above the init bulk (of 64) | W₂ (of 1 000) | "
             + " | ".join(f"members projected on top {k}: above τ / AUC" for k in PROJECTION_K) + " |\n|"
             + "---|" * (3 + len(PROJECTION_K)))
    head2 = ("| victim | attack seed 0: above τ / AUC | cosine to the matched candidate, leaked members, W₁ directions "
             + ", ".join(f"{lo}–{hi or 64}" for lo, hi in BANDS) + " | the same, the other members | "
             "leaked among the 30 largest truth shares | members with ≥ 63 first-layer kinks (leaked) | "
             "candidates at their members' best scale (oracle): above τ / AUC |\n|" + "---|" * 7)
    rows1, rows2 = [head1], [head2]
    for name in args.rows.split(","):
        model = victim(args.cache, name, split, args.device, args.long_epochs)[0]
        w1, w2 = (p.detach().double().cpu() for p in list(model.module.parameters())[:2])
        s, vh = torch.linalg.svd(w1, full_matrices=False)[1:]
        above = [int((torch.linalg.svdvals(w) > init_bulk_edge(tuple(w.shape), RECIPES[name][2])).sum())
                 for w in (w1, w2)]
        rows1.append(f"| {name} | {above[0]} | {above[1]} | " + " | ".join(projection_ceiling(model, split, vh))
                     + " |")
        print(rows1[-1], flush=True)

        cands = KKTReconstruction(model, cfg).invert(seed=0)
        a = evaluate(cands.x, split.train, split.heldout, model=model, candidate_labels=cands.y).attack
        leaked = a.train_ssim > a.tau
        cos = band_cosines(model, split, cands.x, a.train_match, vh)
        cos_l, cos_o = cos[leaked].mean(0).tolist(), cos[~leaked].mean(0).tolist()
        lam, jac, _, _ = truth_fit(model, split)
        share = lam * jac.norm(dim=1)
        top = torch.argsort(share, descending=True)[:30]
        with torch.no_grad():
            z1 = hidden_preactivations(model, split.train.x)[0].cpu()
        vertex = (z1.abs() < 1e-3 * z1.abs().median()).sum(1) >= w1.shape[1] - 1
        scaled = evaluate(oracle_scaled(model, split, cands.x, a.train_match).float(), split.train, split.heldout,
                          model=model).attack
        rows2.append(f"| {name} | {a.frac_leaked:.0%} / {a.auc:.3f} | {', '.join(f'{v:.2f}' for v in cos_l)} | "
                     f"{', '.join(f'{v:.2f}' for v in cos_o)} | {int(leaked[top].sum())} of 30 | "
                     f"{int(vertex.sum())} ({int((vertex & leaked).sum())}) | "
                     f"{scaled.frac_leaked:.0%} / {scaled.auc:.3f} |")
        print(rows2[-1], flush=True)
    text = (section_header("What limits the KKT attack — digits parity MLP 64-1000-1000-1 (benchmarks/kkt_coverage.py)",
                           load0, t_all) +
            f" Ground truth throughout (a victim diagnostic). Attack: {cfg}. Kinks: |pre-activation| < 10⁻³ × the "
            "layer's median over the members.\n\n" + "\n".join(rows1) + "\n\n" + "\n".join(rows2) + "\n")
    publish(text, append=not args.no_append)


if __name__ == "__main__":
    main()
