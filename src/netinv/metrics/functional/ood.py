"""Out-of-distribution detection metrics (used by the garbage-class OOD application, arXiv 2505.23448, against the
maximum-softmax-probability baseline of Hendrycks & Gimpel 2017): AUROC, AUPR (average precision) and FPR at 95% TPR.

Each takes ``scores`` (higher = more positive) and binary ``targets`` (1 = positive). Tied scores are one threshold,
as in scikit-learn (``roc_auc_score``, ``average_precision_score``, ``roc_curve``); :func:`ood_metrics` fixes the
usual OOD convention: in-distribution inputs are the positives.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..._errors import DataError
from .leakage import mann_whitney_auc


def _check(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores).detach().flatten().to(torch.float64).cpu()
    t = torch.as_tensor(targets).detach().flatten().cpu()
    if s.numel() != t.numel():
        raise DataError(f"{s.numel()} scores but {t.numel()} targets", "give one target per score")
    if s.numel() == 0:
        raise DataError("no scores", "give scores and targets for both positives and negatives")
    if not torch.isfinite(s).all():
        raise DataError("scores contain NaN or inf", "score finite values only")
    if not torch.isin(t.to(torch.int64), torch.tensor([0, 1])).all() or (t.float() != t.to(torch.int64)).any():
        raise DataError("targets are not binary", "give targets as 0 (negative) / 1 (positive)")
    t = t.to(torch.bool)
    if t.all() or not t.any():
        raise DataError("targets hold only one class", "give both positives and negatives")
    return s, t


def _curve(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """True and false positive counts at each distinct threshold, from the highest score down."""
    order = torch.argsort(s, descending=True, stable=True)
    s, t = s[order], t[order].to(torch.float64)
    last = torch.ones_like(s, dtype=torch.bool)  # last position of each run of tied scores
    last[:-1] = s[1:] != s[:-1]
    tps = torch.cumsum(t, 0)[last]
    fps = torch.cumsum(1 - t, 0)[last]
    return tps, fps


def auroc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Area under the ROC curve (ties count ½), = the Mann-Whitney U over positives × negatives.

    Example:
        >>> auroc(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0]))
        0.75
    """
    s, t = _check(scores, targets)
    return mann_whitney_auc(s[t], s[~t])


def aupr(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Area under the precision-recall curve as average precision, Σ (R_k − R_{k−1}) P_k (scikit-learn's).

    Example:
        >>> round(aupr(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0])), 4)
        0.8333
    """
    s, t = _check(scores, targets)
    tps, fps = _curve(s, t)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    d_recall = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype))
    return float((d_recall * precision).sum())


def fpr_at_tpr(scores: torch.Tensor, targets: torch.Tensor, tpr: float = 0.95) -> float:
    """False positive rate at the highest threshold whose true positive rate reaches ``tpr``.

    Example:
        >>> fpr_at_tpr(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0]))
        0.5
    """
    if not 0.0 < tpr <= 1.0:
        raise DataError(f"TPR level {tpr} is outside (0, 1]", "use e.g. 0.95")
    s, t = _check(scores, targets)
    tps, fps = _curve(s, t)
    k = int(torch.nonzero(tps / tps[-1] >= tpr - 1e-12)[0])  # the first (highest) threshold reaching the level
    return float(fps[k] / fps[-1])


def fpr_at_95_tpr(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """:func:`fpr_at_tpr` at 95% TPR."""
    return fpr_at_tpr(scores, targets, 0.95)


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor, *,
                higher_means: Literal["in", "out"] = "in") -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95%TPR with in-distribution inputs as the positives.

    Args:
        in_scores: scores of in-distribution inputs.
        out_scores: scores of out-of-distribution inputs.
        higher_means: ``in`` when a higher score means in-distribution (e.g. maximum softmax probability),
            ``out`` when it means OOD (e.g. garbage-class probability); scores are negated for ``out``.

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "fpr95"}``; FPR@95 is the fraction of OOD inputs accepted when 95% of
        in-distribution inputs are.
    """
    if higher_means not in ("in", "out"):
        raise DataError(f"higher_means={higher_means!r}", "use 'in' or 'out'")
    sign = 1.0 if higher_means == "in" else -1.0
    s_in = sign * torch.as_tensor(in_scores).flatten().to(torch.float64)
    s_out = sign * torch.as_tensor(out_scores).flatten().to(torch.float64)
    s = torch.cat([s_in, s_out])
    t = torch.cat([torch.ones(s_in.numel()), torch.zeros(s_out.numel())])
    return {"auroc": auroc(s, t), "aupr_in": aupr(s, t), "aupr_out": aupr(-s, 1 - t), "fpr95": fpr_at_95_tpr(s, t)}
