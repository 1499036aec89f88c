"""Diversity (mean pairwise distance), margins and class assignment against loops and hand values."""

from __future__ import annotations

import math

import pytest
import torch

from netinv._errors import DataError
from netinv.metrics.functional import (
    class_assignment,
    class_probabilities,
    margins,
    mean_pairwise_distance,
    per_class_mean_pairwise_distance,
)


def loop_mean_distance(x: torch.Tensor) -> float:
    f = x.flatten(1).double()
    d = [float((f[i] - f[j]).norm()) for i in range(len(f)) for j in range(len(f)) if i != j]
    return sum(d) / len(d)


def test_mean_pairwise_distance():
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])) == pytest.approx(4.0)
    x = torch.rand(17, 1, 4, 4)
    assert mean_pairwise_distance(x, chunk_size=5) == pytest.approx(loop_mean_distance(x), abs=1e-10)
    assert mean_pairwise_distance(torch.ones(9, 3)) == 0.0  # identical samples: no diversity
    assert math.isnan(mean_pairwise_distance(torch.rand(1, 4)))


def test_per_class():
    x, y = torch.rand(12, 5), torch.tensor([0, 1, 2] * 4)
    d = per_class_mean_pairwise_distance(x, y, num_classes=4)
    assert d[1] == pytest.approx(loop_mean_distance(x[y == 1]))
    assert math.isnan(d[3]) and set(d) == {0, 1, 2, 3}
    with pytest.raises(DataError, match="one label per sample"):
        per_class_mean_pairwise_distance(x, y[:5])


def test_margins_binary_and_multiclass():
    assert margins(torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([0, 0, 1])).tolist() == [-2.0, 1.0, 0.5]
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.0], [1.0, 4.0, -1.0]])
    assert margins(z, torch.tensor([0, 2, 2])).tolist() == [1.0, 0.0, -5.0]  # z_y − max_{k≠y} z_k


def test_class_assignment():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0]])
    r = class_assignment(z, torch.tensor([0, 0, 1]))
    p = torch.softmax(z, 1)
    assert r["assigned_fraction"] == pytest.approx(2 / 3)
    assert r["mean_confidence"] == pytest.approx(float((p[0, 0] + p[1, 0] + p[2, 1]) / 3))
    zb = torch.tensor([[1.0], [-2.0]])
    assert class_probabilities(zb, torch.tensor([1, 1])).tolist() == pytest.approx(
        [float(torch.sigmoid(torch.tensor(1.0))), float(torch.sigmoid(torch.tensor(-2.0)))])
    assert class_assignment(zb, torch.tensor([1, 0]))["assigned_fraction"] == 1.0
    with pytest.raises(DataError, match="labels outside"):
        margins(zb, torch.tensor([2, 0]))


def test_on_margin():
    from netinv._errors import ConfigError
    from netinv.metrics import on_margin

    m = torch.tensor([5.0, 5.4, 5.6, 9.0, -1.0, 0.0])
    assert on_margin(m).tolist() == [True, True, False, False, False, False]  # ≤ 1.1 × 5
    assert on_margin(m, rel_tol=0.2).tolist() == [True, True, True, False, False, False]
    assert on_margin(m, rel_tol=0.0).tolist() == [True, False, False, False, False, False]
    assert not on_margin(torch.tensor([-1.0, -2.0])).any()  # nothing classified correctly: nothing on the margin
    with pytest.raises(ConfigError, match="rel_tol"):
        on_margin(m, rel_tol=-0.1)
