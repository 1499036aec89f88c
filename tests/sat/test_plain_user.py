"""A BNN trained outside netinv: its plain integer form written by hand is validated, read by the CLI, and queried
exactly; netinv's 1/256 output-bias rounding is named when it would change a decision."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from netinv._errors import ModelError
from netinv.sat import PlainBNN, QueryConfig, count, from_model, invert

from ._helpers import all_inputs, random_bnn

D, H, C = 10, 6, 3


def user_bnn(seed: int = 0) -> dict[str, np.ndarray]:
    """Integer weights and thresholds, as a user folds their own sign/BatchNorm net (outputs × inputs)."""
    rng = np.random.default_rng(seed)
    return {"w0": rng.choice([-1, 1], size=(H, D)).astype(np.int8), "k0": rng.integers(-3, 4, H),
            "out_weight": rng.choice([-1, 1], size=(C, H)).astype(np.int8), "out_bias": np.array([0, 1, -1])}


def reference_classes(a: dict[str, np.ndarray], bits: np.ndarray) -> np.ndarray:
    """The user's own forward, independent of netinv: sign(W a) >= k, then argmax with ties to the lowest."""
    x = bits * 2 - 1
    h = np.where(x @ a["w0"].T.astype(np.int64) >= a["k0"], 1, -1)
    return (h @ a["out_weight"].T.astype(np.int64) + a["out_bias"]).argmax(1)


def test_a_hand_written_plain_file_counts_and_inverts_exactly(tmp_path):
    a = user_bnn()
    np.savez(tmp_path / "mine.npz", **a)  # no meta: every other field has a default
    plain = PlainBNN.load(tmp_path / "mine.npz")
    assert plain.input_shape == (D,) and plain.num_outputs == C and plain.bias_den == 1
    bits = all_inputs(D).numpy().astype(np.int64)
    truth = np.bincount(reference_classes(a, bits), minlength=C)
    assert truth.min() > 0
    res = count(plain, method="exact", show_progress=False)
    assert [int(c.count) for c in res.counts] == truth.tolist()
    inv = invert(plain, config=QueryConfig(candidates=0), show_progress=False)
    assert sorted(inv.y.tolist()) == [0, 1, 2]
    found_bits = (inv.x.reshape(len(inv.x), -1) >= 0.5).astype(np.int64)
    assert (reference_classes(a, found_bits) == inv.y).all()  # the user's own forward agrees


def test_the_cli_reads_plain_files_and_round_trips_its_export(tmp_path):
    a = user_bnn(1)
    np.savez(tmp_path / "mine.npz", meta=np.array(json.dumps({"input_shape": [1, 2, 5]})), **a)
    run = [sys.executable, "-m", "netinv", "sat"]
    r = subprocess.run([*run, "count", str(tmp_path / "mine.npz"), "--method", "exact"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = [c["count"] for c in json.loads(r.stdout)["classes"].values()]
    truth = np.bincount(reference_classes(a, all_inputs(D).numpy().astype(np.int64)), minlength=C)
    assert got == truth.tolist()
    r = subprocess.run([*run, "export", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "exp")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    again = PlainBNN.load(tmp_path / "exp" / "plain.npz")
    assert again.input_shape == (1, 2, 5) and np.array_equal(again.weights[0], a["w0"])
    r = subprocess.run([*run, "export", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "e2"), "--mean",
                        str(tmp_path / "mine.npz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "mean does not apply to a plain BNN" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(k0=a["k0"] + 0.5), "k0 must be integers"),
    (lambda a: a.update(w0=a["w0"].T.copy()), "w0 has shape .*transpose"),
    (lambda a: a.update(w0=a["w0"] * 0.7), "w0 must be integers"),
    (lambda a: a.update(w0=a["w0"] * 2), "w0 has values other than -1, 0, \\+1"),
    (lambda a: a.update(out_bias=np.array([0.5, 0.0, 0.0])), "out_bias must be integers"),
    (lambda a: a.update(out_weight=a["out_weight"][:, :4]), "out_weight has shape"),
    (lambda a: a.pop("k0"), "lacks arrays \\['k0'\\]"),
    (lambda a: a.update(k0=np.full(H, 1e30)), "k0 has a value of magnitude 1e\\+30"),  # wrapped to int64 min
    (lambda a: a.update(out_weight=a["out_weight"] * 0.5), "out_weight must be integers.* binarise the weights"),
    (lambda a: a.update(meta={"bias_den": 2.5}), "bias_den is 2.5, not an integer"),  # used to be read as 2
    (lambda a: a.update(meta={"input_shape": [1, 3, 3]}), "input_shape \\[1, 3, 3\\] has 9 inputs but w0 takes 10"),
    (lambda a: a.update(meta={"layers": -1}), "lacks arrays"),  # used to be an IndexError
    (lambda a: a.update(meta={"bias_den": 1e999}), "bias_den is inf"),  # used to be an OverflowError
    (lambda a: a.update(fixed_bits=np.full(D, 0.5)), "fixed_bits must be integers.* store -1 \\(free\\), 0 or 1"),
    (lambda a: a.update(x_lo=np.full(D, np.nan, np.float32)), "x_lo must be finite"),  # NaN pixels in preimages
    (lambda a: a.update(meta={"threshold": float("nan")}), "threshold must be finite"),
])
def test_a_malformed_plain_file_is_refused_with_its_fix(tmp_path, change, match):
    a = user_bnn()
    a["meta"] = {"input_shape": [D]}
    change(a)
    np.savez(tmp_path / "bad.npz", **{**a, "meta": np.array(json.dumps(a["meta"]))})
    with pytest.raises(ModelError, match=match):
        PlainBNN.load(tmp_path / "bad.npz")


def test_a_single_array_under_an_npz_name_is_named():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        with open(Path(d) / "one.npz", "wb") as fh:
            np.save(fh, user_bnn()["w0"])
        with pytest.raises(ModelError, match="plain BNN .*one.npz is a single .npy array, not an npz"):
            PlainBNN.load(Path(d) / "one.npz")


def test_num_outputs_must_match_the_output_rows():
    a = user_bnn()
    with pytest.raises(ModelError, match="3 rows but num_outputs is 1"):
        PlainBNN((D,), (a["w0"],), (a["k0"],), a["out_weight"], a["out_bias"][:1], 1, np.full(D, -1), np.zeros(D),
                 np.ones(D), 1)


def test_integral_float_arrays_are_accepted_as_integers():
    a = user_bnn()
    p = PlainBNN((D,), (a["w0"].astype(np.float32),), (a["k0"].astype(np.float64),), a["out_weight"].astype(float),
                 a["out_bias"].astype(float), 1, np.full(D, -1.0), np.zeros(D), np.ones(D), C)
    assert p.weights[0].dtype == np.int8 and p.thresholds[0].dtype == np.int64 and p.out_bias.dtype == np.int64


def test_bias_rounding_that_changes_a_decision_is_named():
    m = random_bnn(D, (H,), 2, seed=3)
    with torch.no_grad():
        m.out.bias.copy_(torch.tensor([0.0, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_model(m)  # multiples of 1/256: exact, nothing to say
    # an odd multiple of 1/512 just past a lattice boundary: exact 2.001 vs rounded 2.0 moves the "0 beats 1" bound
    w = from_model(m).out_weight
    n_diff = int((w[0] != w[1]).sum())
    edge = float(4 * np.ceil(n_diff / 2) - 2 * n_diff)  # b_1 - b_0 at which the bound steps
    with torch.no_grad():
        m.out.bias.copy_(torch.tensor([0.0, edge + 0.001]))
    with pytest.warns(UserWarning, match="not multiples of 1/256"):
        from_model(m)
    # a rounding that moves a bound between two values deciding every input alike is not named: with the output
    # rows all-agreeing / all-disagreeing (4 units), 2.001 and 2.0 both give "0 beats 1" for 2 agreements or more
    m4 = random_bnn(D, (4,), 2, seed=0)
    with torch.no_grad():
        m4.out.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
        m4.out.bias.copy_(torch.tensor([0.0, 2.001]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = from_model(m4)
    bits = all_inputs(D).numpy().astype(np.int64)
    h = np.where((bits * 2 - 1) @ plain.weights[0].T.astype(np.int64) >= plain.thresholds[0], 1, -1)
    exact = h @ np.array([[1] * 4, [-1] * 4]).T + np.array([0.0, 2.001])
    assert np.array_equal(plain.predict(bits), exact.argmax(1))  # silent, and rightly: no input changes class


def test_load_bnn_reads_a_plain_file_and_refuses_model_options_for_it(tmp_path):
    from netinv._errors import ConfigError
    from netinv.sat import load_bnn

    a = user_bnn()
    np.savez(tmp_path / "mine.npz", **a)
    plain = load_bnn(tmp_path / "mine.npz", device="cpu", input_shape=None)  # unset options are no objection
    assert isinstance(plain, PlainBNN) and np.array_equal(plain.weights[0], a["w0"])
    with pytest.raises(ConfigError, match="input_shape, mean do not apply to a plain BNN file"):
        load_bnn(tmp_path / "mine.npz", input_shape=(1, 2, 5), mean=tmp_path / "m.npy")


@pytest.mark.parametrize("outputs", [1, 3])
def test_zero_output_weights_are_encoded_exactly(outputs):
    """Ternary output rows (allowed by the plain format) used to be encoded as if 0 were -1: infer disagreed with
    the integer model and invert gave false UNSAT proofs. The CNF must now agree with enumeration on every input."""
    from netinv.sat import encode, infer

    bits = all_inputs(D).numpy().astype(np.int64)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        a = user_bnn(seed)
        a["out_weight"] = rng.choice([-1, 0, 1], size=(outputs, H)).astype(np.int8)
        a["out_bias"] = rng.integers(-2, 3, outputs)
        if outputs == 3 and seed % 2:
            a["out_weight"][2, :3] = 0  # rows that differ by 1 and by 2 in one comparison
        plain = PlainBNN(**{**_fields(a), "num_outputs": outputs})
        truth = plain.predict(bits)
        encoding = ("totalizer", "seqcounter", "sortnet", "adder")[seed % 4]  # every counter, two nets each
        f = encode(plain, encoding)
        res = infer(f, bits.astype(np.float32), QueryConfig(time_limit=30))
        assert np.array_equal(res.sat_classes, truth), f"seed {seed} ({encoding}): the CNF disagrees"
        inv = invert(f, config=QueryConfig(candidates=0, enumerate_max=0), show_progress=False)
        reachable = set(np.unique(truth).tolist())
        assert {o.cls for o in inv.outcomes if o.status.name == "SAT"} == reachable, f"seed {seed} ({encoding})"
        assert all(o.method == "solver" for o in inv.outcomes)


def _fields(a: dict[str, np.ndarray]) -> dict:
    return {"input_shape": (D,), "weights": (a["w0"],), "thresholds": (a["k0"],), "out_weight": a["out_weight"],
            "out_bias": a["out_bias"], "bias_den": 1, "fixed_bits": np.full(D, -1, np.int8),
            "x_lo": np.zeros(D, np.float32), "x_hi": np.ones(D, np.float32)}


def test_the_documented_fold_of_a_plain_pytorch_bnn_is_exact():
    """docs/sat.md's `fold`, run as written on a BNN built without netinv (negative and zero BatchNorm scales, sign(0)
    = +1): the plain file it gives classifies every input as the PyTorch model does."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "sat.md").read_text()
    code = re.search(r"```python\n(def fold\(.*?)```", text, re.S).group(1)
    scope: dict = {"np": np}
    exec(code, scope)  # noqa: S102 - the documented snippet, run as a user would
    fold = scope["fold"]

    d, widths, classes = 10, (7, 5), 3
    g = torch.Generator().manual_seed(3)
    sign = lambda t: torch.where(t >= 0, 1.0, -1.0)  # noqa: E731 - sign(0) = +1
    lins = [torch.nn.Linear(i, o, bias=False) for i, o in zip((d, *widths), widths, strict=False)]
    bns = [torch.nn.BatchNorm1d(o) for o in widths]
    out = torch.nn.Linear(widths[-1], classes)
    with torch.no_grad():
        for lin in [*lins, out]:
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) * 2 - 1)
        out.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
        for bn in bns:
            h = bn.num_features
            bn.running_mean.copy_(torch.rand(h, generator=g) * 4 - 2)
            bn.running_var.copy_(torch.rand(h, generator=g) * 3 + 0.5)
            bn.weight.copy_(torch.rand(h, generator=g) * 2 - 1)
            bn.bias.copy_(torch.rand(h, generator=g) * 2 - 1)
            bn.weight[0], bn.bias[0] = 0.0, -0.3  # a zero scale: a constant neuron, never on
        bns[0].weight[1], bns[0].bias[1] = 0.0, 0.4  # and one always on

    def forward(bits: torch.Tensor) -> torch.Tensor:
        a = 2 * bits - 1
        for lin, bn in zip(lins, bns, strict=True):
            a = sign(bn.eval()(a @ sign(lin.weight).T))
        return a @ sign(out.weight).T + out.bias

    arrays = {}
    for i, (lin, bn) in enumerate(zip(lins, bns, strict=True)):
        arrays[f"w{i}"], arrays[f"k{i}"] = fold(sign(lin.weight).detach().numpy().astype(np.int64), bn)
    assert (arrays["k0"] != 0).any() and (bns[0].weight < 0).any()  # the fold had directions to flip
    plain = PlainBNN((d,), (arrays["w0"], arrays["w1"]), (arrays["k0"], arrays["k1"]),
                     sign(out.weight).detach().numpy(), out.bias.detach().numpy().astype(np.int64), 1,
                     np.full(d, -1, np.int8), np.zeros(d, np.float32), np.ones(d, np.float32), classes)
    bits = all_inputs(d)
    with torch.no_grad():
        truth = forward(bits).argmax(1).numpy()
    assert np.array_equal(plain.predict(bits.numpy().astype(np.int64)), truth)
