"""KKT reconstruction: the loss terms against literal references, the surrogate, resume, the attack against its
null baselines, and the CLI as a mapping onto the API."""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from unittest.mock import patch

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from netinv.attacks import kkt as kkt_mod
from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.losses import (
    box_prior,
    candidate_margins,
    dual_feasibility,
    kkt_residual_vector,
    kkt_stationarity,
    relu_surrogate,
)
from netinv.models.loaded import LoadedModel


def _net(k: int = 1, d: int = 6, h: int = 7) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, h, bias=False), nn.LeakyReLU(0.2),
                         nn.Linear(h, k, bias=False)).double()


def _loop_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The literal definition: θ − (1/m) Σ_j λ_j ∇θ margin_j, one backward per candidate."""
    params = list(net.parameters())
    acc = [p for p in params]
    for j in range(x.shape[0]):
        marg = candidate_margins(net(x[j:j + 1]), y[j:j + 1])[0]
        g = torch.autograd.grad(marg, params, create_graph=True)
        acc = [a - lam[j] / x.shape[0] * gj for a, gj in zip(acc, g, strict=True)]
    return sum((a * a).sum() for a in acc) / sum((p.detach() ** 2).sum() for p in params)


@pytest.mark.parametrize("k", [1, 3])
def test_vectorised_stationarity_equals_per_sample_loop(k):
    net = _net(k)
    x = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    y = torch.arange(9) % (2 if k == 1 else k)
    lam = torch.rand(9, dtype=torch.float64, requires_grad=True)
    fast = kkt_stationarity(list(net.parameters()), candidate_margins(net(x), y), lam)
    slow = _loop_reference(net, x, y, lam)
    assert float(fast.detach()) == pytest.approx(float(slow.detach()), rel=1e-12)
    gf = torch.autograd.grad(fast, [x, lam])  # the second-order path the attack optimises on
    gs = torch.autograd.grad(slow, [x, lam])
    for a, b in zip(gf, gs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_margins_binary_and_multiclass_by_hand():
    assert candidate_margins(torch.tensor([[2.0], [2.0]]), torch.tensor([1, 0])).tolist() == [2.0, -2.0]
    logits = torch.tensor([[1.0, 4.0, 2.0], [3.0, 0.0, 5.0]])
    assert candidate_margins(logits, torch.tensor([1, 0])).tolist() == [2.0, -2.0]  # 4−2, 3−5


def test_exact_kkt_point_has_zero_residual():
    # a linear "network" θ = (1/m)Σ λ_j y_j x_j exactly -> residual 0, and removing a candidate breaks it
    w = torch.tensor([[1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    y, lam = torch.tensor([1, 0]), torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert float(kkt_stationarity([w], candidate_margins(x @ w.T, y), lam).detach()) == pytest.approx(0.0, abs=1e-15)
    res = kkt_residual_vector([w], candidate_margins(x @ w.T, y), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert res[0].tolist() == [[0.0, -2.0]]


def test_dual_feasibility_and_box_prior_by_hand():
    lam = torch.tensor([0.5, 0.05, -0.2])
    assert float(dual_feasibility(lam, 0.1)) == pytest.approx(0.05 ** 2 + 0.3 ** 2)
    assert float(dual_feasibility(lam, 0.1, signed=True)) == pytest.approx(0.05 ** 2)  # |−0.2| ≥ 0.1
    x = torch.tensor([[-1.5, 0.0, 2.5]])
    assert float(box_prior(x, -1.0, 2.0)) == pytest.approx(0.25 + 0.25)
    assert float(box_prior(x, torch.tensor([-2.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 3.0]))) == pytest.approx(0.0)


def test_surrogate_changes_only_the_backward():
    net = _net(1)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    plain = net(x)
    gp = torch.autograd.grad(plain.sum(), x)[0]
    with relu_surrogate(30.0) as mode:
        smooth = net(x)
        gs = torch.autograd.grad(smooth.sum(), x, create_graph=True)[0]
    assert mode.calls == 2  # nn.ReLU and nn.LeakyReLU were both routed
    assert torch.equal(plain, smooth)  # forward bit-identical
    assert not torch.allclose(gp, gs)  # backward differs ...
    z = torch.randn(11, dtype=torch.float64, requires_grad=True)
    with relu_surrogate(30.0):
        (g,) = torch.autograd.grad(torch.relu(z).sum(), z, create_graph=True)
        (gl,) = torch.autograd.grad(nn.functional.leaky_relu(z, 0.2).sum(), z)
    torch.testing.assert_close(g, torch.sigmoid(30 * z))  # ... exactly as sigmoid(α z)
    torch.testing.assert_close(gl, 0.2 + 0.8 * torch.sigmoid(30 * z))
    (h,) = torch.autograd.grad(g.sum(), z)  # and the second derivative is smooth, not ReLU's zero
    s = torch.sigmoid(30 * z)
    torch.testing.assert_close(h, 30 * s * (1 - s))
    with relu_surrogate(None) as none:
        assert none is None and torch.equal(net(x), plain)


# ---------------------------------------------------------------------------------------------------- the attack
def _small_victim(mean: bool = False) -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=False), nn.ReLU(), nn.Linear(12, 1, bias=False))
    m = torch.rand(1, 4, 4) * 0.5 if mean else None
    return LoadedModel(net.eval(), (1, 4, 4), 1, (0.0, 1.0), m)


def test_score_is_the_leave_one_out_residual_increase():
    victim = _small_victim()
    cands = KKTReconstruction(victim, KKTConfig(iterations=30, show_progress=False)).invert(6, seed=3)
    params = [p.detach().requires_grad_() for p in victim.module.parameters()]
    x = cands.x.double()
    lam = cands.arrays["lam"].double()

    def resid(keep: torch.Tensor) -> float:
        out = torch.func.functional_call(victim.module, {k: p.double() for k, p in zip(
            dict(victim.module.named_parameters()), params, strict=True)}, (x,))
        r = kkt_residual_vector([p for p in params], candidate_margins(out, cands.y), lam * keep, create_graph=False)
        num = sum((t.detach().double() ** 2).sum() for t in r)
        return float(num / sum((p.detach().double() ** 2).sum() for p in params))

    base = resid(torch.ones(6, dtype=torch.float64))
    assert cands.info["criterion"] == pytest.approx(base, rel=1e-4)
    for j in range(6):
        keep = torch.ones(6, dtype=torch.float64)
        keep[j] = 0
        assert float(cands.score[j]) == pytest.approx(resid(keep) - base, rel=1e-3, abs=1e-7)


def test_outputs_in_data_space_and_run_record(tmp_path):
    victim = _small_victim(mean=True)
    cfg = KKTConfig(iterations=12, log_every=5, show_progress=False)
    cands = KKTReconstruction(victim, cfg).invert(8, seed=5, out=tmp_path)
    z = np.load(tmp_path / "candidates.npz")
    assert set(z.files) >= {"x", "y", "lam", "score", "margin"} and z["x"].shape == (8, 1, 4, 4)
    np.testing.assert_array_equal(z["x"], cands.x.numpy())
    # data space = module space + mean: the module sees x − mean and gives the recorded margins
    with torch.no_grad():
        out = victim.module(torch.from_numpy(z["x"]) - victim.mean)
    torch.testing.assert_close(candidate_margins(out, torch.from_numpy(z["y"])), torch.from_numpy(z["margin"]))
    assert z["y"].tolist() == [0] * 4 + [1] * 4
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["seed"] == 5 and run["config"]["iterations"] == 12 and run["n"] == 8
    assert [p["iteration"] for p in run["loss_curve"]] == [1, 5, 10, 12]
    assert run["wall_time_s"] > 0 and run["iterations_per_s"] > 0 and run["homogeneity"]["homogeneous"]
    assert not (tmp_path / ".kkt_state.pt").exists()


def test_float64_and_multiclass_spread_over_classes():
    from netinv.data import load_data, make_task
    from netinv.train import TrainConfig, train

    split = make_task(load_data("digits"), "classes:0,1,2", n_per_class=5, heldout_per_class=5, seed=0)
    victim = train(split, "mlp:32", TrainConfig(lr=1.0, epochs=2000, target_loss=1e-3), bias="none", init_scale=0.1,
                   device="cpu", show_progress=False)
    assert victim.num_outputs == 3
    cands = KKTReconstruction(victim, KKTConfig(iterations=40, dtype="float64", show_progress=False)).invert()
    assert len(cands) == 30 and cands.y.tolist() == [0] * 10 + [1] * 10 + [2] * 10  # 2n, spread over classes
    curve = cands.info["loss_curve"]
    assert curve[-1]["stationarity"] < 0.4 * curve[0]["stationarity"]
    assert cands.info["criterion"] < 0.4  # with the exact ReLU too


def test_non_homogeneous_model_warns_and_runs():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1))
    with pytest.warns(UserWarning, match="not positively homogeneous"):
        attack = KKTReconstruction(LoadedModel(net.eval(), (1, 4, 4), 1), KKTConfig(iterations=3, show_progress=False))
    assert len(attack.invert(4)) == 4


def test_signed_multipliers_mode_runs():
    cfg = KKTConfig(iterations=20, lam_sign="any", show_progress=False)
    cands = KKTReconstruction(_small_victim(), cfg).invert(6)
    assert torch.isfinite(cands.arrays["lam"]).all()


def test_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    victim = _small_victim(mean=True)
    cfg = KKTConfig(iterations=20, checkpoint_every=5, log_every=3, show_progress=False)
    whole = KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "a")
    real_bar = kkt_mod.progress_bar

    @contextmanager
    def dying_bar(total, description, completed=0, show=None):
        class Bar:
            calls = 0

            def update(self, advance=1, **fields):
                Bar.calls += 1
                if Bar.calls == 12:  # killed during iteration 12: the last state is iteration 10's
                    raise KeyboardInterrupt

        yield Bar()

    monkeypatch.setattr(kkt_mod, "progress_bar", dying_bar)
    with pytest.raises(KeyboardInterrupt):
        KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "b")
    assert torch.load(tmp_path / "b" / ".kkt_state.pt", weights_only=True)["iteration"] == 10
    monkeypatch.setattr(kkt_mod, "progress_bar", real_bar)
    resumed = KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "b", resume=True)
    assert torch.equal(resumed.x, whole.x) and torch.equal(resumed.arrays["lam"], whole.arrays["lam"])
    assert resumed.info["loss_curve"] == whole.info["loss_curve"]
    # a state made with other settings is refused, not silently mixed
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(kkt_mod, "progress_bar", dying_bar)
        KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "c")
    monkeypatch.setattr(kkt_mod, "progress_bar", real_bar)
    from netinv._errors import ConfigError

    with pytest.raises(ConfigError, match="other settings"):
        KKTReconstruction(victim, cfg).invert(8, seed=3, out=tmp_path / "c", resume=True)
    # the same path with other contents: other weights (a model file replaced in place), another start
    import copy

    other = copy.deepcopy(victim)
    with torch.no_grad():
        next(other.module.parameters()).mul_(1.01)
    with pytest.raises(ConfigError, match="other settings \\(model_sha256 "):
        KKTReconstruction(other, cfg).invert(8, seed=2, out=tmp_path / "c", resume=True)
    x0 = torch.rand(8, *victim.input_shape)
    with pytest.raises(ConfigError, match="other settings \\(start_sha256 None → "):
        KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "c", resume=True, x0=x0)


def test_resume_of_a_finished_run_returns_it_and_checkpoint_every_may_change(tmp_path, monkeypatch):
    """--resume on a finished run reran the whole attack from iteration 0 (an audit interrupted during its evaluation
    lost its attack); the checkpoint interval, which changes no result, was refused as 'other settings'."""
    from netinv._errors import ConfigError

    victim = _small_victim(mean=True)
    cfg = KKTConfig(iterations=20, checkpoint_every=5, show_progress=False)
    whole = KKTReconstruction(victim, cfg).invert(8, seed=2, out=tmp_path / "a")

    def never(*a, **k):
        raise AssertionError("the finished attack ran again")

    monkeypatch.setattr(kkt_mod._Problem, "step", never)
    again = KKTReconstruction(victim, dataclasses.replace(cfg, checkpoint_every=7)).invert(
        8, seed=2, out=tmp_path / "a", resume=True)
    assert torch.equal(again.x, whole.x) and torch.equal(again.arrays["lam"], whole.arrays["lam"])
    assert torch.equal(again.score, whole.score) and again.info["criterion"] == whole.info["criterion"]
    with pytest.raises(ConfigError, match=r"other settings \(seed 2 → 3\)"):
        KKTReconstruction(victim, cfg).invert(8, seed=3, out=tmp_path / "a", resume=True)


@pytest.fixture(scope="module")
def kkt_victim():
    """A bias-free 64-300-1 MLP, small init, full-batch GD to zero error on 20 + 20 digits (parity): the reference
    recipe of benchmarks/kkt_digits.py, scaled down."""
    from netinv.data import load_data, make_task
    from netinv.train import TrainConfig, train

    split = make_task(load_data("digits"), "parity", n_per_class=20, heldout_per_class=100, seed=0)
    model = train(split, "mlp:300", TrainConfig(lr=3.0, epochs=4000, target_loss=1e-4, mean_subtract=True),
                  bias="none", init_scale=0.03, device="cpu", show_progress=False)
    return model, split


def test_short_attack_beats_the_noise_baseline(kkt_victim):
    from netinv.metrics import evaluate

    model, split = kkt_victim
    assert model.accuracy(split.train.x, split.train.y) == 1.0
    cands = KKTReconstruction(model, KKTConfig(iterations=400, show_progress=False)).invert(seed=0)
    assert len(cands) == 80  # 2n
    ev = evaluate(cands.x, split.train, split.heldout, model=model, candidate_labels=cands.y)
    # measured: 11-14 of 40 above tau and AUC 0.615-0.623 over seeds 0-2; noise 2 and 0.495
    assert ev.attack.auc > ev.noise.auc + 0.08, ev.table()
    assert ev.attack.n_leaked >= ev.noise.n_leaked + 6, ev.table()
    assert ev.attack.auc > ev.real_heldout.auc + 0.08, ev.table()  # not just "looks like a digit"


def test_warm_start_from_the_training_set_keeps_far_more_of_it(kkt_victim):
    """x0 = the real training set (an oracle experiment): the run starts there, records it, and leaks far more than
    a cold start — the objective does not push real members away."""
    from netinv.metrics import evaluate

    model, split = kkt_victim
    x0, y0 = torch.cat([split.train.x, split.train.x]), torch.cat([split.train.y, split.train.y])
    cfg = KKTConfig(iterations=0, show_progress=False)
    at0 = KKTReconstruction(model, cfg).invert(x0=x0, y0=y0)
    assert torch.allclose(at0.x, x0, atol=1e-6) and torch.equal(at0.y, y0) and at0.info["x0"] == "given"
    cfg = KKTConfig(iterations=400, show_progress=False)
    warm = KKTReconstruction(model, cfg).invert(x0=x0, y0=y0)
    cold = KKTReconstruction(model, cfg).invert(seed=0)
    ev_w = evaluate(warm.x, split.train, split.heldout, model=model, candidate_labels=warm.y)
    ev_c = evaluate(cold.x, split.train, split.heldout, model=model, candidate_labels=cold.y)
    assert ev_w.attack.auc > ev_c.attack.auc + 0.1, (ev_w.table(), ev_c.table())
    assert ev_w.attack.n_leaked > ev_c.attack.n_leaked + 5


def test_warm_start_is_checked():
    from netinv._errors import ConfigError

    model = _small_victim()
    attack = KKTReconstruction(model, KKTConfig(iterations=0, show_progress=False))
    with pytest.raises(ConfigError, match="x0 has shape"):
        attack.invert(x0=torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="classes outside"):
        attack.invert(x0=torch.zeros(4, *model.input_shape), y0=torch.tensor([0, 1, 2, 5]))
    # the same values in another layout: flat rows, or the singleton channel last (N×H×W×1)
    x0 = torch.rand(4, *model.input_shape)
    ref = attack.invert(x0=x0)
    for other in (x0.reshape(4, -1), x0.reshape(4, *[d for d in model.input_shape if d != 1], 1)):
        assert torch.equal(attack.invert(x0=other).x, ref.x)
    with pytest.raises(ConfigError, match="at least 2 candidates .*--m"):
        attack.invert(1)
    flat = dataclasses.replace(model, module=nn.Sequential(nn.Unflatten(1, model.input_shape), model.module),
                               input_shape=(math.prod(model.input_shape),), mean=None)
    flat_attack = KKTReconstruction(flat, KKTConfig(iterations=0, show_progress=False))
    assert flat_attack.invert(x0=x0).x.shape == (4, math.prod(model.input_shape))  # images for a flat model
    with pytest.raises(ConfigError, match="x0 has shape"):  # 2×8 rows would cut the 4×4 images across rows
        attack.invert(x0=x0.reshape(4, 2, 8))


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_start_flag_gives_the_api_warm_start(tmp_path):
    from netinv.cli.app import app

    model = _small_victim()
    x0 = torch.rand(6, *model.input_shape)
    y0 = torch.tensor([0, 1, 0, 1, 0, 1])
    np.savez(tmp_path / "start.npz", x=x0.numpy(), y=y0.numpy())
    with patch("netinv.cli.reconstruct.load_model", return_value=model):
        res = CliRunner().invoke(app, ["reconstruct", "kkt", "m", "--out", str(tmp_path / "r"), "--iterations", "3",
                                       "--start", str(tmp_path / "start.npz")])
    assert res.exit_code == 0, res.output
    api = KKTReconstruction(model, KKTConfig(iterations=3, show_progress=False)).invert(x0=x0, y0=y0)
    with np.load(tmp_path / "r" / "candidates.npz") as f:
        assert np.allclose(f["x"], api.x.numpy(), atol=1e-6) and np.array_equal(f["y"], y0.numpy())
    np.savez(tmp_path / "bad.npz", z=x0.numpy())
    with patch("netinv.cli.reconstruct.load_model", return_value=model) as load:
        res = CliRunner().invoke(app, ["reconstruct", "kkt", "m", "--out", str(tmp_path / "r2"), "--start",
                                       str(tmp_path / "bad.npz")])
    from netinv._errors import ConfigError
    from netinv.cli._errors import format_error

    assert not load.called and res.exit_code != 0 and isinstance(res.exception, ConfigError)
    assert "warm start" in str(res.exception) and format_error(res.exception).count("\n") == 0
    # images stored as uint8 are not data-space inputs: refused, not optimised from 0..255
    np.savez(tmp_path / "u8.npz", x=(x0.numpy() * 255).astype(np.uint8))
    with patch("netinv.cli.reconstruct.load_model", return_value=model) as load:
        res = CliRunner().invoke(app, ["reconstruct", "kkt", "m", "--out", str(tmp_path / "r3"), "--start",
                                       str(tmp_path / "u8.npz")])
    assert not load.called and isinstance(res.exception, ConfigError) and "is uint8" in str(res.exception)


def test_cli_maps_flags_onto_one_api_call(tmp_path):
    from netinv.attacks.base import Candidates
    from netinv.cli.app import app

    fake = Candidates(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), torch.zeros(4),
                      info={"wall_time_s": 1.0, "iterations_per_s": 2.0, "criterion": 0.1})
    with patch("netinv.cli.reconstruct.load_model", return_value=_small_victim()) as load, \
            patch.object(KKTReconstruction, "invert", return_value=fake, autospec=True) as inv:
        res = CliRunner().invoke(app, ["reconstruct", "kkt", "some/model", "--out", str(tmp_path), "--m", "4",
                                       "--iterations", "7", "--lam-min", "0.3", "--exact-relu", "--dtype",
                                       "float64", "--seed", "9", "--resume", "--input-range", "0,2"])
    assert res.exit_code == 0, res.output
    assert load.call_args.args == ("some/model",) and load.call_args.kwargs["input_range"] == (0.0, 2.0)
    attack, n = inv.call_args.args
    assert n == 4 and inv.call_args.kwargs == {"seed": 9, "out": tmp_path, "resume": True, "x0": None, "y0": None}
    assert (attack.config.iterations, attack.config.lam_min, attack.config.alpha, attack.config.dtype) == \
        (7, 0.3, None, "float64")
    assert "stationarity residual 0.1" in res.output
    with patch("netinv.cli.reconstruct.load_model", return_value=_small_victim()), \
            patch.object(KKTReconstruction, "invert", return_value=fake, autospec=True) as inv:
        res = CliRunner().invoke(app, ["reconstruct", "kkt", "some/model", "--out", str(tmp_path), "--n", "6"])
    assert res.exit_code == 0 and inv.call_args.args[1] == 6  # --n, as the other commands name a count, works too


def test_a_poor_fit_gets_a_one_line_note(tmp_path):
    """A run whose candidates explain little of θ (criterion above POOR_FIT) says so, in run.json and on the CLI."""
    from netinv.attacks.base import Candidates
    from netinv.attacks.kkt import POOR_FIT, criterion_note
    from netinv.cli.app import app

    assert criterion_note(0.018) is None and criterion_note(POOR_FIT) is None and criterion_note(float("nan")) is None
    note = criterion_note(0.52)
    assert "explain only 48% of the weights" in note and "\n" not in note
    for crit, shown in ((0.52, True), (0.1, False)):
        fake = Candidates(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), torch.zeros(4),
                          info={"wall_time_s": 1.0, "iterations_per_s": 2.0, "criterion": crit})
        with patch("netinv.cli.reconstruct.load_model", return_value=_small_victim()), \
                patch.object(KKTReconstruction, "invert", return_value=fake, autospec=True):
            res = CliRunner().invoke(app, ["reconstruct", "kkt", "some/model", "--out", str(tmp_path), "--m", "4"])
        assert res.exit_code == 0 and ("note: the candidates explain only" in res.output) is shown, res.output
    # a real run records it: an untrained net is far from any KKT point
    c = KKTReconstruction(_small_victim(), KKTConfig(iterations=3, show_progress=False)).invert(4)
    assert c.info["criterion_note"] == criterion_note(c.info["criterion"])


def test_cli_rejects_a_bad_setting_in_one_line(tmp_path):
    from netinv._errors import ConfigError
    from netinv.cli._errors import format_error
    from netinv.cli.reconstruct import kkt_config

    with pytest.raises(ConfigError) as e:
        kkt_config({"optimizer": "lbfgs"})
    assert format_error(e.value).count("\n") == 0 and "optimizer" in str(e.value)
    with pytest.raises(ConfigError, match="--alpha 10.0 sets the smooth surrogate that --exact-relu drops"):
        kkt_config({"alpha": 10.0}, exact_relu=True)  # it was dropped silently (run.json said alpha null)
    assert kkt_config({}, exact_relu=True).alpha is None
    (tmp_path / "a.yaml").write_text("alpha: 50\niterations: 9\n")  # the same through --config
    with pytest.raises(ConfigError, match="alpha: 50 in .*a.yaml sets the smooth surrogate that --exact-relu drops"):
        kkt_config({}, exact_relu=True, yaml_file=tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("alpha: null\niterations: 9\n")
    cfg = kkt_config({}, exact_relu=True, yaml_file=tmp_path / "b.yaml")
    assert cfg.alpha is None and cfg.iterations == 9


def _bias_free_cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.LeakyReLU(0.1), nn.Flatten(),
                         nn.Linear(4 * 16, 1, bias=False)).eval()


@pytest.mark.parametrize("fixed_batch", [False, True])
def test_torch_export_cnn_gives_the_module_result(tmp_path, fixed_batch):
    """A plain-PyTorch CNN saved with torch.export: its graph calls aten.relu / aten.leaky_relu, which the
    surrogate must reach too, so the attack on the archive equals the attack on the module."""
    from netinv.models.loading import load_model

    net = _bias_free_cnn()
    dyn = None if fixed_batch else ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(net, (torch.rand(5, 1, 4, 4),), dynamic_shapes=dyn), tmp_path / "m.pt2")
    archive = load_model(tmp_path / "m.pt2", input_range=(0.0, 1.0), device="cpu")
    module = LoadedModel(net, (1, 4, 4), 1)
    cfg = KKTConfig(iterations=15, show_progress=False)
    a = KKTReconstruction(archive, cfg).invert(6, seed=1)
    b = KKTReconstruction(module, cfg).invert(6, seed=1)
    torch.testing.assert_close(a.x, b.x, rtol=1e-4, atol=1e-5)
    exact = KKTReconstruction(archive, KKTConfig(iterations=15, alpha=None, show_progress=False)).invert(6, seed=1)
    assert (exact.x - a.x).abs().max() > 1e-3  # the surrogate did change the archive's run


def test_warns_when_the_surrogate_reaches_no_activation():
    class ClampNet(nn.Module):  # ReLU written as clamp: homogeneous, but nothing for the surrogate to replace
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(16, 8, bias=False), nn.Linear(8, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x.flatten(1)).clamp(min=0))

    attack = KKTReconstruction(LoadedModel(ClampNet().eval(), (1, 4, 4), 1), KKTConfig(iterations=3,
                                                                                       show_progress=False))
    with pytest.warns(UserWarning, match="no ReLU / leaky ReLU the surrogate can replace"):
        assert len(attack.invert(4)) == 4


def test_attack_leaves_a_batchnorm_model_untouched():
    """An eval-mode BatchNorm + dropout model: the attack runs (with the homogeneity warning) and neither the running
    statistics nor the mode of the user's module change."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3),
                        nn.Linear(8 * 16, 10)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5), net[1].running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.warns(UserWarning, match="not positively homogeneous"):
        attack = KKTReconstruction(LoadedModel(net, (1, 4, 4), 10), KKTConfig(iterations=3, show_progress=False))
    cands = attack.invert(10)
    assert torch.isfinite(cands.x).all() and torch.isfinite(cands.score).all()
    assert not net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("bad", [dict(lr_x=-1.0), dict(lr_lam=float("nan")), dict(alpha=0.0), dict(alpha=-100.0),
                                 dict(lam_min=-1.0), dict(init_scale=0.0)])
def test_nonsense_settings_are_refused_before_the_attack(bad):
    """A negative step used to end in a 54-line traceback from torch.optim; α ≤ 0 or λ_min < 0 ran silently."""
    from netinv._errors import ConfigError

    with pytest.raises(ConfigError, match="must be positive"):
        KKTReconstruction(_small_victim(), KKTConfig(iterations=2, show_progress=False, **bad)).invert(8)


def test_a_fresh_run_in_a_used_folder_says_what_it_replaces(tmp_path):
    cfg = KKTConfig(iterations=2, show_progress=False)
    KKTReconstruction(_small_victim(), cfg).invert(8, out=tmp_path)
    with pytest.warns(UserWarning, match="holds an earlier run's candidates.npz"):
        KKTReconstruction(_small_victim(), cfg).invert(8, out=tmp_path)
    (tmp_path / ".kkt_state.pt").write_bytes(b"")  # what an interrupted run leaves
    with pytest.warns(UserWarning, match="interrupted run's checkpoint; .*add --resume"):
        KKTReconstruction(_small_victim(), cfg).invert(8, out=tmp_path)


def test_attacks_and_training_leave_the_callers_random_state_alone(digits_parity):
    """invert(seed=7) reseeded the notebook's own torch / NumPy / random draws."""
    import random

    from netinv.attacks import GeneratorConfig, GeneratorInversion
    from netinv.train import TrainConfig, train

    victim = _small_victim()
    calls = [lambda: KKTReconstruction(victim, KKTConfig(iterations=2, show_progress=False)).invert(4, seed=7),
             lambda: train(digits_parity, "mlp:8", TrainConfig(epochs=3), show_progress=False),
             lambda: GeneratorInversion(victim, GeneratorConfig(steps=2, batch_size=8, width=8)).invert(4, seed=7)]
    for call in calls:
        torch.manual_seed(123), np.random.seed(123), random.seed(123)
        expected = (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random())
        torch.manual_seed(123), np.random.seed(123), random.seed(123)
        call()
        assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()) == expected


def test_every_attack_class_takes_a_checkpoint_path(parity_victim):
    """A path is loaded as the CLI loads it; the KKT attack used to read its homogeneity off the raw argument."""
    from netinv import ModelError, load_model
    from netinv.attacks.generator import GeneratorInversion
    from netinv.attacks.tldr import TLDR

    model, ckpt = parity_victim
    cfg = KKTConfig(iterations=3, show_progress=False)
    by_path = KKTReconstruction(str(ckpt), cfg).invert(n=4, seed=0)
    by_model = KKTReconstruction(load_model(ckpt), cfg).invert(n=4, seed=0)
    assert torch.equal(by_path.x, by_model.x) and torch.equal(by_path.y, by_model.y)
    for cls in (GeneratorInversion, TLDR):
        attack = cls(ckpt)
        assert isinstance(attack.model, LoadedModel) and attack.model.digest() == model.digest()
    with pytest.raises(ModelError, match="got a list, not a model"):
        KKTReconstruction([1, 2])
