"""Generator inversion: the classifier really assigns the samples to their classes; every conditioning mode trains;
outputs, resume, class subsets, binary models, generator shapes, the feature layer and the CLI mapping."""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from unittest.mock import patch

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from netinv import ConfigError
from netinv.attacks._conditioning import MODES, Conditioning, conditioning_matrix
from netinv.attacks._generators import GeneratorSpec
from netinv.attacks.generator import GeneratorConfig, GeneratorInversion, load_generator
from netinv.data import load_data, make_task
from netinv.models.features import Features
from netinv.models.loaded import LoadedModel
from netinv.train import TrainConfig, train

FAST = dict(steps=150, batch_size=48, monitor_every=25, lr=2e-3, width=16, latent_dim=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread is as fast, and two threads on a shared, loaded 2-core machine can be 10× slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def victim():
    """A 4-class digits CNN (0-3), trained in a few seconds."""
    split = make_task(load_data("digits"), "classes:0,1,2,3", n_per_class=60, heldout_per_class=20, seed=0)
    model = train(split, "cnn:8,16", TrainConfig(optimizer="adam", loss="ce", lr=3e-3, batch_size=32, epochs=15),
                  device="cpu", show_progress=False, hidden=32)
    assert model.meta["test_accuracy"] > 0.9
    return model, split


def test_generated_samples_are_assigned_to_their_class(victim):
    model, split = victim
    # one-hot + matrix: confident targets (soft vectors ask for ambiguous samples on purpose, see docs/generator.md)
    c = GeneratorInversion(model, GeneratorConfig(**FAST, conditioning="hot+matrix")).invert(200, seed=0)
    assert c.x.shape == (200, 1, 8, 8) and c.x.min() >= 0 and c.x.max() <= 1  # in the input range
    assert torch.equal(torch.bincount(c.y), torch.full((4,), 50))  # balanced over the classes
    assigned = model.accuracy(c.x, c.y)  # the frozen classifier itself, not the attack's bookkeeping
    noise = model.accuracy(torch.rand(200, 1, 8, 8), c.y)
    assert assigned >= 0.95 and noise < 0.6
    assert c.info["assigned_fraction"] == pytest.approx(assigned)
    assert c.score.min() > 0 and c.info["mean_confidence"] > 0.8
    # not one image per class: the samples of a class differ (dropout + latent), pixels vary across them
    assert c.x[c.y == 0].std(0).mean() > 0.02


@pytest.mark.parametrize("mode", MODES)
def test_each_conditioning_mode_runs_and_trains(victim, mode):
    model, _ = victim
    cfg = GeneratorConfig(**{**FAST, "steps": 60, "monitor_every": 10}, conditioning=mode)
    att = GeneratorInversion(model, cfg)
    c = att.invert(40, seed=1)
    curve = att.curve
    assert len(curve) == 6
    assert curve[-1]["ce"] < curve[0]["ce"]  # it learns
    assert model.accuracy(c.x, c.y) > 0.5  # well above chance (0.25) after 60 steps


def test_class_subset_and_outputs(victim, tmp_path):
    model, _ = victim
    out = tmp_path / "inv"
    c = GeneratorInversion(model, GeneratorConfig(**FAST, classes=(0, 3), grid_per_class=8)).invert(
        seed=5, out=out)
    assert set(c.y.tolist()) == {0, 3} and len(c) == 2 * 32  # samples_per_class default
    assert model.accuracy(c.x, c.y) >= 0.95
    for f in ("generator.safetensors", "samples.npz", "run.json", "grid.png", "grid_class0.png", "grid_class3.png"):
        assert (out / f).is_file(), f
    assert not (out / "grid_class1.png").exists() and not (out / ".generator_state.pt").exists()
    npz = np.load(out / "samples.npz")
    np.testing.assert_array_equal(npz["x"], c.x.numpy())
    np.testing.assert_array_equal(npz["y"], c.y.numpy())
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 5 and run["config"]["classes"] == [0, 3] and run["feature_layer"] == "head:input"
    assert run["environment"]["device"] == str(model.device)
    assert run["model"]["input_range"] == list(model.input_range)  # netinv evaluate reloads the model on it
    g = load_generator(out)  # the saved generator reproduces the samples' classes
    labels = torch.tensor([0, 3] * 50)
    assert model.accuracy(g.generate(labels, torch.Generator().manual_seed(0)), labels) >= 0.9


@contextmanager
def _interrupting_bar(after: int):
    class Bar:
        calls = 0

        def update(self, *a, **k):
            Bar.calls += 1
            if Bar.calls >= after:
                raise KeyboardInterrupt

    yield Bar()


def test_resume_equals_uninterrupted_run(victim, tmp_path):
    model, _ = victim
    cfg = GeneratorConfig(**{**FAST, "steps": 40, "checkpoint_every": 20, "monitor_every": 10})
    full = GeneratorInversion(model, cfg).invert(30, seed=3)
    out = tmp_path / "r"
    with patch("netinv.attacks._generator_training.progress_bar", lambda *a, **k: _interrupting_bar(30)):
        with pytest.raises(KeyboardInterrupt):
            GeneratorInversion(model, cfg).invert(30, seed=3, out=out)
    assert (out / ".generator_state.pt").exists() and not (out / "samples.npz").exists()
    # other settings would match neither the record nor an uninterrupted run: refused, naming what differs
    with pytest.raises(ConfigError, match="other settings \\(seed 3 → 5\\)"):
        GeneratorInversion(model, cfg).invert(30, seed=5, out=out, resume=True)
    with pytest.raises(ConfigError, match="conditioning 'vector\\+matrix' → 'hot\\+matrix'"):
        GeneratorInversion(model, dataclasses.replace(cfg, conditioning="hot+matrix")).invert(30, seed=3, out=out,
                                                                                            resume=True)
    other = LoadedModel(model.module, model.input_shape, model.num_outputs, (0.0, 2.0), None, model.classes,
                        source=model.source)  # the same weights on another input range: other samples
    with pytest.raises(ConfigError, match="model.input_range \\[0.0, 1.0\\] → \\[0.0, 2.0\\]"):
        GeneratorInversion(other, cfg).invert(30, seed=3, out=out, resume=True)
    again = GeneratorInversion(model, cfg).invert(30, seed=3, out=out, resume=True)
    torch.testing.assert_close(again.x, full.x)
    assert [p["loss"] for p in again.info["curve"]] == pytest.approx([p["loss"] for p in full.info["curve"]])
    # --resume of the finished run returns it (it used to train again from step 0)
    with patch.object(GeneratorInversion, "fit", side_effect=AssertionError("trained again")):
        done = GeneratorInversion(model, cfg).invert(30, seed=3, out=out, resume=True)
    torch.testing.assert_close(done.x, again.x)
    assert json.loads(str(np.load(out / "samples.npz")["meta"]))["attack"] == "GeneratorInversion"


def test_an_unbalanced_n_and_a_resume_without_checkpoint_warn(victim, tmp_path):
    """Audit G: --n 7 on a 10-class model gave classes 0-6 only, and --resume into an empty folder trained from the
    start, both without a word."""
    model, _ = victim
    k = model.num_classes
    cfg = GeneratorConfig(**{**FAST, "steps": 2})
    with pytest.warns(UserWarning, match=f"n={k - 1} samples for {k} classes: 1 class gets none"):
        c = GeneratorInversion(model, cfg).invert(k - 1, seed=0)
    assert sorted(set(c.y.tolist())) == list(range(k - 1))
    with pytest.warns(UserWarning, match=f"n={k + 1} samples for {k} classes: 1 class gets 2 samples"):
        GeneratorInversion(model, cfg).invert(k + 1, seed=0)
    with pytest.warns(UserWarning, match="holds no checkpoint .* this run starts from the beginning"):
        GeneratorInversion(model, cfg).invert(2 * k, seed=0, out=tmp_path / "new", resume=True)


def test_binary_one_logit_model(parity_victim):
    model, _ = parity_victim  # MLP with one output: two classes
    c = GeneratorInversion(model, GeneratorConfig(**FAST)).invert(60, seed=0)
    assert set(c.y.tolist()) == {0, 1}
    assert model.accuracy(c.x, c.y) >= 0.95


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (64,), (1, 10, 10)])
@pytest.mark.parametrize("mode", ["vector+matrix", "embedding"])
def test_generators_for_each_input_shape(shape, mode):
    spec = GeneratorSpec(shape, 10, mode, latent_dim=8, width=8, dropout=0.4, input_range=(-1.0, 2.0))
    g = spec.build().eval()
    kind = spec.plan()[0]
    assert kind == ("mlp" if shape in ((64,), (1, 10, 10)) else "conv")
    cond = Conditioning(mode, 10).sample(6)
    z = torch.randn(6, 8)
    with torch.no_grad():
        a, b = g(z, cond), g(z, cond)
    assert a.shape == (6, *shape) and a.min() >= -1 and a.max() <= 2  # mapped into the input range
    assert not torch.equal(a, b)  # dropout stays active while generating


def test_conditioning_vectors_and_matrix():
    cond = Conditioning("vector+matrix", 5).sample(50, classes=torch.tensor([1, 4]),
                                                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(cond.target.argmax(1), cond.labels)  # the soft vector's argmax is the label
    assert set(cond.labels.tolist()) == {1, 4} and int((cond.labels == 1).sum()) == 25
    assert torch.allclose(cond.target.sum(1), torch.ones(50)) and cond.target.max() < 1
    assert cond.matrix.shape == (50, 1, 5, 5)
    m = conditioning_matrix(torch.eye(3)[[2]])[0, 0]
    assert torch.equal(m, torch.tensor([[0.0, 0, 1], [0, 0, 1], [1, 1, 1]]))  # label's row and column
    hot = Conditioning("hot", 3).for_labels(torch.tensor([2, 0]))
    assert torch.equal(hot.vector, torch.tensor([[0.0, 0, 1], [1, 0, 0]])) and hot.matrix is None
    with pytest.raises(ConfigError, match="unknown conditioning"):
        Conditioning("vector", 3)


def test_feature_layer_selection(victim):
    model, _ = victim
    f = Features(model)
    assert f.layer == "head:input"
    x = torch.rand(5, 1, 8, 8)
    feats, logits = f(x)
    assert feats.shape == (5, 32) and torch.allclose(logits, model.logits(x))
    assert Features(model, "features.2")(x)[0].shape == (5, 8 * 8 * 8)  # a named layer's output, flattened
    assert Features(model, "logits").layer == "logits"
    with pytest.raises(ConfigError, match="not a submodule"):
        Features(model, "nope")
    # no linear layer the hooks can see (a TorchScript module): the logits
    scripted = LoadedModel(torch.jit.trace(model.module, torch.rand(2, 1, 8, 8)), model.input_shape, 4)
    fs = Features(scripted)
    assert fs.layer == "logits" and torch.allclose(fs(x)[0], model.logits(x), atol=1e-5)


def test_bad_config_is_one_line_error(victim):
    model, _ = victim
    with pytest.raises(ConfigError, match="not classes of this 4-class model"):
        GeneratorInversion(model, GeneratorConfig(classes=(0, 7)))
    with pytest.raises(ConfigError, match="dropout"):
        GeneratorInversion(model, GeneratorConfig(dropout=1.0))


def test_cli_maps_flags_onto_the_api(tmp_path):
    from netinv.cli.app import app

    with patch("netinv.cli.invert.load_model") as load, patch("netinv.cli.invert.GeneratorInversion") as attack:
        attack.return_value.invert.return_value.info = {"steps_run": 10, "wall_time_s": 1.0,
                                                        "assigned_fraction": 1.0, "mean_confidence": 0.9}
        attack.return_value.invert.return_value.y = torch.tensor([0, 3])
        attack.return_value.invert.return_value.__len__.return_value = 2
        r = CliRunner().invoke(app, ["invert", "runs/victim", "--out", str(tmp_path / "o"), "--classes", "0,3",
                                     "--conditioning", "hot", "--steps", "50", "--dropout", "0.2", "--n", "20",
                                     "--seed", "4", "--device", "cpu", "--input-range", "0,1"])
    assert r.exit_code == 0, r.output
    assert load.call_args.args == ("runs/victim",) and load.call_args.kwargs["device"] == "cpu"
    assert load.call_args.kwargs["input_range"] == (0.0, 1.0)
    (model, cfg), _ = attack.call_args
    assert cfg.classes == (0, 3) and cfg.conditioning == "hot" and cfg.steps == 50 and cfg.dropout == 0.2
    assert attack.return_value.invert.call_args.args == (20,)
    assert attack.return_value.invert.call_args.kwargs == {"seed": 4, "out": tmp_path / "o", "resume": False}
    assert "100.0% assigned" in r.output
    r = CliRunner().invoke(app, ["invert", "runs/victim", "--classes", "a,b"])
    assert r.exit_code != 0


def test_a_diverged_generator_stops_with_one_line(victim, tmp_path):
    """A step far too large turns the loss NaN: training stops with a one-line error instead of sampling NaN images,
    and no NaN state is saved to resume from."""
    from netinv.cli._errors import format_error

    model, _ = victim
    cfg = GeneratorConfig(**{**FAST, "steps": 40, "monitor_every": 10, "checkpoint_every": 5, "lr": 1e12})
    with pytest.raises(ConfigError, match=r"generator training diverged at step \d+ \(loss nan\) with lr 1e\+12") as e:
        GeneratorInversion(model, cfg).invert(8, seed=0, out=tmp_path)
    assert format_error(e.value).count("\n") == 0
    for state in tmp_path.glob(".*state*"):
        st = torch.load(state, weights_only=False)
        gen = st.get("generator", {})
        assert all(torch.isfinite(v).all() for v in gen.values() if torch.is_tensor(v) and v.is_floating_point())


@pytest.mark.parametrize("bad, match", [({"kl_weight": float("nan")}, "loss weight kl"),
                                        ({"ce_weight": -1.0}, "loss weight ce"), ({"lr": float("nan")}, "lr must be")])
def test_bad_weights_and_step_sizes_are_refused(victim, bad, match):
    """A NaN weight wrote 640 NaN samples with exit 0; TLDR checked its weights, plain inversion did not."""
    model, _ = victim
    with pytest.raises(ConfigError, match=match):
        GeneratorInversion(model, GeneratorConfig(**{**FAST, **bad}))
