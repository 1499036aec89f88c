"""An audit's report: ``report.md`` (readable anywhere), ``report.html`` (the same, figures embedded) and
``report.json`` (machine-readable). The headline always stands beside its null baselines."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

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


#: the verdict calls an AUC leakage only below this one-sided p-value against chance (ours)
P_LEAK = 0.01


def verdict(summary: dict[str, dict[str, Any]], n_train: int, margin_leakage: dict[str, Any] | None = None,
            n_heldout: int | None = None) -> str:
    """One sentence a privacy auditor can act on, with the baselines that make it mean something (and, when the
    evaluation had the model, one on the training images on the margin). With ``n_heldout`` (the non-members τ and
    the AUC were computed on), an AUC must also be significant against chance (:func:`auc_p_value` < ``P_LEAK``)."""
    a, noise, real, mean = summary["attack"], summary["noise"], summary["real_heldout"], summary.get("mean_image")
    nulls = [noise, real, *([mean] if mean else [])]  # the attack is judged against the strongest of them
    # decide on the printed figures, in hundredths (integers: 0.66 − 0.61 must equal 0.71 − 0.66)
    def hundredths(v: float) -> int:
        return round(100 * v)

    def p(fig: dict[str, Any]) -> float | None:
        return auc_p_value(fig["auc"], n_train, n_heldout) if n_heldout and n_train else None

    def measurable(fig: dict[str, Any], against: list[dict[str, Any]]) -> bool:  # AUC > 0.55 and 0.05 above them
        auc = hundredths(fig["auc"])
        significant = p(fig) is None or p(fig) < P_LEAK
        return auc > 55 and auc - hundredths(max(b["auc"] for b in against)) > 5 and significant

    auc = hundredths(a["auc"])
    stand_out = hundredths(a["frac_leaked"]) > hundredths(max(b["frac_leaked"] for b in nulls))
    mean_leaks = mean is not None and measurable(mean, [noise, real])
    level = ("no measurable" if not measurable(a, nulls) else "clear" if auc >= 75 and auc - hundredths(
        max(b["auc"] for b in nulls)) > 10 and stand_out else "some" if stand_out else "weak")
    # Haim et al. count a reconstruction at SSIM > 0.4: below that the candidates tell members apart without
    # resembling them, which is membership leakage, not reconstruction
    faint = a.get("best_mean_ssim") is not None and a["best_mean_ssim"] < 0.4 and level != "no measurable"
    pa = p(a)
    chance = "" if pa is None else f", p {'< 0.001' if pa < 1e-3 else f'= {pa:.2g}'} against chance"
    head = (f"{level.capitalize()} leakage" + (" by the attack beyond the mean image" if mean_leaks and level ==
                                               "no measurable" else ""))
    return (f"{head}: {a['n_leaked']} of {n_train} training images ({a['frac_leaked']:.0%}) "
            f"are matched better than 95% of non-members (member vs non-member AUC {a['auc']:.2f}{chance}; "
            f"0.50 = nothing). Null baselines: uniform noise {noise['frac_leaked']:.0%} / AUC {noise['auc']:.2f}, "
            f"real non-member images {real['frac_leaked']:.0%} / AUC {real['auc']:.2f}" +
            (f", the model's mean image alone {mean['frac_leaked']:.0%} / AUC {mean['auc']:.2f}" if mean else "")
            + "." +
            (" Members are matched better than non-members on average, but no more of them stand out than with the "
             "null candidates: a membership signal, not reconstructed images." if level == "weak" else "") +
            (f" The best matches do not resemble their training images (mean SSIM of the best 10: "
             f"{a['best_mean_ssim']:.2f}; Haim et al. count a reconstruction above 0.4): the candidates separate "
             "members from non-members without reconstructing them." if faint else "") +
            (f" The model's mean image alone (the average of the members, shipped with the model) separates members "
             f"from non-members (AUC {mean['auc']:.2f}): publishing it discloses membership by itself, and the "
             "attack is judged against it." if mean_leaks else "") +
            (f" Of the {margin_leakage['n_on_margin']} training images on the margin (within "
             f"{margin_leakage['rel_tol']:.0%} of the smallest margin: those a KKT attack can recover), "
             f"{margin_leakage['leaked']['attack']} leaked." if margin_leakage else ""))


def render(title: str, evaluation: dict[str, Any], table: str, figures: dict[str, str], info: dict[str, Any],
           out: str | Path) -> dict[str, Path]:
    """Write the three report files into ``out`` and return their paths.

    Args:
        title: the report's heading.
        evaluation: ``Evaluation.to_dict()``.
        table: ``Evaluation.table()``.
        figures: caption -> PNG path (shown in this order).
        info: settings shown at the end (model, data, attack config, seed, times).
        out: the folder.
    """
    out = Path(out)
    n_train = evaluation["settings"]["n_train"]
    head = verdict(evaluation["summary"], n_train, evaluation.get("margin_leakage"),
                   evaluation["settings"].get("n_heldout_tau"))
    settings = "\n".join(f"- **{k}**: `{v}`" for k, v in info.items())
    md = [f"# {title}", "", head, "", "```", table, "```", ""]
    md += [f"![{cap}]({Path(p).resolve().relative_to(out.resolve()) if _inside(p, out) else p})\n\n*{cap}*\n"
           for cap, p in figures.items()]
    md += ["## Settings", "", settings, "",
           "How to read this: a training image counts as leaked when its best reconstruction matches it better "
           "(SSIM after NCC matching) than 95% of held-out images the model never saw are matched. Real images "
           "that were never in the training set also look like the data; only the member vs non-member comparison "
           "separates leakage from 'looks like the data'. The mean-image row (when the model has a mean image) is "
           "what the released mean of the members gives alone.", ""]
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
            f"<pre>{html.escape(table)}</pre>{figs}<h2>Settings</h2><table>{rows}</table></body></html>")
    atomic_write_bytes(paths["html"], page.encode())
    write_json(paths["json"], {"title": title, "verdict": head, "summary": evaluation["summary"], "info": info,
                               "figures": figures})
    return paths


def _inside(path: str | Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
