"""Homogeneity in the parameters (what the KKT attack assumes) and the model summary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netinv.models.cnn import CNNSpec
from netinv.models.inspect import homogeneity_report, is_positively_homogeneous, summary
from netinv.models.loaded import LoadedModel
from netinv.models.mlp import MLPSpec


def _mlp(bias: str, widths=(16, 8)) -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(MLPSpec((1, 4, 4), widths, 1, bias).build().eval(), (1, 4, 4), 1)


@pytest.mark.parametrize("widths, degree", [((16,), 2), ((16, 8), 3), ((16, 8, 8), 4)])
def test_bias_free_mlp_is_homogeneous_of_its_depth(widths, degree):
    rep = homogeneity_report(_mlp("none", widths))
    assert rep["homogeneous"] and rep["issues"] == []
    assert rep["degree"] == pytest.approx(degree, abs=1e-6)
    assert rep["max_rel_error"] < 1e-12


def test_first_layer_bias_keeps_homogeneity_in_theta_but_later_biases_break_it():
    first = homogeneity_report(_mlp("first"))
    assert first["homogeneous"] and first["degree"] == pytest.approx(3)
    assert any("bias" in n for n in first["notes"])  # the scan still names it
    allb = homogeneity_report(_mlp("all"))
    assert not allb["homogeneous"]
    assert any("bias in net.3" in i for i in allb["issues"])
    assert not is_positively_homogeneous(_mlp("all"))


def test_batchnorm_cnn_is_flagged_and_plain_cnn_passes():
    torch.manual_seed(0)
    bn = CNNSpec((1, 8, 8), (4, 4), 3, hidden=8, dropout=0.0, batchnorm=True, bias=False).build().eval()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in bn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    rep = homogeneity_report(LoadedModel(bn, (1, 8, 8), 3))
    assert not rep["homogeneous"] and any("BatchNorm2d" in i for i in rep["issues"])
    plain = CNNSpec((1, 8, 8), (4, 4), 3, hidden=8, dropout=0.0, batchnorm=False, bias=False).build().eval()
    rep = homogeneity_report(LoadedModel(plain, (1, 8, 8), 3))
    assert rep["homogeneous"] and rep["degree"] == pytest.approx(4)  # 2 convs + 2 linear layers


def test_functional_nonlinearity_is_caught_numerically():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8, bias=False), nn.Linear(8, 1, bias=False)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))  # invisible to a module scan

    rep = homogeneity_report(LoadedModel(Net().eval(), (4,), 1))
    assert not rep["homogeneous"] and rep["issues"][0].startswith("Φ(c·θ) differs")


def test_summary_counts_parameters_and_layers():
    lm = _mlp("none", (16, 8))
    s = summary(lm)
    assert s["parameters"] == 16 * 16 + 16 * 8 + 8 == sum(p.numel() for p in lm.module.parameters())
    assert [layer["type"] for layer in s["layers"]] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert s["layers"][1]["shapes"] == [[16, 16]]
    assert s["homogeneity"]["homogeneous"] and s["binary"] and s["input_shape"] == [1, 4, 4]


def test_a_model_that_is_not_homogeneous_has_no_degree():
    """Its log-ratio fit (which can be any number, e.g. -72 for a softmax) is kept apart as fitted_degree."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    rep = homogeneity_report(LoadedModel(net, (4,), 1))
    assert rep["homogeneous"] is False and rep["degree"] is None and isinstance(rep["fitted_degree"], float)
