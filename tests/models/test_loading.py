"""Every user-model format loads and predicts the same as the original module; bad inputs give one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netinv import ModelError, load_model
from netinv.models.loading import check_compatible


def make_net() -> nn.Module:
    """Factory used by the tests (tests.models.test_loading:make_net)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 64, 10)).eval()


@pytest.fixture
def net():
    m = make_net()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    return m


X = torch.rand(7, 1, 8, 8)


@pytest.mark.parametrize("batch,dynamic", [(4, False), (1, False), (3, True)])
def test_torch_export_archive(net, tmp_path, batch, dynamic):
    dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
    ep = torch.export.export(net, (torch.rand(batch, 1, 8, 8),), dynamic_shapes=dyn)
    torch.export.save(ep, tmp_path / "m.pt2")
    lm = load_model(tmp_path / "m.pt2", device="cpu")
    assert lm.input_shape == (1, 8, 8) and lm.num_outputs == 10  # read from the archive
    assert torch.allclose(lm.logits(X), net(X), atol=1e-5)
    assert torch.equal(lm.predict(X), net(X).argmax(1))
    lm.module.train()  # mode switches must not crash on exported graphs
    params = [p for p in lm.module.parameters()]
    grads = torch.autograd.grad(lm.logits(X).sum(), params, create_graph=True)  # KKT needs double backward
    assert grads[0].requires_grad


def test_torchscript(net, tmp_path):
    torch.jit.save(torch.jit.script(net), tmp_path / "m.ts")
    lm = load_model(tmp_path / "m.ts", input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(lm.logits(X), net(X), atol=1e-6)
    with pytest.raises(ModelError, match="input shape .* is unknown"):
        load_model(tmp_path / "m.ts", device="cpu")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_factory_with_weights(net, tmp_path, fmt):
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    lm = load_model("tests.models.test_loading:make_net", weights=path, input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(lm.logits(X), net(X), atol=1e-6)


def test_nn_module_and_mean(net, tmp_path):
    mean = np.full((1, 8, 8), 0.25, dtype=np.float32)
    np.save(tmp_path / "mean.npy", mean)
    lm = load_model(net, input_shape=(1, 8, 8), mean=tmp_path / "mean.npy", input_range=(0, 1), device="cpu")
    assert torch.allclose(lm.logits(X), net(X - 0.25), atol=1e-6)


def test_weights_only_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"0.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="cannot load weights"):
        load_model("tests.models.test_loading:make_net", weights=tmp_path / "evil.pt", input_shape=(1, 8, 8))
    assert not (tmp_path / "pwned").exists()


def test_bad_inputs(net, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"junk")
    with pytest.raises(ModelError, match="neither a torch.export archive nor a TorchScript"):
        load_model(tmp_path / "junk.pt2")
    with pytest.raises(ModelError, match="fails on inputs shaped"):
        load_model(net, input_shape=(3, 32, 32), device="cpu")
    with pytest.raises(ModelError, match="needs weights"):
        load_model("tests.models.test_loading:make_net", input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match="cannot import factory"):
        load_model("tests.nowhere:make", input_shape=(1, 8, 8))
    nan = make_net()
    with torch.no_grad():
        nan[5].weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN or inf"):
        load_model(nan, input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match="mean image shaped"):
        load_model(net, input_shape=(1, 8, 8), mean=np.zeros((3, 8, 8), dtype=np.float32))


def test_shape_mismatch_with_data(parity_victim):
    from netinv.data import Dataset

    model, _ = parity_victim
    data = Dataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), ["a", "b"])
    with pytest.raises(ModelError, match=r"takes inputs shaped \(1, 8, 8\), the data is \(1, 28, 28\)"):
        check_compatible(model, data)
