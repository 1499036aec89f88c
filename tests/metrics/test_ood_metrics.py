"""AUROC, AUPR and FPR@95%TPR on hand arrays and against scikit-learn (a test oracle only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from netinv._errors import DataError
from netinv.metrics.functional import aupr, auroc, fpr_at_95_tpr, fpr_at_tpr, ood_metrics


def sk_fpr(scores: np.ndarray, targets: np.ndarray, level: float = 0.95) -> float:
    fpr, tpr, _ = roc_curve(targets, scores, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= level)])


def test_hand_values():
    s, t = torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0])
    assert auroc(s, t) == 0.75
    assert aupr(s, t) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)  # recall steps ½ at P=1 and ½ at P=2/3
    assert fpr_at_95_tpr(s, t) == 0.5
    assert fpr_at_tpr(s, t, 0.5) == 0.0
    # perfect separation and ties
    assert auroc(torch.tensor([2.0, 3.0, 0.0]), torch.tensor([1, 1, 0])) == 1.0
    assert aupr(torch.tensor([1.0, 1.0]), torch.tensor([1, 0])) == 0.5
    assert fpr_at_95_tpr(torch.tensor([1.0, 1.0]), torch.tensor([1, 0])) == 1.0


@pytest.mark.parametrize("seed,levels", [(0, 4), (1, 20), (2, 10_000)])
def test_match_sklearn_with_ties(seed, levels):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, 300)
    s = np.round((rng.random(300) + 0.4 * t) * levels) / levels
    st, tt = torch.from_numpy(s), torch.from_numpy(t)
    assert auroc(st, tt) == pytest.approx(roc_auc_score(t, s), abs=1e-12)
    assert aupr(st, tt) == pytest.approx(average_precision_score(t, s), abs=1e-12)
    for level in (0.95, 0.8, 1.0):
        assert fpr_at_tpr(st, tt, level) == pytest.approx(sk_fpr(s, t, level), abs=1e-12)


def test_ood_metrics_conventions():
    rng = np.random.default_rng(5)
    s_in, s_out = torch.from_numpy(rng.normal(1, 1, 50)), torch.from_numpy(rng.normal(0, 1, 70))
    m = ood_metrics(s_in, s_out)
    s = np.concatenate([s_in.numpy(), s_out.numpy()])
    t = np.concatenate([np.ones(50), np.zeros(70)])
    assert m["auroc"] == pytest.approx(roc_auc_score(t, s))
    assert m["aupr_in"] == pytest.approx(average_precision_score(t, s))
    assert m["aupr_out"] == pytest.approx(average_precision_score(1 - t, -s))
    assert m["fpr95"] == pytest.approx(sk_fpr(s, t))
    # a score where higher means OOD (e.g. garbage-class probability) gives the same figures once declared
    assert ood_metrics(-s_in, -s_out, higher_means="out") == pytest.approx(m)


def test_errors():
    with pytest.raises(DataError, match="one class"):
        auroc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    with pytest.raises(DataError, match="binary"):
        aupr(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]))
    with pytest.raises(DataError, match="targets"):
        auroc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1]))


def test_empty_scores_say_so():
    """Audit O: empty input was reported as 'targets hold only one class'."""
    with pytest.raises(DataError, match="no scores"):
        auroc(torch.zeros(0), torch.zeros(0))
