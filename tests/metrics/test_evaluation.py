"""evaluate() on digits: the null baselines behave as the protocol says, and only real leakage scores as leakage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from netinv._errors import ConfigError, DataError, ModelError
from netinv.data import Dataset, load_data, make_task
from netinv.metrics import evaluate, evaluate_dir
from netinv.metrics.functional import class_assignment, per_class_mean_pairwise_distance
from netinv.models.loaded import LoadedModel


@pytest.fixture(scope="module")
def parity():
    """100 members (50 per class) and 300 non-members (small enough for a loaded 2-core test machine)."""
    return make_task(load_data("digits"), "parity", n_per_class=50, heldout_per_class=150, seed=0)


def test_baselines_and_true_leakage(parity):
    tr, ho = parity.train, parity.heldout
    # "candidates" = the training images themselves, in an affine-changed data space and flattened (M×D)
    cands = (3.0 * tr.x - 1.0).flatten(1)
    ev = evaluate(cands, tr, ho, seed=0)
    a, noise, real = ev.attack, ev.noise, ev.real_heldout
    # the training set itself leaks everything: every member above τ, AUC ≈ 1
    assert a.auc > 0.99 and a.n_leaked == 100 and a.frac_leaked == 1.0
    assert a.best_mean_ssim > 0.99 and a.train_match.tolist() == list(range(100))
    assert a.n_distinct_leaked == 100  # one candidate per leaked image
    # real held-out digits look like digits (high Haim figures) but reveal nothing about members (AUC ≈ 0.5)
    assert real.n_above_threshold >= 95 and real.best_mean_ssim > 0.8
    assert abs(real.auc - 0.5) < 0.1 and real.frac_leaked < 0.15
    # uniform noise scores low on every figure
    assert noise.n_above_threshold == 0 and noise.best_mean_ssim < 0.4
    assert abs(noise.auc - 0.5) < 0.1 and noise.frac_leaked < 0.15
    # same counts, and the real candidates never serve as τ images
    assert noise.n_candidates == real.n_candidates == 100
    s = ev.settings
    assert not set(s["heldout_tau_indices"]) & set(s["heldout_candidate_indices"])
    assert s["n_heldout_tau"] + s["n_heldout_candidates"] == len(ho) and s["n_heldout_tau"] == len(a.heldout_ssim)
    assert ev.train_margin is None and ev.conditioning is None and ev.margin_leakage is None
    assert "attack" in ev.table() and "real held-out" in ev.table()


def test_real_candidates_as_the_attack_do_not_count_as_leakage(parity):
    tr, ho = parity.train, parity.heldout
    other = make_task(load_data("digits"), "parity", n_per_class=50, seed=1).train.x  # mostly non-members
    keep = ~(other[:, None] == tr.x[None]).flatten(2).all(2).any(1)  # drop the few that are members
    ev = evaluate(other[keep], tr, ho, seed=3)
    assert ev.attack.n_above_threshold >= 90 and abs(ev.attack.auc - 0.5) < 0.12


def test_one_candidate_behind_several_leaks_counts_once(parity):
    """Two identical training images recovered by one candidate: two leaks, one distinct candidate."""
    from netinv.data import Dataset

    tr, ho = parity.train, parity.heldout
    x = tr.x.clone()
    x[1] = x[0]  # a duplicated member
    train = Dataset(x, tr.y, tr.classes)
    cands = x.clone()
    cands[1] = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))  # image 1's own copy is gone
    a = evaluate(cands, train, ho, seed=0).attack
    assert a.train_match[:2].tolist() == [0, 0] and a.n_leaked == 100
    assert a.n_distinct_leaked == 99


def test_seed_determinism(digits_parity):
    tr, ho = digits_parity.train, digits_parity.heldout
    x = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    e1, e2, e3 = (evaluate(x, tr, ho, seed=s) for s in (4, 4, 5))
    assert e1.to_dict() == e2.to_dict()
    assert e1.noise.train_ssim.tolist() != e3.noise.train_ssim.tolist()


def _linear_model(k: int, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, k)).eval()
    return LoadedModel(module, (1, 8, 8), k, (-1.0, 2.0))


@pytest.mark.parametrize("k", [1, 3])
def test_margins_conditioning_and_files(tmp_path, k):
    split = make_task(load_data("digits"), "parity" if k == 1 else "classes:0,1,2", n_per_class=15,
                      heldout_per_class=30, seed=0)
    tr, ho = split.train, split.heldout
    model = _linear_model(k)
    x = tr.x + 0.1 * torch.randn_like(tr.x)
    labels = (2 * tr.y - 1) if k == 1 else tr.y  # binary candidates may carry ±1 labels (KKT)
    ev = evaluate(x, tr, ho, model=model, candidate_labels=labels, seed=0, out=tmp_path, n_best=5)
    with torch.no_grad():  # the data sets' [0, 1] images enter the model mapped onto its range (-1, 2)
        z = model.module(-1.0 + 3.0 * tr.x)
    expect = (2 * tr.y - 1) * z[:, 0] if k == 1 else torch.stack(
        [z[i, y] - max(z[i, j] for j in range(k) if j != y) for i, y in enumerate(tr.y.tolist())])
    assert torch.allclose(ev.train_margin, expect, atol=1e-6)
    # the training images on the margin and how many of them each set leaks, as on_margin and τ say
    ml = ev.margin_leakage
    pos = expect[expect > 0]
    on = (expect > 0) & (expect <= 1.1 * pos.min())
    assert ml["n_on_margin"] == int(on.sum()) >= 1 and ml["indices"] == on.nonzero()[:, 0].tolist()
    for f in ev.sets:
        assert ml["leaked"][f.name] == int(((f.train_ssim > f.tau) & on).sum())
    assert f"on-margin leaked (of {ml['n_on_margin']})" in ev.table()
    # noise drawn in the model's input range
    assert ev.settings["noise_range"] == [-1.0, 2.0]
    c = ev.conditioning
    with torch.no_grad():
        assert c["assigned_fraction"] == pytest.approx(class_assignment(model.module(x), tr.y)["assigned_fraction"])
    real = per_class_mean_pairwise_distance(tr.x, tr.y)
    assert c["diversity_pixels"]["real"] == pytest.approx(real)
    assert set(c["diversity_features"]["candidates"]) == set(range(2 if k == 1 else 3))
    assert c["diversity_features"]["layer"] == "3:input"  # the last Linear of the Sequential
    d = json.loads((tmp_path / "evaluation.json").read_text())
    assert d["summary"]["attack"]["n_leaked"] == ev.attack.n_leaked and len(d["attack"]["train_ssim"]) == len(tr)
    assert d["margin_leakage"] == ml and d["summary"]["attack"]["n_distinct_leaked"] == ev.attack.n_distinct_leaked
    assert d["settings"]["config"]["n_best"] == 5 and d["settings"]["seed"] == 0
    for name in ("best_pairs", "ssim_vs_margin"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and name in ev.figures
        assert d["figures"][name] == f"{name}.png"  # beside evaluation.json, wherever the evaluation ran from


def test_bad_inputs(parity):
    tr, ho = parity.train, parity.heldout
    with pytest.raises(DataError, match="NaN"):
        evaluate(torch.full((3, 1, 8, 8), float("nan")), tr, ho)
    with pytest.raises(DataError, match="do not fit"):
        evaluate(torch.rand(3, 1, 7, 7), tr, ho)
    with pytest.raises(DataError, match="labels"):
        evaluate(torch.rand(3, 1, 8, 8), tr, ho, candidate_labels=[0, 1])
    with pytest.raises(DataError, match="held-out"):
        evaluate(torch.rand(3, 1, 8, 8), tr, ho.subset([0]))


def test_evaluate_dir_with_checkpoint_and_with_npz(parity_victim, digits_parity, tmp_path):
    model, ckpt = parity_victim
    run = tmp_path / "run"
    run.mkdir()
    tr = digits_parity.train
    x = torch.cat([tr.x, torch.rand(10, 1, 8, 8)])
    y = torch.cat([2 * tr.y - 1, torch.ones(10, dtype=torch.long)])
    np.savez(run / "candidates.npz", x=x.numpy(), y=y.numpy(), lam=np.ones(len(x), np.float32))
    ev = evaluate_dir(run, ckpt, model_options={"device": "cpu"})  # sets from the checkpoint's metadata
    assert ev.settings["train_indices"] == tr.indices and ev.attack.n_leaked == len(tr)
    assert ev.train_margin is not None and float(ev.train_margin.min()) > 0  # zero training error
    assert ev.conditioning["assigned_fraction"] >= len(tr) / len(x)
    assert (run / "evaluation.json").exists() and (run / "ssim_vs_margin.png").exists()
    # the audit's verdict on these figures is part of the record (the training images themselves: clear leakage)
    rec = json.loads((run / "evaluation.json").read_text())["verdict"]
    assert rec == ev.verdict() and rec["level"] == "clear" and rec["p_above_tau"] < 1e-3
    # a user model's sets come as npz files; without a model there are no margins
    tr_npz, ho_npz = tr.save_npz(tmp_path / "t.npz"), digits_parity.heldout.save_npz(tmp_path / "h.npz")
    ev2 = evaluate_dir(run, None, tr_npz, ho_npz)
    assert ev2.attack.summary() == ev.attack.summary() and ev2.train_margin is None
    # a generator run: samples.npz, and the model recorded in run.json
    gen = tmp_path / "gen"
    gen.mkdir()
    np.savez(gen / "samples.npz", x=x.numpy(), y=(y > 0).long().numpy())
    (gen / "run.json").write_text(json.dumps({"model": {"format": "netinv", "path": str(ckpt)}}))
    ev3 = evaluate_dir(gen, model_options={"device": "cpu"})  # compared exactly with the CPU evaluation
    assert ev3.attack.summary() == ev.attack.summary() and ev3.conditioning == ev.conditioning
    with pytest.raises(ConfigError, match="only one"):
        evaluate_dir(run, None, tr_npz, None)
    with pytest.raises(DataError, match="no training"):
        evaluate_dir(run)
    with pytest.raises(DataError, match="no candidates"):
        evaluate_dir(tmp_path / "nothing", ckpt)


def test_members_among_the_non_members_are_left_out(parity):
    """A held-out file that also holds training images would count them as non-members that leak (τ up, AUC
    down): they are dropped with a warning, and a held-out set made of members only is refused."""
    tr, ho = parity.train, parity.heldout
    x = torch.cat([tr.x[:20], torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1))])
    clean = evaluate(x, tr, ho)
    mixed = Dataset(torch.cat([ho.x, tr.x[:30]]), torch.cat([ho.y, tr.y[:30]]), ho.classes, {})
    with pytest.warns(UserWarning, match="30 of the 330 held-out images are also training images"):
        ev = evaluate(x, tr, mixed)
    assert ev.attack.summary() == clean.attack.summary()  # the same figures as with the clean held-out set
    assert ev.settings["heldout_members_left_out"] == 30 and clean.settings["heldout_members_left_out"] == 0
    with pytest.raises(DataError, match="100 of the 100 held-out images are also training images"):
        evaluate(x, tr, tr)


def test_evaluate_dir_refuses_a_recorded_model_that_moved(digits_parity, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "candidates.npz", x=digits_parity.train.x.numpy(), y=digits_parity.train.y.numpy())
    (run / "run.json").write_text(json.dumps({"model": {"format": "export", "path": str(tmp_path / "gone.pt2")}}))
    tr_npz = digits_parity.train.save_npz(tmp_path / "t.npz")
    ho_npz = digits_parity.heldout.save_npz(tmp_path / "h.npz")
    with pytest.raises(ModelError, match="gone.pt2, recorded in .* is no longer there") as e:
        evaluate_dir(run, None, tr_npz, ho_npz)  # not silently evaluated without margins
    assert "--model" in e.value.fix


def test_scores_do_not_depend_on_the_chunk_size(parity, monkeypatch):
    """References are scored in chunks (bounded memory on large sets): the figures are the same."""
    import netinv.metrics.evaluation as ev_mod

    x = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = evaluate(x, parity.train, parity.heldout)
    monkeypatch.setattr(ev_mod, "_CHUNK", 7)
    got = evaluate(x, parity.train, parity.heldout)
    assert got.to_dict() == ref.to_dict()


def test_outputs_replace_links_in_a_run_directory_and_never_write_through_them(parity_victim, digits_parity, tmp_path):
    """A run directory may come from anyone: a best_pairs.png linked to another file must not overwrite it."""
    from netinv.metrics import evaluate

    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best_pairs.png", "ssim_vs_margin.png", "evaluation.json"):
        (run / name).symlink_to(target)
    model, _ = parity_victim
    evaluate(digits_parity.train.x[:6], digits_parity.train, digits_parity.heldout, model=model, out=run)
    assert target.read_text() == "keep me"
    assert not (run / "best_pairs.png").is_symlink() and (run / "best_pairs.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    for name in ("best_pairs.png", "ssim_vs_margin.png"):  # the seed travels with the pictures
        assert json.loads(Image.open(run / name).text["netinv"]) == {"seed": 0, "record": "evaluation.json"}


def test_a_run_json_with_a_malformed_model_record_is_one_model_error(tmp_path):
    from netinv import ModelError
    from netinv.metrics.run_dir import evaluate_dir

    np.savez(tmp_path / "candidates.npz", x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([0, 1]))
    (tmp_path / "run.json").write_text(json.dumps({"model": {"path": "m.pt2", "input_shape": "abc"}}))
    with pytest.raises(ModelError, match="records input_shape 'abc', which is not a list of numbers"):
        evaluate_dir(tmp_path)


def test_float64_candidates_are_scored_in_float64(parity):
    """Candidates far from 0 with a small spread lose their pattern in float32: 1e4 + 1e-3·x is kept in float64."""
    tr, ho = parity.train, parity.heldout
    g = torch.Generator().manual_seed(7)
    base = (tr.x[:60] + 0.3 * torch.randn(60, 1, 8, 8, generator=g)).double()
    ref = evaluate(base, tr, ho, seed=0).attack
    shifted = evaluate((1e4 + 1e-3 * base).numpy(), tr, ho, seed=0).attack  # numpy float64, as np.load gives
    assert shifted.n_leaked == ref.n_leaked and shifted.auc == pytest.approx(ref.auc, abs=1e-9)
    assert shifted.train_ssim.dtype == torch.float64  # the scores τ and the counts come from
    assert int((shifted.train_ssim > shifted.tau).sum()) == shifted.n_leaked


def test_constant_candidates_are_named_and_not_matched(parity):
    tr, ho = parity.train, parity.heldout
    cands = torch.cat([tr.x[:30], torch.full((5, 1, 8, 8), 0.2)])
    with pytest.warns(UserWarning, match="5 of the 35 candidates are constant images"):
        ev = evaluate(cands, tr, ho, seed=0)
    assert int(ev.attack.train_match.max()) < 30 and int(ev.attack.heldout_match.max()) < 30


def test_model_options_without_a_model_are_refused(digits_parity, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "candidates.npz", x=digits_parity.train.x.numpy())
    tr_npz = digits_parity.train.save_npz(tmp_path / "t.npz")
    ho_npz = digits_parity.heldout.save_npz(tmp_path / "h.npz")
    with pytest.raises(ConfigError, match="--input-range, --mean given without a model"):
        evaluate_dir(run, None, tr_npz, ho_npz, model_options={"mean": "m.npy", "input_range": (-1.0, 1.0),
                                                               "device": "cpu"})
    evaluate_dir(run, None, tr_npz, ho_npz, model_options={"device": "cpu"})  # the device alone is harmless


def test_a_models_mean_image_is_a_null_row(parity):
    """The members' mean ships with a mean-subtracting model, and the attack starts from it: what it scores alone
    is reported beside the attack (one candidate, no randomness)."""
    tr, ho = parity.train, parity.heldout
    mean = tr.x.mean(0)
    lm = LoadedModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 1, bias=False)), (1, 8, 8), 1, mean=mean)
    cands = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    ev = evaluate(cands, tr, ho, model=lm, seed=0)
    alone = evaluate(mean[None], tr, ho, seed=0).attack  # the mean as the only candidate, scored as an attack
    assert ev.mean_image is not None and ev.mean_image.n_candidates == 1
    assert ev.mean_image.train_ssim.tolist() == pytest.approx(alone.train_ssim.tolist(), abs=1e-12)
    assert len(ev.mean_image.heldout_ssim) == len(ev.attack.heldout_ssim)  # the attack's τ images
    assert ev.mean_image.tau == pytest.approx(float(np.percentile(ev.mean_image.heldout_ssim.numpy(), 95)))
    assert "mean image" in ev.table().splitlines()[0] and "mean_image" in ev.to_dict()["summary"]
    lm.mean = torch.full((1, 8, 8), 0.3)  # a constant mean carries no pattern: no row
    assert evaluate(cands, tr, ho, model=lm, seed=0).mean_image is None


def test_evaluate_dir_takes_the_seed_the_run_recorded(digits_parity, tmp_path):
    """`reconstruct --seed 3` then `evaluate` gave other figures than `audit --seed 3` (seed 0 for the split)."""
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "candidates.npz", x=digits_parity.train.x[:30].numpy())
    (run / "run.json").write_text(json.dumps({"seed": 3}))
    tr_npz = digits_parity.train.save_npz(tmp_path / "t.npz")
    ho_npz = digits_parity.heldout.save_npz(tmp_path / "h.npz")
    ev = evaluate_dir(run, None, tr_npz, ho_npz)
    assert ev.settings["seed"] == 3 and ev.settings["downsample"] is False
    assert ev.attack.summary() == evaluate(digits_parity.train.x[:30], digits_parity.train, digits_parity.heldout,
                                           seed=3).attack.summary()
    assert evaluate_dir(run, None, tr_npz, ho_npz, seed=5).settings["seed"] == 5
