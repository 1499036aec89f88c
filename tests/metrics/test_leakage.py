"""τ, leaked counts and the member vs non-member AUC on hand arrays and against a brute-force pair count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netinv._errors import DataError
from netinv.metrics.functional import leakage_threshold, leaked, mann_whitney_auc, membership_auc


def pair_count_auc(pos: list[float], neg: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_by_hand():
    assert mann_whitney_auc(torch.tensor([3.0, 2.0]), torch.tensor([2.0, 1.0])) == 0.875  # 1 + 1 + ½ + 1 of 4
    assert mann_whitney_auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5  # all tied
    assert membership_auc(torch.tensor([5.0, 6.0]), torch.tensor([1.0, 2.0, 3.0])) == 1.0
    assert membership_auc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == 0.0


@pytest.mark.parametrize("n_pos,n_neg,levels", [(7, 5, 3), (40, 60, 6), (1, 9, 2), (30, 30, 1000)])
def test_auc_matches_pair_count_with_ties(n_pos, n_neg, levels):
    g = torch.Generator().manual_seed(n_pos * n_neg + levels)
    pos = torch.randint(0, levels, (n_pos,), generator=g).double() / levels
    neg = torch.randint(0, levels, (n_neg,), generator=g).double() / levels - 0.1
    assert mann_whitney_auc(pos, neg) == pytest.approx(pair_count_auc(pos.tolist(), neg.tolist()), abs=1e-12)


def test_tau_and_leaked_by_hand():
    assert leakage_threshold(torch.arange(21.0)) == 19.0  # 0.95 · 20 = 19th value
    assert leakage_threshold(torch.tensor([0.0, 1.0]), 0.5) == 0.5  # linear interpolation
    h = np.random.default_rng(0).random(37)
    assert leakage_threshold(torch.from_numpy(h)) == pytest.approx(float(np.percentile(h, 95)))
    assert leaked(torch.tensor([0.1, 0.5, 0.9, 0.5]), 0.5) == (1, 0.25)  # strictly above τ
    assert leaked(torch.tensor([0.6, 0.7]), 0.5) == (2, 1.0)


def test_errors():
    with pytest.raises(DataError, match="no negative"):
        mann_whitney_auc(torch.tensor([1.0]), torch.tensor([]))
    with pytest.raises(DataError, match="NaN"):
        leaked(torch.tensor([float("nan")]), 0.5)
    with pytest.raises(DataError, match="quantile"):
        leakage_threshold(torch.tensor([1.0]), 95)


def test_a_nan_threshold_and_huge_score_sets(monkeypatch):
    """Audit O: leaked(scores, nan) returned (0, 0.0) silently; more than 2**24 held-out scores raised torch's own
    quantile error. The threshold then comes from numpy's percentile, the same linear interpolation."""
    with pytest.raises(DataError, match="tau is nan"):
        leaked(torch.tensor([0.1, 0.9]), float("nan"))
    big = torch.rand(2**24 + 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert leakage_threshold(big) == pytest.approx(float(np.quantile(big.numpy(), 0.95)), abs=0)
