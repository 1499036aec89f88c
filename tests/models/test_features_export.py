"""Features of models saved with ``torch.export``: the graph flattens the layers into aten ops that hooks cannot see,
so the default feature layer (input of the last linear layer) is found in the graph instead of falling back to the
logits, for batch-generic and fixed-batch (chunked) exports alike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netinv import load_model
from netinv._errors import ConfigError
from netinv.models.features import Features
from netinv.models.loaded import LoadedModel


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 32), nn.ReLU(),
                         nn.Linear(32, 10)).eval()


def _reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the last nn.Linear of the in-memory module, N×32."""
    f = Features(LoadedModel(net, (1, 8, 8), 10))
    try:
        return f(x)[0].detach()
    finally:
        f.close()


def _export(net: nn.Module, path, batch: int, dynamic: bool):
    dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(net, (torch.rand(batch, 1, 8, 8),), dynamic_shapes=dyn), path)
    return load_model(path, device="cpu")


def test_auto_features_of_a_dynamic_batch_export_match_the_module(tmp_path):
    net = _cnn()
    lm = _export(net, tmp_path / "m.pt2", 4, dynamic=True)
    f = Features(lm)
    assert f.layer == "linear_1:input"  # the graph node of the last linear layer, recorded in run.json
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    feats, logits = f(x)
    ref = _reference(net, x.detach())
    assert feats.shape == (5, 32) and torch.allclose(feats, ref, atol=1e-5)
    assert torch.allclose(logits, net(x.detach()), atol=1e-5)
    feats.sum().backward()  # the features keep the autograd graph to the input (they train a generator)
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the loaded module other attacks use is untouched: same graph, same logits
    assert torch.allclose(lm.logits(x.detach()), net(x.detach()), atol=1e-5)
    assert Features(lm, "linear_1:input")(x)[0].shape == (5, 32)  # a named graph node
    assert Features(lm, "linear")(x)[0].shape == (5, 32)  # a node's output (first linear, before its relu)
    assert Features(lm, "logits").layer == "logits"
    with pytest.raises(ConfigError, match="not a node of this exported graph"):
        Features(lm, "nope:input")


@pytest.mark.parametrize("baked", [True, False])
def test_features_of_a_fixed_batch_export_match_the_module(tmp_path, baked, fixed_batch_cnn):
    """Exported without a dynamic batch: a graph whose batch size is baked into a view runs in chunks of it (the
    features are concatenated in order, padding dropped); one that generalises has its guard dropped by the loader."""
    torch.manual_seed(0)
    net = fixed_batch_cnn().eval() if baked else _cnn()
    lm = _export(net, tmp_path / "m.pt2", 3, dynamic=False)
    assert lm.module.b == (3 if baked else None)
    f = Features(lm)
    assert f.layer == "linear_1:input"
    for n in (1, 3, 7):  # short, exact and padded-chunk batches
        x = torch.rand(n, 1, 8, 8, requires_grad=True)
        feats, logits = f(x)
        assert feats.shape == (n, 32) and torch.allclose(feats, _reference(net, x.detach()), atol=1e-5)
        assert torch.allclose(logits, net(x.detach()), atol=1e-5)
        feats.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_features_of_an_export_with_a_mean_and_addmm_head(tmp_path):
    """The mean image is subtracted before the graph; a head written as addmm (x @ W.T + b) is a linear layer."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.w, self.b = nn.Parameter(torch.randn(10, 32)), nn.Parameter(torch.randn(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.addmm(self.b, torch.relu(self.fc1(x.flatten(1))), self.w.t())

    torch.manual_seed(0)
    net = Net().eval()
    dyn = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(net, (torch.rand(4, 1, 8, 8),), dynamic_shapes=dyn), tmp_path / "m.pt2")
    mean = torch.full((1, 8, 8), 0.25)
    lm = load_model(tmp_path / "m.pt2", mean=mean, device="cpu")
    f = Features(lm)
    assert f.layer.startswith("addmm") and f.layer.endswith(":input")
    x = torch.rand(6, 1, 8, 8)
    ref = torch.relu(net.fc1((x - mean).flatten(1)))
    feats, logits = f(x)
    assert torch.allclose(feats, ref, atol=1e-5) and torch.allclose(logits, lm.logits(x), atol=1e-5)
