"""Models trained in plain PyTorch and saved with ``torch.export``: what an outside user hands netinv.

Regression tests for what went wrong with such files: a graph exported in training mode ran silently (batch
statistics, live dropout), ``netinv evaluate`` reloaded a recorded model without its ``--mean``, an audit of a model
on flattened images refused image data (and ran the whole attack before refusing flat rows), and bad ``--mean`` /
``--input-shape`` values gave tracebacks or unclear errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from netinv import ModelError, load_model
from netinv._errors import DataError
from netinv.attacks.kkt import KKTConfig
from netinv.audit import audit
from netinv.data import load_data
from netinv.metrics import evaluate, evaluate_dir
from netinv.models.inspect import homogeneity_report
from netinv.models.loading import check_compatible

B = torch.export.Dim("batch")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(4 * 16, 3))


def _flat_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False)).eval()


def _export(net: nn.Module, example: torch.Tensor, path, dynamic: bool = True):
    ep = torch.export.export(net, (example,), dynamic_shapes=({0: B},) if dynamic else None)
    torch.export.save(ep, path)
    return path


def _images(path, n: int, seed: int, binary: bool = True) -> None:
    """n 1×4×4 images in [0, 1] with labels, as the npz loader reads them."""
    g = np.random.default_rng(seed)
    np.savez(path, x=g.random((n, 1, 4, 4)).astype(np.float32), y=np.arange(n) % (2 if binary else 3))


@pytest.mark.parametrize("dynamic", [True, False])
def test_a_graph_exported_in_training_mode_is_refused(tmp_path, dynamic):
    net = _cnn()  # train mode: BatchNorm would use batch statistics and update its buffers, dropout would be live
    f = _export(net, torch.rand(4, 1, 4, 4), tmp_path / "m.pt2", dynamic)
    with pytest.raises(ModelError, match="exported in training mode") as e:
        load_model(f, device="cpu")
    assert "model.eval()" in e.value.fix
    _export(net.eval(), torch.rand(4, 1, 4, 4), tmp_path / "ok.pt2", dynamic)
    assert load_model(tmp_path / "ok.pt2", device="cpu").num_outputs == 3


def test_dropout_alone_in_training_mode_is_refused(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3))  # no buffers: only the op says train mode
    f = _export(net, torch.rand(4, 1, 4, 4), tmp_path / "m.pt2")
    with pytest.raises(ModelError, match="dropout"):
        load_model(f, device="cpu")


def test_input_shape_that_contradicts_the_archive_names_both_shapes(tmp_path):
    f = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "m.pt2")
    with pytest.raises(ModelError, match=r"--input-shape \(1, 4, 4\) differs from the model's \(16,\)"):
        load_model(f, input_shape=(1, 4, 4), device="cpu")
    assert load_model(f, input_shape=(16,), device="cpu").input_shape == (16,)


def test_a_mean_that_is_not_one_numeric_array_is_a_model_error(tmp_path):
    f = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "m.pt2")
    np.savez(tmp_path / "mean.npz", mean=np.zeros(16))
    with pytest.raises(ModelError, match="npz archive"):
        load_model(f, mean=tmp_path / "mean.npz", device="cpu")
    np.save(tmp_path / "words.npy", np.array(["a"] * 16))
    with pytest.raises(ModelError, match="dtype"):
        load_model(f, mean=tmp_path / "words.npy", device="cpu")
    with pytest.raises(ModelError, match="does not fit inputs"):
        load_model(f, mean=np.zeros((1, 3, 5)), device="cpu")  # 15 values for 16 inputs
    assert load_model(f, mean=np.zeros((1, 4, 4)), device="cpu").mean.shape == (16,)  # an image mean: reshaped


def test_exported_graph_issues_are_named(tmp_path):
    f = _export(_cnn().eval(), torch.rand(4, 1, 4, 4), tmp_path / "m.pt2")
    rep = homogeneity_report(load_model(f, device="cpu"))
    text = " ".join(rep["issues"])
    assert not rep["homogeneous"] and "normalisation op" in text and "bias" in text and "0.bias" in text
    g = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "h.pt2")
    rep = homogeneity_report(load_model(g, device="cpu"))
    assert rep["homogeneous"] and rep["notes"] == [] and rep["degree"] == pytest.approx(2.0)


@pytest.mark.parametrize("dynamic", [True, False])
def test_info_names_the_layers_of_an_exported_graph(tmp_path, dynamic):
    """``netinv info`` on a .pt2 listed the graph's parameter holders as type ``Module`` and torch's ``_guards_fn``;
    the layers are now the graph's operations, with the shapes of the parameters each one reads."""
    from typer.testing import CliRunner

    from netinv.cli.app import app
    from netinv.models.inspect import summary

    f = _export(_cnn().eval(), torch.rand(4, 1, 4, 4), tmp_path / "m.pt2", dynamic)
    s = summary(load_model(f, device="cpu"))
    assert [layer["type"] for layer in s["layers"]] == ["conv2d", "batch_norm", "relu", "flatten", "dropout", "linear"]
    conv, bn, relu, *_, lin = s["layers"]
    assert conv["shapes"] == [[4, 1, 3, 3], [4]] and conv["module"] == "0 (Conv2d)" and bn["shapes"] == [[4], [4]]
    assert relu["parameters"] == 0 and lin["shapes"] == [[3, 64], [3]] and lin["name"] == "linear"
    assert sum(layer["parameters"] for layer in s["layers"]) == s["parameters"] == 40 + 8 + 195
    r = CliRunner().invoke(app, ["info", str(f), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "'type': 'conv2d'" in r.output and "_guards_fn" not in r.output and "'Module'" not in r.output


def test_evaluate_reloads_the_recorded_model_with_its_mean(tmp_path, monkeypatch):
    f = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "m.pt2")
    np.save(tmp_path / "mean.npy", np.full(16, 0.5, dtype=np.float32))
    _images(tmp_path / "train.npz", 12, 0)
    _images(tmp_path / "heldout.npz", 12, 1)
    lm = load_model(f, mean=tmp_path / "mean.npy", device="cpu")
    run = tmp_path / "run"
    run.mkdir()
    cands = torch.rand(6, 16)
    np.savez(run / "candidates.npz", x=cands.numpy(), y=np.array([1, -1] * 3))
    (run / "run.json").write_text(json.dumps({"model": {**lm.source, "input_range": [0.0, 1.0]}}))
    monkeypatch.chdir(run)  # recorded paths are absolute: evaluate works from anywhere
    train, heldout = load_data("npz", path=tmp_path / "train.npz"), load_data("npz", path=tmp_path / "heldout.npz")
    ref = evaluate(cands, train, heldout, model=lm, candidate_labels=torch.tensor([1, 0] * 3))
    for model in (None, str(f)):  # recorded, or named again without --mean
        ev = evaluate_dir(run, model, tmp_path / "train.npz", tmp_path / "heldout.npz",
                          model_options={"mean": None, "device": "cpu"})
        assert torch.allclose(ev.train_margin, ref.train_margin)
        assert ev.conditioning["assigned_fraction"] == ref.conditioning["assigned_fraction"]
    # the attack recorded its weights' digest; a different model saved at the same path since is refused, not used
    (run / "run.json").write_text(json.dumps({"model": {**lm.source, "input_range": [0.0, 1.0]},
                                              "model_sha256": lm.digest()}))
    evaluate_dir(run, None, tmp_path / "train.npz", tmp_path / "heldout.npz")  # the same weights: fine
    other = _flat_mlp()
    with torch.no_grad():
        other[0].weight.mul_(2)
    _export(other, torch.rand(4, 16), f)  # other weights, saved at the recorded path
    with pytest.raises(ModelError, match="is not the one the attack ran on"):
        evaluate_dir(run, None, tmp_path / "train.npz", tmp_path / "heldout.npz")


def flat_mlp_factory() -> nn.Module:
    """A user's factory (``tests.models.test_external_exports:flat_mlp_factory``): the untrained model."""
    return nn.Sequential(nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False))


def test_evaluate_reloads_a_recorded_factory_model_or_names_the_fix(tmp_path):
    """``netinv evaluate DIR`` ignored a model given as package.module:factory (run.json records no path for it)
    and scored the candidates without the model; it now reloads the factory with the recorded weights, input shape
    and mean, and says how to name the model when that fails."""
    from safetensors.torch import save_file

    spec = "tests.models.test_external_exports:flat_mlp_factory"
    save_file(_flat_mlp().state_dict(), str(tmp_path / "w.safetensors"))
    np.save(tmp_path / "mean.npy", np.full(16, 0.5, dtype=np.float32))
    _images(tmp_path / "train.npz", 12, 0)
    _images(tmp_path / "heldout.npz", 12, 1)
    lm = load_model(spec, weights=tmp_path / "w.safetensors", input_shape=(16,), mean=tmp_path / "mean.npy",
                    device="cpu")
    assert lm.source["factory"] == spec and lm.source["input_shape"] == [16]
    run = tmp_path / "run"
    run.mkdir()
    cands = torch.rand(6, 16)
    np.savez(run / "candidates.npz", x=cands.numpy(), y=np.array([1, -1] * 3))
    (run / "run.json").write_text(json.dumps({"model": {**lm.source, "input_range": [0.0, 1.0]}}))  # as attacks do
    train, heldout = load_data("npz", path=tmp_path / "train.npz"), load_data("npz", path=tmp_path / "heldout.npz")
    ref = evaluate(cands, train, heldout, model=lm, candidate_labels=torch.tensor([1, 0] * 3))
    # a run.json is data: the code it names is not imported until the user names it (a crafted run.json could name
    # any importable function, e.g. cProfile:main)
    with pytest.raises(ModelError, match="does not import code named in a run directory") as e:
        evaluate_dir(run, None, tmp_path / "train.npz", tmp_path / "heldout.npz", model_options={"device": "cpu"})
    assert e.value.fix.endswith(f"--model {spec} --weights {tmp_path / 'w.safetensors'}")
    # named again, without --weights / --input-shape / --mean: the recorded ones are used
    ev = evaluate_dir(run, spec, tmp_path / "train.npz", tmp_path / "heldout.npz", model_options={"device": "cpu"})
    assert ev.train_margin is not None and torch.allclose(ev.train_margin, ref.train_margin)
    (tmp_path / "w.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(ModelError, match="cannot reload the attacked model .*flat_mlp_factory.*not found") as e:
        evaluate_dir(run, spec, tmp_path / "train.npz", tmp_path / "heldout.npz", model_options={"device": "cpu"})
    assert f"--model {spec} --weights FILE" in e.value.fix
    ev = evaluate_dir(run, spec, tmp_path / "train.npz", tmp_path / "heldout.npz",  # the fix works
                      model_options={"weights": tmp_path / "moved.safetensors", "device": "cpu"})
    assert torch.allclose(ev.train_margin, ref.train_margin)
    (run / "run.json").write_text(json.dumps({"model": "os:abort"}))  # a bare factory string is refused too
    with pytest.raises(ModelError, match="factory model os:abort"):
        evaluate_dir(run, None, tmp_path / "train.npz", tmp_path / "heldout.npz", model_options={"device": "cpu"})


def test_audit_of_a_flat_model_takes_images_and_refuses_rows_before_attacking(tmp_path):
    f = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "m.pt2")
    _images(tmp_path / "train.npz", 8, 0)
    _images(tmp_path / "heldout.npz", 8, 1)
    train, heldout = load_data("npz", path=tmp_path / "train.npz"), load_data("npz", path=tmp_path / "heldout.npz")
    lm = load_model(f, device="cpu")
    with pytest.raises(ModelError, match="inputs shaped"):
        check_compatible(lm, train)  # elsewhere the data is fed to the model as it is
    res = audit(f, out=tmp_path / "a", train=train, heldout=heldout, device="cpu",
                config=KKTConfig(iterations=3, show_progress=False))
    assert (tmp_path / "a" / "report.html").is_file() and res.evaluation.train_margin.shape == (8,)
    flat = load_data("npz", path=_rows(tmp_path / "rows.npz", train))
    with pytest.raises(DataError, match="C×H×W"):
        audit(f, out=tmp_path / "b", train=flat, heldout=flat, device="cpu")
    assert not (tmp_path / "b" / "kkt").exists()  # refused before the attack ran


def _rows(path, ds):
    np.savez(path, x=ds.x.reshape(len(ds), -1).numpy(), y=ds.y.numpy())
    return path


def test_float64_and_tuple_output_models_are_named_with_their_fix(tmp_path):
    net = _flat_mlp().double()
    with pytest.raises(ModelError, match="weights are float64") as e:
        load_model(_export(net, torch.rand(4, 16, dtype=torch.float64), tmp_path / "d.pt2"), device="cpu")
    assert "model.float()" in e.value.fix

    class Pair(nn.Module):  # (logits, features), exported with a fixed batch size (run in chunks by netinv)
        def __init__(self) -> None:
            super().__init__()
            self.net = _flat_mlp()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net(x), x

    with pytest.raises(ModelError, match="returns tuple") as e:
        load_model(_export(Pair().eval(), torch.rand(4, 16), tmp_path / "t.pt2", dynamic=False), device="cpu")
    assert "forward returns a (batch, classes) tensor" in e.value.fix


def test_a_binary_model_returning_n_values_is_refused_with_the_wrapper_to_write(tmp_path):
    """`return self.net(x).squeeze(-1)` is common for binary models: named, with the one-line wrapper (netinv does
    not wrap it itself: a wrapper would hide the model from the TorchScript, feature-layer and layer-name checks)."""

    class Squeezed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _flat_mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1)

    with pytest.raises(ModelError, match="one value per input, shape \\(N,\\)") as e:
        load_model(_export(Squeezed().eval(), torch.rand(4, 16), tmp_path / "s.pt2"), device="cpu")
    assert "model(x)[:, None]" in e.value.fix
    with pytest.raises(ModelError, match="returns torch.Size\\(\\[2, 4, 4\\]\\) for a batch of 2 inputs"):
        load_model(nn.Unflatten(1, (4, 4)), input_shape=(16,), device="cpu")


class _Plain(nn.Module):
    """A model on 8×8 inputs without a channel axis, trained on raw 0..16 pixel values: what a user may bring."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(64, 32, bias=False), nn.Linear(32, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x.reshape(x.shape[0], -1) / 16)))


def test_a_user_model_on_another_range_and_shape_sees_its_data_mapped(tmp_path):
    """Data files hold [0, 1] images; a model declared on --input-range 0,16 gets them as 16·x, reshaped to its
    input shape, in the evaluation, the audit and the adversarial samples. Members' labels stay its class indices."""
    from netinv.apps.adversarial import AdversarialConfig, run_adversarial

    f = _export(_Plain().eval(), torch.rand(4, 8, 8), tmp_path / "m.pt2")
    lm = load_model(f, input_range=(0, 16), device="cpu")
    g = np.random.default_rng(0)
    x = g.random((12, 1, 8, 8)).astype(np.float32)
    y = np.arange(12) % 9 + 1  # classes 1..9 of a 10-class model: no class 0 among the members
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "heldout.npz", x=g.random((10, 1, 8, 8)).astype(np.float32), y=np.arange(10))
    train = load_data("npz", path=tmp_path / "train.npz", relabel=False)
    heldout = load_data("npz", path=tmp_path / "heldout.npz", relabel=False)
    with torch.no_grad():
        z = lm.module(torch.from_numpy(16 * x[:, 0]))
    own = z[torch.arange(12), torch.from_numpy(y)]
    expect = own - z.scatter(1, torch.from_numpy(y)[:, None], float("-inf")).max(1).values
    ev = evaluate(torch.from_numpy(16 * x), train, heldout, model=lm)
    assert torch.allclose(ev.train_margin, expect, atol=1e-5)
    res = audit(lm, out=tmp_path / "a", train=train, heldout=heldout, config=KKTConfig(iterations=2,
                show_progress=False))
    assert len(res.candidates) == 24  # m = 2 × the members given
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert rep["info"]["train accuracy"] == round(float((z.argmax(1) == torch.from_numpy(y)).float().mean()), 4)
    assert len(audit(lm, out=tmp_path / "b", train=train, heldout=heldout, m=10,
                     config=KKTConfig(iterations=2, show_progress=False)).candidates) == 10
    adv = run_adversarial(lm, AdversarialConfig(eps=1.0, pgd_steps=3, gen_steps=2), data=heldout, n=5)
    x_adv = adv["PGD"].x_adv
    assert x_adv.shape == (5, 8, 8) and float(x_adv.max()) > 3.0  # in the model's 0..16 range (ε = 1)


def test_the_python_api_takes_paths_and_warns_on_renumbered_labels(tmp_path):
    """`evaluate` and `audit` take a model path and npz paths as the CLI does (read with the model's own class
    indices); a data set whose labels were renumbered at load time gets a warning with a user model."""
    f = _export(_Plain().eval(), torch.rand(4, 8, 8), tmp_path / "m.pt2")
    g = np.random.default_rng(1)
    np.savez(tmp_path / "t.npz", x=g.random((6, 1, 8, 8)).astype(np.float32), y=np.array([1, 2, 3, 1, 2, 3]))
    np.savez(tmp_path / "h.npz", x=g.random((8, 1, 8, 8)).astype(np.float32), y=np.arange(8))
    x = torch.rand(6, 1, 8, 8)
    ev = evaluate(x, tmp_path / "t.npz", tmp_path / "h.npz", model=f)
    lm = load_model(f)  # the device evaluate picks for a path (auto): CUDA where there is one
    ref = evaluate(x, load_data("npz", path=tmp_path / "t.npz", relabel=False),
                   load_data("npz", path=tmp_path / "h.npz", relabel=False), model=lm)
    assert torch.equal(ev.train_margin, ref.train_margin)
    with pytest.warns(UserWarning, match="renumbered when loaded"):
        evaluate(x, load_data("npz", path=tmp_path / "t.npz"), tmp_path / "h.npz", model=lm)
    res = audit(f, out=tmp_path / "a", train=tmp_path / "t.npz", heldout=tmp_path / "h.npz", device=lm.device.type,
                config=KKTConfig(iterations=2, show_progress=False))
    assert torch.equal(res.evaluation.train_margin, ref.train_margin)


def test_torchscript_models_homogeneity_mode_and_errors(tmp_path):
    """TorchScript: homogeneity is checked numerically (parameters scaled by 2 and ½ in place, then restored), a
    trace made in training mode is refused, and a factory that raises is one line."""
    from netinv._errors import informative_line

    torch.manual_seed(0)
    free = nn.Sequential(nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False)).eval()
    biased = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    for net, want in ((free, True), (biased, False)):
        torch.jit.save(torch.jit.script(net), tmp_path / "m.ts")
        lm = load_model(tmp_path / "m.ts", input_shape=(1, 4, 4), device="cpu")
        before = [p.clone() for p in lm.module.parameters()]
        rep = homogeneity_report(lm)
        assert rep["homogeneous"] is want and rep["checked"] == "numerical"
        assert all(torch.equal(a, b) for a, b in zip(before, lm.module.parameters(), strict=True))
    assert homogeneity_report(load_model(tmp_path / "m.ts", input_shape=(1, 4, 4), device="cpu"))["issues"]
    live = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    torch.jit.save(torch.jit.trace(live, torch.rand(4, 1, 4, 4), check_trace=False), tmp_path / "train.ts")
    with pytest.raises(ModelError, match="answers the same input differently") as e:
        load_model(tmp_path / "train.ts", input_shape=(1, 4, 4), device="cpu")
    assert "model.eval()" in e.value.fix
    err = RuntimeError("The following operation failed in the TorchScript interpreter.\nTraceback:\n  x\n"
                       "RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert informative_line(err) == "RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    assert informative_line(RuntimeError("Error(s) in loading state_dict for X:\n\tMissing key(s): a")) == \
        "Missing key(s): a"


def boom() -> nn.Module:
    raise ValueError("no such layer size")


def test_a_factory_that_raises_is_one_line():
    with pytest.raises(ModelError, match="raised ValueError: no such layer size"):
        load_model(f"{__name__}:boom", weights="w.safetensors", input_shape=(16,), device="cpu")


class _ChannelsLast(nn.Module):
    """A user's model on N×H×W×C images (the layout of many image pipelines)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 16, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


def test_a_channels_last_model_is_refused_not_fed_scrambled_images(tmp_path):
    """C×H×W data and an H×W×C model have the same size; reshaping one into the other scrambled every image."""
    torch.manual_seed(0)
    f = _export(_ChannelsLast().eval(), torch.rand(4, 4, 4, 3), tmp_path / "m.pt2")
    g = np.random.default_rng(0)
    for name in ("train", "heldout"):
        np.savez(tmp_path / f"{name}.npz", x=g.random((8, 3, 4, 4)).astype(np.float32), y=np.arange(8) % 2)
    train = load_data("npz", path=tmp_path / "train.npz")
    lm = load_model(f, device="cpu")
    assert lm.input_shape == (4, 4, 3)
    for call in (lambda: lm.from_unit(train.x), lambda: check_compatible(lm, train, reshape=True),
                 lambda: audit(f, out=tmp_path / "a", train=tmp_path / "train.npz", heldout=tmp_path / "heldout.npz",
                               device="cpu", config=KKTConfig(iterations=3, show_progress=False))):
        with pytest.raises(ModelError, match="would misplace values") as e:
            call()
        assert "permute(0, 2, 3, 1)" in e.value.fix
    assert not (tmp_path / "a" / "kkt").exists()
    with pytest.raises(DataError, match="another order"):  # candidates saved channels-last
        evaluate(torch.rand(5, 4, 4, 3), train, load_data("npz", path=tmp_path / "heldout.npz"))
    lm.from_unit(train.x.reshape(8, -1))  # flat rows and split dimensions keep every value in place: accepted


def test_a_mean_on_another_scale_than_the_inputs_is_refused(tmp_path):
    """A 0..255 mean for inputs in [0, 1] made every figure wrong without a sign (an audit said 'Some leakage' of a
    model at chance)."""
    f = _export(_flat_mlp(), torch.rand(4, 16), tmp_path / "m.pt2")
    np.save(tmp_path / "mean255.npy", np.full(16, 120.0, dtype=np.float32))
    with pytest.raises(ModelError, match=r"spans \[120, 120\], outside the input range \[0, 1\]") as e:
        load_model(f, mean=tmp_path / "mean255.npy", device="cpu")
    assert "divided by 255" in e.value.fix
    lm = load_model(f, mean=tmp_path / "mean255.npy", input_range=(0, 255), device="cpu")  # its own scale: fine
    assert float(lm.mean.max()) == 120.0
    np.save(tmp_path / "neg.npy", np.linspace(-0.5, 0.5, 16, dtype=np.float32))  # data in [-1, 1], range not given
    with pytest.raises(ModelError, match="--input-range"):
        load_model(f, mean=tmp_path / "neg.npy", device="cpu")
