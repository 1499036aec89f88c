"""The BNN victim: folding is faithful, evaluation is the exact integer network, checkpoints round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netinv._errors import ConfigError
from netinv.models.bnn import BNNSpec, fold_batchnorm
from netinv.models.checkpoint import load_checkpoint
from netinv.models.registry import parse_arch
from netinv.sat import from_model

from ._helpers import random_bnn, torch_classes


def test_fold_batchnorm_matches_float64_batchnorm_sign_on_every_integer():
    bn = torch.nn.BatchNorm1d(200).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(200, generator=g) * 5)
        bn.running_var.copy_(torch.rand(200, generator=g) * 4 + 0.01)
        bn.weight.copy_(torch.randn(200, generator=g))
        bn.weight[:5] = 0.0  # zero scale: constant neurons
        bn.bias.copy_(torch.randn(200, generator=g) * 3)
        bn.bias[0] = 0.0  # beta = 0 with gamma = 0: sign(0) = +1
    n = 30
    s, k = fold_batchnorm(bn, n)
    z = np.arange(-n, n + 1, dtype=np.float64)[:, None]  # (61, 1) every reachable pre-activation
    mu, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    gamma, beta = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    y = (z - mu) / np.sqrt(var + bn.eps) * gamma + beta
    folded = s * z >= k
    clear = np.abs(y) > 1e-9  # away from the float boundary
    assert clear.mean() > 0.99 and (folded == (y >= 0))[clear].all()
    assert (s[:5] == 1).all() and folded[:, 0].all()  # gamma = 0, beta = 0 -> always on
    assert (s[gamma < 0] == -1).all() and (gamma < 0).sum() > 50


@pytest.mark.parametrize("outputs,zero_bias", [(10, False), (4, True), (1, False)])
def test_eval_forward_is_the_integer_network(outputs, zero_bias):
    m = random_bnn(20, (12, 8), outputs, seed=outputs, zero_bias=zero_bias)  # zero biases: many argmax ties
    x = torch.rand(3000, 20)
    plain = from_model(m)
    assert (plain.predict(plain.binarize(x.numpy())) == torch_classes(m, x).numpy()).all()
    if zero_bias:  # logits are exact integers times a power of two
        z = m(x) / m.scale
        assert torch.equal(z, z.round())


def test_plain_binarize_matches_the_model_with_a_mean(bnn_digits):
    model, _ = bnn_digits
    import copy

    lm = copy.copy(model)
    lm.mean = torch.rand(1, 8, 8) * 0.3
    x = torch.rand(500, 1, 8, 8)
    plain = from_model(lm)
    assert (plain.binarize(x) == lm.module.binarize(lm.preprocess(x)).numpy()).all()
    assert (plain.predict(plain.binarize(x)) == lm.predict(x).numpy()).all()
    back = plain.to_data(plain.binarize(x))  # written back to data space the model reads the same bits
    assert (plain.binarize(back) == plain.binarize(x)).all()
    assert (plain.binarize(x[:, 0]) == plain.binarize(x)).all()  # N×8×8 without the channel: the same values
    with pytest.raises(ConfigError, match="does not fit the model"):
        plain.binarize(x.reshape(500, 2, 32))  # rows of 32 cut the 8×8 images: refused


def test_trained_bnn_learns_and_checkpoint_round_trip_is_bit_identical(bnn_digits, digits_all):
    model, ckpt = bnn_digits
    assert model.meta["test_accuracy"] > 0.75  # chance is 0.1
    loaded = load_checkpoint(ckpt)
    x = digits_all.heldout.x
    assert torch.equal(loaded.logits(x), model.logits(x.to(model.device)).cpu())
    a, b = from_model(loaded), from_model(model)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights + a.thresholds, b.weights + b.thresholds, strict=True))
    assert np.array_equal(a.out_bias, b.out_bias) and np.array_equal(a.out_weight, b.out_weight)


def test_plain_format_round_trip(tmp_path, bnn_digits, digits_all):
    model, _ = bnn_digits
    p = from_model(model)
    q = type(p).load(p.save(tmp_path / "p.npz"))
    bits = p.binarize(digits_all.heldout.x)
    assert np.array_equal(p.predict(bits), q.predict(bits)) and q.input_shape == (1, 8, 8)


def test_arch_string_and_bad_options():
    spec = parse_arch("bnn:50,20", (1, 8, 8), 10, threshold=0.3, ternary=0.5)
    assert spec == BNNSpec((1, 8, 8), (50, 20), 10, 0.3, 0.5)
    assert parse_arch("bnn", (64,), 10).widths == (100,)
    with pytest.raises(ConfigError, match="no option"):
        parse_arch("bnn:10", (64,), 10, bias="none")
    with pytest.raises(ConfigError, match="ternary"):
        parse_arch("bnn:10", (64,), 10, ternary=1.5)
    with pytest.raises(ConfigError, match="widths"):
        parse_arch("bnn:ten", (64,), 10)


def test_ternary_weights_are_sparse_and_exact():
    m = random_bnn(30, (16,), 5, seed=3, ternary=0.6)
    q = m.weights()[0]
    assert 0.5 < float((q == 0).float().mean()) < 0.7
    x = torch.rand(2000, 30)
    plain = from_model(m)
    assert (plain.predict(plain.binarize(x.numpy())) == torch_classes(m, x).numpy()).all()
