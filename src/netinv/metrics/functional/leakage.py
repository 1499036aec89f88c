"""Member vs non-member figures for a reconstruction score (netinv's evaluation protocol,
docs: shared/reference/evaluation.md): a training image counts as leaked only when it is matched better than
held-out images of the same distribution that the model never saw.

- τ: the ``quantile`` (default 0.95) of the held-out scores;
- leaked: the training images scoring strictly above τ (number and fraction);
- AUC: P(train score > held-out score) + ½ P(equal), the Mann-Whitney U statistic over n_train·n_heldout
  (0.5 = no leakage, 1 = every training image matched better than every held-out one).
"""

from __future__ import annotations

import math

import torch

from ..._errors import DataError


def _scores(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().flatten().to(torch.float64).cpu()
    if x.numel() == 0:
        raise DataError(f"no {name} scores", f"give at least one {name} score")
    if not torch.isfinite(x).all():
        raise DataError(f"{name} scores contain NaN or inf", "score finite values only")
    return x


def mann_whitney_auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(pos > neg) + ½ P(pos = neg) over all pairs, from average ranks (ties get the mean rank).

    Args:
        pos: scores of the positive group (e.g. training images), any shape.
        neg: scores of the negative group (e.g. held-out images).

    Returns:
        The AUC in [0, 1].

    Raises:
        DataError: an empty group or non-finite scores.

    Example:
        >>> mann_whitney_auc(torch.tensor([3., 2.]), torch.tensor([2., 1.]))
        0.875
    """
    p, n = _scores(pos, "positive (e.g. training)"), _scores(neg, "negative (e.g. held-out)")
    allv = torch.cat([p, n])
    uniq, inverse, counts = torch.unique(allv, return_inverse=True, return_counts=True)  # uniq ascending
    # average 1-based rank of each distinct value: ranks start+1 .. start+count -> start + (count+1)/2
    avg_rank = torch.cumsum(counts, 0).to(torch.float64) - (counts.to(torch.float64) - 1) / 2
    r_pos = avg_rank[inverse[: p.numel()]].sum()
    u = r_pos - p.numel() * (p.numel() + 1) / 2
    return float(u / (p.numel() * n.numel()))


def leakage_threshold(heldout_scores: torch.Tensor, quantile: float = 0.95) -> float:
    """τ: the ``quantile`` of the held-out scores (linear interpolation, as numpy's default).

    Example:
        >>> leakage_threshold(torch.arange(21.0))
        19.0
    """
    if not 0.0 <= quantile <= 1.0:
        raise DataError(f"quantile {quantile} is outside [0, 1]", "use e.g. 0.95")
    s = _scores(heldout_scores, "held-out")
    if s.numel() > 2**24:  # torch.quantile's limit: numpy's percentile, the same linear interpolation
        import numpy as np

        return float(np.quantile(s.numpy(), quantile))
    return float(torch.quantile(s, quantile))


def leaked(train_scores: torch.Tensor, tau: float) -> tuple[int, float]:
    """(number, fraction) of training scores strictly above ``tau``.

    Example:
        >>> leaked(torch.tensor([0.1, 0.5, 0.9, 0.5]), 0.5)
        (1, 0.25)
    """
    s = _scores(train_scores, "training")
    if not math.isfinite(tau):  # NaN would count nothing as leaked, silently
        raise DataError(f"tau is {tau}", "give the finite threshold leakage_threshold returns")
    k = int((s > tau).sum())
    return k, k / s.numel()


def membership_auc(train_scores: torch.Tensor, heldout_scores: torch.Tensor) -> float:
    """AUC of training (members) vs held-out (non-members) scores; see :func:`mann_whitney_auc`."""
    return mann_whitney_auc(train_scores, heldout_scores)
