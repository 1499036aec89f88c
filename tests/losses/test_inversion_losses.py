"""Generator-inversion / TLDR loss terms against hand-computed values and per-sample references."""

from __future__ import annotations

import math

import pytest
import torch

from netinv import ConfigError
from netinv.losses import (
    ce_to_label,
    feature_cosine,
    feature_orthogonality,
    kl_to_target,
    param_grad_norm,
    pixel_range,
    total_variation,
)


def test_kl_hand_values():
    # uniform logits over 2 classes vs one-hot target: KL = log 2; vs the uniform target: 0
    assert kl_to_target(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log(2))
    assert kl_to_target(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]])).item() == pytest.approx(0.0, abs=1e-7)
    # P = (0.25, 0.75), Q = softmax(0, log 3) = (0.25, 0.75): 0
    q = torch.tensor([[0.0, math.log(3)]])
    assert kl_to_target(q, torch.tensor([[0.25, 0.75]])).item() == pytest.approx(0.0, abs=1e-6)
    # P = (0.5, 0.5), Q = (0.25, 0.75): 0.5 log 2 + 0.5 log(2/3)
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_to_target(q, torch.tensor([[0.5, 0.5]])).item() == pytest.approx(want, rel=1e-5)


def test_kl_matches_torch_reference_and_reductions():
    logits, p = torch.randn(7, 5), torch.softmax(torch.randn(7, 5), 1)
    ref = torch.nn.functional.kl_div(torch.log_softmax(logits, 1), p, reduction="none").sum(1)
    torch.testing.assert_close(kl_to_target(logits, p, reduction="none"), ref)
    assert kl_to_target(logits, p, reduction="sum").item() == pytest.approx(ref.sum().item(), rel=1e-5)
    with pytest.raises(ConfigError, match="does not match"):
        kl_to_target(logits, p[:, :4])


def test_binary_single_logit_is_read_as_two_classes():
    z = torch.tensor([[2.0], [-1.0]])
    p1 = torch.sigmoid(z[:, 0])
    want = -(torch.log(p1[0]) + torch.log(1 - p1[1])) / 2
    assert ce_to_label(z, torch.tensor([1, 0])).item() == pytest.approx(want.item(), rel=1e-6)
    assert kl_to_target(z, torch.tensor([[0.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(want.item(), rel=1e-6)


def test_feature_cosine_hand_values():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # pairs: (0,1) 0, (0,2) 1/√2, (1,2) 1/√2 -> mean of the 6 ordered pairs = √2/3
    assert feature_cosine(f).item() == pytest.approx(math.sqrt(2) / 3, rel=1e-6)
    # same-group pairs only: groups {0,2} and {1}: the one pair (0,2) -> 1/√2
    assert feature_cosine(f, groups=torch.tensor([0, 1, 0])).item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert feature_cosine(f[:1]).item() == 0.0  # no pair
    assert feature_cosine(torch.ones(4, 3)).item() == pytest.approx(1.0)  # identical features: 1


def test_feature_orthogonality_hand_values():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # Gram of normalised rows minus I: off-diagonal squares 0, ½, ½ twice each -> 2
    assert feature_orthogonality(f, reduction="sum").item() == pytest.approx(2.0, rel=1e-6)
    assert feature_orthogonality(f).item() == pytest.approx(2.0 / 9, rel=1e-6)
    assert feature_orthogonality(torch.eye(4) * 5, reduction="sum").item() == pytest.approx(0.0, abs=1e-7)
    # groups: entries kept = 3 diagonal + the (0,2),(2,0) pair -> sum ½+½ = 1, mean 1/5
    g = torch.tensor([0, 1, 0])
    assert feature_orthogonality(f, groups=g, reduction="sum").item() == pytest.approx(1.0, rel=1e-6)
    assert feature_orthogonality(f, groups=g).item() == pytest.approx(0.2, rel=1e-6)


def test_diversity_terms_are_differentiable():
    f = torch.randn(6, 4, requires_grad=True)
    (feature_cosine(f) + feature_orthogonality(f)).backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_total_variation_hand_values():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    # vertical differences 0, 0; horizontal 1, 1 -> mean |Δh| = 0, mean |Δw| = 1
    assert total_variation(x).item() == pytest.approx(1.0)
    assert total_variation(2 * x, p=2).item() == pytest.approx(4.0)
    assert total_variation(torch.rand(3, 5)).item() == 0.0  # flat inputs have no neighbours


def test_pixel_range_hand_values():
    x = torch.tensor([[1.5, 0.5, -1.0]])
    assert pixel_range(x).item() == pytest.approx((0.25 + 0 + 1) / 3)
    assert pixel_range(x, lo=-1.0, hi=2.0).item() == 0.0


def test_param_grad_norm_matches_hand_gradient_and_double_backward():
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    x = torch.tensor([1.0, 1.0])
    loss = 0.5 * (w * x).sum() ** 2  # dL/dw = (w·x) x = (7, 7) -> norm 7√2
    g = param_grad_norm(loss, [w])
    assert g.item() == pytest.approx(7 * math.sqrt(2), rel=1e-6)
    g.backward()  # ‖∇‖ = |w·x|·‖x‖, so d‖∇‖/dw = ‖x‖·x = √2·(1, 1): the double backward is right
    torch.testing.assert_close(w.grad, torch.full((2,), math.sqrt(2)))
    loss2 = 0.5 * (w * x).sum() ** 2
    assert param_grad_norm(loss2, [w], squared=True).item() == pytest.approx(98.0, rel=1e-6)
    with pytest.raises(ConfigError, match="no parameters"):
        param_grad_norm(loss2, [torch.zeros(2)])
