"""An audit's report: ``report.md`` (readable anywhere), ``report.html`` (the same, figures embedded) and
``report.json`` (machine-readable). The headline always stands beside its null baselines."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import torch

from .._utils.checkpoint import atomic_write_bytes, write_json
from .figures import png_data_uri


def auc_p_value(auc: float, n_members: int, n_nonmembers: int) -> float:
    """One-sided p-value of a member vs non-member AUC against chance (0.5): the Mann-Whitney normal approximation,
    σ = √((n₁ + n₂ + 1) / (12 n₁ n₂)) (ties ignored). With 20 members an AUC of 0.60 is still p ≈ 0.06: the fixed
    margins of the verdict alone would call noise leakage in small audits.

    Example:
        >>> round(auc_p_value(0.6, 20, 1000), 3), auc_p_value(0.69, 100, 1497) < 1e-9
        (0.063, True)
    """
    sd = math.sqrt((n_members + n_nonmembers + 1) / (12 * n_members * n_nonmembers))
    return 0.5 * math.erfc((auc - 0.5) / sd / math.sqrt(2))


def above_tau_p_value(k: int, n: int, n_nonmembers: int | None, null_rate: float = 0.0) -> float:
    """One-sided p-value of ``k`` of ``n`` members scoring above τ (the 95th percentile of ``n_nonmembers`` held-out
    scores, numpy's linear interpolation) when members are no different: the larger of Fisher's exact test against
    the held-out images above τ (m − 1 − ⌊0.95 (m − 1)⌋ of the m: it accounts for τ being estimated from a finite
    sample) and a binomial tail at the strongest null candidate set's own rate ``null_rate`` (the attack must beat
    noise, real non-members and the mean image too). Checked against scipy's ``fisher_exact`` and ``binom.sf`` and by
    simulation (audit O): under the null it stays at or below its level.
    The auditor's 20 % of 50 members against 6 % for the best null gives p ≈ 0.002, where the AUC (0.59) gave only
    p = 0.027.

    Example:
        >>> round(above_tau_p_value(10, 50, 207, 0.06), 4), round(above_tau_p_value(3, 20, 300), 3)
        (0.0021, 0.093)
    """
    q = max(0.05, null_rate)
    if k <= 0 or q >= 1:
        return 1.0
    i = torch.arange(k, n + 1, dtype=torch.float64)  # log space: CIFAR-sized sets overflow floats otherwise
    binom = _sum_exp(_log_comb(n, i) + i * math.log(q) + (n - i) * math.log1p(-q))
    if not n_nonmembers:
        return min(1.0, binom)
    h = n_nonmembers - 1 - (95 * (n_nonmembers - 1)) // 100  # held-out images above their 95th percentile
    total, above = n + n_nonmembers, k + h
    i = torch.arange(k, min(n, above) + 1, dtype=torch.float64)
    fisher = _sum_exp(_log_comb(above, i) + _log_comb(total - above, n - i) - _log_comb(total, n))
    return min(1.0, max(fisher, binom))


def _log_comb(n: float | torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    n, k = torch.as_tensor(n, dtype=torch.float64), torch.as_tensor(k, dtype=torch.float64)
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def _sum_exp(log_terms: torch.Tensor) -> float:
    return float(torch.logsumexp(log_terms, 0).exp()) if log_terms.numel() else 0.0


#: printed under a summary over several seeds
CAVEAT_SEEDS = ("This is one attack (KKT reconstruction) with these settings, over these seeds: more seeds or other "
                "settings may recover more members, and a run that finds no leakage does not prove that the weights "
                "leak nothing, only that this attack did not show it.")
#: the verdict's levels, mildest first (the worst of several seeds is the last of theirs in this order)
LEVELS = ("none", "inconclusive", "weak", "some", "clear")
#: the verdict's false-call rates (ours): leakage below P_LEAK, inconclusive below P_HINT. It runs two tests (the AUC
#: and the share above τ), each at half the rate (Bonferroni): at 1% each, null draws gave a call on either test in
#: 1.1–1.8% of cases (audit O, 20 000 draws per setting)
P_LEAK = 0.01
P_HINT = 0.05
_TESTS = 2
#: printed under every verdict: what one run of one attack can and cannot show
CAVEAT = ("This is one attack (KKT reconstruction) with one seed and these settings: other seeds and settings "
          "recover other members, so for a release decision run several seeds (--seeds 0,1,2) and take the worst; "
          "and a run that finds no leakage does not prove that the weights leak nothing, only that this attack did "
          "not show it.")


def format_p(v: float | None) -> str:
    """A p-value as the reports print it: ``< 0.001``, two significant digits, or ``-`` when there is none.

    Example:
        >>> format_p(0.00021), format_p(0.0271), format_p(None)
        ('< 0.001', '0.027', '-')
    """
    return "-" if v is None else "< 0.001" if v < 1e-3 else f"{v:.2g}"


def verdict(summary: dict[str, dict[str, Any]], n_train: int, margin_leakage: dict[str, Any] | None = None,
            n_heldout: int | None = None) -> str:
    """One sentence a privacy auditor can act on (:func:`assess`'s ``verdict``)."""
    return assess(summary, n_train, margin_leakage, n_heldout)["verdict"]


def assess(summary: dict[str, dict[str, Any]], n_train: int, margin_leakage: dict[str, Any] | None = None,
           n_heldout: int | None = None) -> dict[str, Any]:
    """The verdict with its level and p-values: ``level`` (clear / some / weak / inconclusive / none), ``p_auc``
    (:func:`auc_p_value`, with ``n_heldout``), ``p_above_tau`` (:func:`above_tau_p_value`) and ``verdict``, one
    sentence with the baselines that make it mean something (and, when the evaluation had the model, one on the
    training images on the margin).

    Leakage is called on either of two figures, each above every null candidate set (noise, real non-members, the
    model's mean image) and significant at ``P_LEAK`` / 2 (two tests: at most ``P_LEAK`` false calls together): the
    member vs non-member AUC (average separation), or the share of members above τ (a subset reconstructed better
    than non-members are matched: what a privacy audit cares about most). Evidence short of that but below
    ``P_HINT`` / 2 is called inconclusive, never "no leakage"."""
    a, noise, real, mean = summary["attack"], summary["noise"], summary["real_heldout"], summary.get("mean_image")
    nulls = [noise, real, *([mean] if mean else [])]  # the attack is judged against the strongest of them
    # decide on the printed figures, in hundredths (integers: 0.66 − 0.61 must equal 0.71 − 0.66)
    def hundredths(v: float) -> int:
        return round(100 * v)

    def p(fig: dict[str, Any]) -> float | None:
        return auc_p_value(fig["auc"], n_train, n_heldout) if n_heldout and n_train else None

    def auc_above(fig: dict[str, Any], against: list[dict[str, Any]], alpha: float) -> bool:  # > 0.55, 0.05 above
        auc = hundredths(fig["auc"])
        significant = p(fig) is None or p(fig) < alpha
        return auc > 55 and auc - hundredths(max(b["auc"] for b in against)) > 5 and significant

    auc = hundredths(a["auc"])
    null_frac = max(b["frac_leaked"] for b in nulls)
    stand_out = hundredths(a["frac_leaked"]) > hundredths(null_frac)
    # the share's minimum effect, as the AUC's (0.05 above the nulls): 6% against 5% is significant with 60 000
    # members but is not a reconstruction of the training set
    stands_clear = hundredths(a["frac_leaked"]) - hundredths(null_frac) >= 5
    p_tail = above_tau_p_value(int(a["n_leaked"]), n_train, n_heldout, null_frac) if n_train else 1.0
    leak, hint = P_LEAK / _TESTS, P_HINT / _TESTS  # per test
    tail = stands_clear and p_tail < leak
    mean_leaks = mean is not None and auc_above(mean, [noise, real], P_LEAK)  # one test: the mean's AUC
    if auc_above(a, nulls, leak):
        level = "clear" if auc >= 75 and auc - hundredths(max(b["auc"] for b in nulls)) > 10 and stand_out else \
            "some" if tail or stand_out else "weak"
    elif tail:
        level = "some"
    elif auc_above(a, nulls, hint) or (stands_clear and p_tail < hint):
        level = "inconclusive"
    else:
        level = "none"
    # Haim et al. count a reconstruction at SSIM > 0.4: below that the candidates tell members apart without
    # resembling them, which is membership leakage, not reconstruction
    faint = a.get("best_mean_ssim") is not None and a["best_mean_ssim"] < 0.4 and level in ("clear", "some", "weak")
    pa = p(a)

    def fmt(v: float) -> str:  # "p < 0.001", "p = 0.027"
        s = format_p(v)
        return s if s.startswith("<") else f"= {s}"

    chance = "" if pa is None else f", p {fmt(pa)} against chance"
    head = {"clear": "Clear leakage", "some": "Some leakage", "weak": "Weak leakage",
            "inconclusive": "Inconclusive: possible leakage",
            "none": "No measurable leakage" + (" by the attack beyond the mean image" if mean_leaks else "")}[level]

    def images(count: int) -> str:
        return "training image" if count == 1 else "training images"

    sentence = (
        f"{head}: {a['n_leaked']} of {n_train} {images(n_train)} ({a['frac_leaked']:.0%}) are matched better than "
        f"95% of non-members (p {fmt(p_tail)} against the null candidates; member vs non-member AUC "
        f"{a['auc']:.2f}{chance}; 0.50 = nothing). Null baselines: uniform noise {noise['frac_leaked']:.0%} / AUC "
        f"{noise['auc']:.2f}, real non-member images {real['frac_leaked']:.0%} / AUC {real['auc']:.2f}" +
        (f", the model's mean image alone {mean['frac_leaked']:.0%} / AUC {mean['auc']:.2f}" if mean else "") + "." +
        (f" Leakage is called when the AUC (above 0.55 and 0.05 beyond every null set) or the share above τ (5 "
         f"points beyond every null set) is significant at p < {leak:g}; here the evidence reaches only p < "
         f"{hint:g}: rerun with other seeds (--seeds) or more non-members before concluding either way."
         if level == "inconclusive" else "")
        + (" Members are matched better than non-members on average, but no more of them stand out than with the "
           "null candidates: a membership signal, not reconstructed images." if level == "weak" else "") +
        (f" The best matches do not resemble their training images (mean SSIM of the best 10: "
         f"{a['best_mean_ssim']:.2f}; Haim et al. count a reconstruction above 0.4): the candidates separate "
         "members from non-members without reconstructing them." if faint else "") +
        (f" The model's mean image alone (the average of the members, shipped with the model) separates members "
         f"from non-members (AUC {mean['auc']:.2f}): publishing it discloses membership by itself, and the "
         "attack is judged against it." if mean_leaks else "") +
        (f" Of the {margin_leakage['n_on_margin']} {images(margin_leakage['n_on_margin'])} on the margin (within "
         f"{margin_leakage['rel_tol']:.0%} of the smallest margin: those a KKT attack can recover), "
         f"{margin_leakage['leaked']['attack']} leaked." if margin_leakage else ""))
    return {"level": level, "p_auc": pa, "p_above_tau": p_tail, "verdict": sentence}


def render(title: str, evaluation: dict[str, Any], table: str, figures: dict[str, str], info: dict[str, Any],
           out: str | Path, verdict: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the three report files into ``out`` and return their paths.

    Args:
        title: the report's heading.
        evaluation: ``Evaluation.to_dict()``.
        table: ``Evaluation.table()``.
        figures: caption -> PNG path (shown in this order).
        info: settings shown at the end (model, data, attack config, seed, times).
        out: the folder.
        verdict: :func:`assess` of the evaluation (computed when not given).
    """
    out = Path(out)
    n_train = evaluation["settings"]["n_train"]
    verdict_ = verdict or assess(evaluation["summary"], n_train, evaluation.get("margin_leakage"),
                                 evaluation["settings"].get("n_heldout_tau"))
    head = verdict_["verdict"]
    files = {cap: str(Path(p).resolve().relative_to(out.resolve())) if _inside(p, out) else str(p)
             for cap, p in figures.items()}  # beside the report, wherever the command ran
    settings = "\n".join(f"- **{k}**: `{v}`" for k, v in info.items())
    md = [f"# {title}", "", head, "", CAVEAT, "", "```", table, "```", ""]
    md += [f"![{cap}]({f})\n\n*{cap}*\n" for cap, f in files.items()]
    md += ["## Settings", "", settings, "",
           "How to read this: each training image is matched to its nearest candidate (normalised cross-correlation), "
           "the candidate is min-max scaled to [0, 1] and scored by SSIM against it; a training image counts as "
           "leaked when it scores higher than 95% of held-out images the model never saw (τ). Real images that were "
           "never in the training set also look like the data; only the member vs non-member comparison separates "
           "leakage from 'looks like the data'. The p-values are one-sided: the share above τ against the null "
           "candidates and the held-out images, the AUC against chance." + (
               " The mean-image row is what the model's released mean image (the members' average) gives alone."
               if "mean_image" in evaluation["summary"] else ""), ""]
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    atomic_write_bytes(paths["md"], "\n".join(md).encode())
    figs = "".join(f'<figure><img src="{png_data_uri(p)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
                   f"</figcaption></figure>" for cap, p in figures.items())
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(str(v))}</code></td></tr>"
                   for k, v in info.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
            "pre{background:#f4f4f4;padding:1rem;overflow:auto}figure{display:inline-block;margin:.5rem}"
            "img{max-width:56rem;image-rendering:pixelated}th{text-align:left;padding-right:1rem}"
            f"</style></head><body><h1>{html.escape(title)}</h1><p><strong>{html.escape(head)}</strong></p>"
            f"<p><em>{html.escape(CAVEAT)}</em></p>"
            f"<pre>{html.escape(table)}</pre>{figs}<h2>Settings</h2><table>{rows}</table></body></html>")
    atomic_write_bytes(paths["html"], page.encode())
    write_json(paths["json"], {"title": title, "verdict": head, "level": verdict_["level"],
                               "p_above_tau": verdict_["p_above_tau"], "p_auc": verdict_["p_auc"], "caveat": CAVEAT,
                               "summary": evaluation["summary"], "info": info, "figures": files})
    return paths


def render_seeds(title: str, rows: list[dict[str, Any]], worst: int, out: str | Path) -> dict[str, Path]:
    """The summary of an audit run once per seed: the worst verdict as the headline, one row per seed (level, share
    above τ and its p-value, AUC and its p-value, a link to that seed's report), the spread, and the caveat."""
    out = Path(out)
    w = next(r for r in rows if r["seed"] == worst)
    fracs, aucs = [r["frac_leaked"] for r in rows], [r["auc"] for r in rows]
    p = format_p

    head = f"Worst of {len(rows)} seeds (seed {worst}): {w['verdict']}"
    spread = (f"Over the seeds, {min(fracs):.0%}–{max(fracs):.0%} of the members are above τ and the AUC is "
              f"{min(aucs):.2f}–{max(aucs):.2f}.")
    header = "| seed | verdict | members above τ | p (above τ) | AUC | p (AUC) | report |"
    lines = [f"| {r['seed']} | {r['level']} | {r['n_leaked']} ({r['frac_leaked']:.0%}) | {p(r['p_above_tau'])} | "
             f"{r['auc']:.3f} | {p(r['p_auc'])} | [{r['report']}]({r['report']}) |" for r in rows]
    md = [f"# {title}", "", head, "", spread, "", CAVEAT_SEEDS, "", header,
          "|---|---|---|---|---|---|---|", *lines, ""]
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    atomic_write_bytes(paths["md"], "\n".join(md).encode())
    cells = "".join(f"<tr><td>{r['seed']}</td><td>{r['level']}</td><td>{r['n_leaked']} ({r['frac_leaked']:.0%})</td>"
                    f"<td>{p(r['p_above_tau'])}</td><td>{r['auc']:.3f}</td><td>{p(r['p_auc'])}</td>"
                    f"<td><a href='{html.escape(r['report'])}'>{html.escape(r['report'])}</a></td></tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
            "td,th{padding:.2rem .6rem;text-align:left}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p><strong>{html.escape(head)}</strong></p><p>{html.escape(spread)}"
            f"</p><p><em>{html.escape(CAVEAT_SEEDS)}</em></p><table><tr>"
            "<th>seed</th><th>verdict</th><th>members above τ</th><th>p (above τ)</th><th>AUC</th><th>p (AUC)</th>"
            f"<th>report</th></tr>{cells}</table></body></html>")
    atomic_write_bytes(paths["html"], page.encode())
    write_json(paths["json"], {"title": title, "verdict": head, "level": w["level"], "worst_seed": worst,
                               "p_above_tau": w["p_above_tau"], "p_auc": w["p_auc"], "seeds": rows})
    return paths


def _inside(path: str | Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
