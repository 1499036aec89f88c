"""Targeted adversarial samples: the perturbation really stays within the L∞ / L2 budget and the input range,
success is what the model says, PGD succeeds, the generator beats no perturbation; CLI mapping."""

from __future__ import annotations

import hashlib
import json
from unittest.mock import patch

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from netinv import ConfigError
from netinv.apps.adversarial import (
    AdversarialConfig,
    bound_perturbation,
    compare_adversarial,
    generator_attack,
    perturbation_norms,
    pgd_attack,
    random_targets,
    run_adversarial,
)
from netinv.data import load_data, make_task
from netinv.train import TrainConfig, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def victim():
    split = make_task(load_data("digits"), "classes:0,1,2,3", n_per_class=60, heldout_per_class=25, seed=0)
    model = train(split, "cnn:8,16", TrainConfig(optimizer="adam", loss="ce", lr=3e-3, batch_size=32, epochs=15),
                  device="cpu", show_progress=False, hidden=32)
    return model, split


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 1.5)])
def test_budget_is_respected_and_success_is_real(victim, norm, eps):
    model, split = victim
    x = split.heldout.x[:60]
    t = random_targets(model, x, seed=0)
    assert (t != model.predict(x)).all()  # a target is never the current prediction
    cfg = AdversarialConfig(norm=norm, eps=eps, gen_steps=250)
    res = compare_adversarial(model, x, t, cfg, train_x=split.train.x, seed=0)
    for r in res.values():
        d = r.x_adv - x
        assert perturbation_norms(d, norm).max() <= eps + 1e-5  # within the budget, measured independently
        assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1  # within the input range
        torch.testing.assert_close(r.norms, perturbation_norms(d, norm))
        assert torch.equal(r.success, model.predict(r.x_adv) == t)  # success = the model's own verdict
    assert res["PGD"].summary()["success_rate"] >= 0.9
    # the generator does far better than chance (the target is never the clean prediction: 0% unperturbed)
    assert res["generator"].summary()["success_rate"] >= 0.4
    assert res["generator"].info["inference_time_s"] < res["PGD"].time_s  # amortised: one forward pass


def test_bound_perturbation_hand_values():
    raw = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(bound_perturbation(raw, "l2", 1.0), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(bound_perturbation(raw / 10, "l2", 1.0), raw / 10)  # inside the ball: unchanged
    x = torch.tensor([[0.0, 0.95]])
    d = bound_perturbation(torch.tensor([[-50.0, 50.0]]), "linf", 0.1, x, (0.0, 1.0))
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.05]]))  # the feasible box [0, 0.1] × [0.85, 1]
    d = bound_perturbation(torch.zeros(1, 2), "linf", 0.1, x, (0.0, 1.0))
    torch.testing.assert_close(d, torch.tensor([[0.05, -0.025]]))  # σ(0) = ½: the box centre
    with pytest.raises(ConfigError, match="unknown norm"):
        bound_perturbation(raw, "l1", 1.0)


def test_pgd_l2_hits_the_target_on_a_linear_model():
    lin = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    from netinv.models.loaded import LoadedModel

    m = LoadedModel(lin, (2,), 2, (-10.0, 10.0))
    x = torch.tensor([[1.0, 0.0]])  # class 0 by margin 1: needs ‖δ‖₂ ≥ 1/√2 to reach class 1
    ok = pgd_attack(m, x, torch.tensor([1]), AdversarialConfig(norm="l2", eps=0.8, pgd_steps=50))
    no = pgd_attack(m, x, torch.tensor([1]), AdversarialConfig(norm="l2", eps=0.6, pgd_steps=50))
    assert bool(ok.success[0]) and not bool(no.success[0])
    assert float(ok.norms[0]) <= 0.8 + 1e-6


def test_errors(victim):
    model, split = victim
    x = split.heldout.x[:4]
    with pytest.raises(ConfigError, match="eps must be positive"):
        pgd_attack(model, x, torch.zeros(4, dtype=torch.long), AdversarialConfig(eps=0))
    with pytest.raises(ConfigError, match="targets"):
        generator_attack(model, x, torch.full((4,), 9), AdversarialConfig())
    with pytest.raises(ConfigError, match="records no data"):
        run_adversarial(model.__class__(model.module, model.input_shape, 4), AdversarialConfig(), n=4)
    with pytest.raises(ConfigError, match=r"perturbation generator diverged \(loss nan\) with gen_lr 1e\+30"):
        generator_attack(model, x, torch.zeros(4, dtype=torch.long), AdversarialConfig(gen_steps=20, gen_lr=1e30))


def test_run_on_recorded_data_writes_outputs(victim, tmp_path):
    model, split = victim
    res = run_adversarial(model, AdversarialConfig(gen_steps=20, pgd_steps=5), n=10, seed=1, out=tmp_path)
    data = json.loads((tmp_path / "adversarial.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["PGD", "generator"] and data["seed"] == 1
    assert data["model"] == model.record()  # which model, and which inputs: the run can be repeated from its record
    x = np.load(tmp_path / "adversarial.npz")["x"]
    assert data["inputs"]["n"] == 10 and data["inputs"]["sha256"] == hashlib.sha256(x.tobytes()).hexdigest()
    assert data["inputs"]["load_args"] == model.meta["data"]["load_args"] and data["inputs"]["shuffle_seed"] == 1
    assert len(res["PGD"].target) == 10 and (tmp_path / "adversarial.npz").is_file()
    pick = torch.randperm(len(split.heldout), generator=torch.Generator().manual_seed(1))[:10]  # the seeded draw
    assert torch.equal(torch.from_numpy(x), split.heldout.x[pick])
    assert data["inputs"]["clean_accuracy"] == round(model.accuracy(split.heldout.x[pick], split.heldout.y[pick]), 4)
    assert data["inputs"]["generator_trains_on"] == "the model's training set"


def test_user_data_the_generator_trains_apart_from_the_attacked_inputs_and_a_poor_fit_warns(victim, tmp_path):
    """Audit G: with --data, the generator trained on the attacked inputs themselves when --n took the whole file,
    without a word; and a model fed inputs on the wrong scale (52% clean accuracy) got its table printed as usual.
    Both warn now, and the record says what the generator trained on and the clean accuracy."""
    model, split = victim
    cfg = AdversarialConfig(gen_steps=2, pgd_steps=2)
    data = split.heldout  # 100 inputs
    with pytest.warns(UserWarning, match="trains on the attacked inputs themselves"):
        run_adversarial(model, cfg, data=data, n=len(data), out=tmp_path / "all")
    rec = json.loads((tmp_path / "all" / "adversarial.json").read_text())["inputs"]
    assert rec["generator_trains_on"] == "the attacked inputs" and rec["n"] == len(data)
    x = torch.from_numpy(np.load(tmp_path / "all" / "adversarial.npz")["x"])
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, data.x[order])
    assert rec["clean_accuracy"] == round(model.accuracy(x, data.y[order]), 4) > 0.9
    run_adversarial(model, cfg, data=data, n=30, out=tmp_path / "apart")
    assert json.loads((tmp_path / "apart" / "adversarial.json").read_text())["inputs"]["generator_trains_on"] == \
        "the other 70 inputs of the data"
    wrong = type(data)(data.x * 0.05, data.y, data.classes, data.source)  # inputs far off the model's scale
    with pytest.warns(UserWarning, match=r"classifies only \d+% of the attacked inputs correctly"):
        run_adversarial(model, cfg, data=wrong, n=30)


def test_an_interrupted_generator_resumes_to_the_uninterrupted_result(victim, tmp_path):
    """The perturbation generator trains for 600 steps by default; Ctrl-C used to lose all of it."""
    import netinv.apps.adversarial as adv

    model, _ = victim
    cfg = AdversarialConfig(gen_steps=30, pgd_steps=3, checkpoint_every=10)
    full = run_adversarial(model, cfg, n=8, seed=1, out=tmp_path / "full")
    real = adv.save_state

    def save_then_stop(path, state):
        real(path, state)
        if state["step"] == 20:
            raise KeyboardInterrupt

    with patch.object(adv, "save_state", save_then_stop), pytest.raises(KeyboardInterrupt):
        run_adversarial(model, cfg, n=8, seed=1, out=tmp_path / "cut")
    assert (tmp_path / "cut" / ".adversarial_state.pt").is_file()
    with patch.object(adv, "check_finite_loss", wraps=adv.check_finite_loss) as steps:
        again = run_adversarial(model, cfg, n=8, seed=1, out=tmp_path / "cut", resume=True)
    assert steps.call_count == 10  # only the steps after the last checkpoint ran
    assert torch.equal(again["generator"].x_adv, full["generator"].x_adv)
    assert not (tmp_path / "cut" / ".adversarial_state.pt").exists()
    with pytest.raises(ConfigError, match="other settings"):  # another seed: refused, not mixed
        with patch.object(adv, "save_state", save_then_stop), pytest.raises(KeyboardInterrupt):
            run_adversarial(model, cfg, n=8, seed=1, out=tmp_path / "cut2")
        run_adversarial(model, cfg, n=8, seed=2, out=tmp_path / "cut2", resume=True)


def test_cli_maps_flags_onto_the_api(tmp_path):
    from netinv.cli.app import app

    with patch("netinv.cli.adversarial.load_model") as load, patch("netinv.cli.adversarial.run_adversarial") as api, \
            patch("netinv.cli.adversarial.table", return_value="| t |"):
        r = CliRunner().invoke(app, ["adversarial", "runs/v", "--out", str(tmp_path), "--norm", "l2", "--eps", "1.5",
                                     "--n", "50", "--gen-steps", "100", "--seed", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert load.call_args.args == ("runs/v",) and load.call_args.kwargs["device"] == "cpu"
    (_, cfg), kw = api.call_args
    assert cfg.norm == "l2" and cfg.eps == 1.5 and cfg.gen_steps == 100
    assert kw == {"data": None, "n": 50, "seed": 3, "out": tmp_path, "resume": False}
    assert "| t |" in r.output
    r = CliRunner().invoke(app, ["adversarial", "runs/v", "--norm", "l3"])
    assert r.exit_code != 0


def test_cli_path_alone_reads_an_npz(victim, tmp_path):
    """`--path X.npz` without `--data npz`: the file's kind is clear from the path."""
    from netinv.cli.app import app

    model, split = victim
    split.heldout.save_npz(tmp_path / "h.npz")
    with patch("netinv.cli.adversarial.load_model", return_value=model), \
            patch("netinv.cli.adversarial.run_adversarial") as api, \
            patch("netinv.cli.adversarial.table", return_value=""):
        r = CliRunner().invoke(app, ["adversarial", "runs/v", "--path", str(tmp_path / "h.npz"), "--n", "5"])
    assert r.exit_code == 0, r.output
    assert api.call_args.kwargs["data"] == tmp_path / "h.npz"  # read by the API, as a Python user's path is
    cfg = AdversarialConfig(gen_steps=5, pgd_steps=3)
    by_path = run_adversarial(model, cfg, data=tmp_path / "h.npz", n=5, seed=2)
    by_set = run_adversarial(model, cfg, data=split.heldout, n=5, seed=2)
    assert torch.equal(by_path["PGD"].x_adv, by_set["PGD"].x_adv)



def test_a_checkpoint_interval_below_one_is_refused(victim):
    model, _ = victim
    with pytest.raises(ConfigError, match="checkpoint_every=0"):
        run_adversarial(model, AdversarialConfig(gen_steps=5, pgd_steps=2, checkpoint_every=0), n=4)


def test_cli_named_source_is_seen_as_the_checkpoints_task(victim):
    """`--data digits` on a model trained on classes:0,1,2,3 was refused (label 9 outside 0..3) with a fix naming
    a --task option adversarial does not have; the checkpoint's own task is applied to the source."""
    from netinv.cli.app import app

    model, _ = victim
    assert model.meta["data"]["task"]["task"] == "classes:0,1,2,3"
    with patch("netinv.cli.adversarial.load_model", return_value=model), \
            patch("netinv.cli.adversarial.run_adversarial") as api, \
            patch("netinv.cli.adversarial.table", return_value=""):
        r = CliRunner().invoke(app, ["adversarial", "runs/v", "--data", "digits", "--n", "5"])
    assert r.exit_code == 0, r.output
    data = api.call_args.kwargs["data"]
    assert data.classes == ["0", "1", "2", "3"] and set(data.y.tolist()) == {0, 1, 2, 3} and len(data) == 720
