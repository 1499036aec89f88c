"""audit(): reconstruct + evaluate + report, with the figures beside their baselines; the verdict's wording."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
import torch

from netinv import DataError, audit, load_model
from netinv.attacks.kkt import KKTConfig
from netinv.report.render import verdict


def test_results_print_in_one_line(parity_victim, tmp_path):
    """A notebook shows a result's repr: Candidates, LoadedModel and AuditResult printed 12 000 characters."""
    model, _ = parity_victim
    res = audit(model, out=tmp_path / "a", config=KKTConfig(iterations=3, show_progress=False), device="cpu")
    for obj in (res, res.candidates, model):
        assert "\n" not in repr(obj) and len(repr(obj)) < 300, repr(obj)
    assert "members above tau" in repr(res) and res.table() == res.evaluation.table()


def test_audit_writes_report_with_baselines(parity_victim, tmp_path):
    model, ckpt = parity_victim
    res = audit(ckpt, out=tmp_path / "a", config=KKTConfig(iterations=30, show_progress=False), device="cpu")
    for name in ("report.html", "report.md", "report.json", "evaluation.json", "best_pairs.png",
                 "ssim_vs_margin.png", "kkt/candidates.npz", "kkt/run.json"):
        assert (tmp_path / "a" / name).is_file(), name
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    ev = res.evaluation
    assert rep["summary"]["attack"]["auc"] == pytest.approx(ev.attack.auc)
    assert rep["summary"]["noise"]["auc"] == pytest.approx(ev.noise.auc)
    assert rep["info"]["members"] == 40 and rep["info"]["seed"] == 0
    assert any("is large for the model" in v for k, v in rep["info"].items() if k.startswith("warning"))  # 40 ≥ 64/2
    crit = res.candidates.info["criterion"]  # 30 iterations: far from a fit, so the report says so
    assert rep["info"]["share of the weights the candidates leave unexplained"] == round(crit, 4)
    assert (rep["info"].get("note") is not None) == (crit > 0.25)
    html = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/png;base64," in html and "real held-out" in html
    assert len(res.candidates) == 80  # m = 2n by default
    ml = ev.margin_leakage  # a checkpoint carries its model, so the verdict names the on-margin images
    k = ml["n_on_margin"]
    assert k >= 1 and f"Of the {k} training image{'s' if k > 1 else ''} on the margin" in rep["verdict"]
    # what a release gate reads: the level and both p-values, the caveat, figure paths beside the report
    assert rep["level"] in ("clear", "some", "weak", "inconclusive", "none") and 0 <= rep["p_above_tau"] <= 1
    assert rep["p_auc"] is not None and "does not prove that the weights leak nothing" in rep["caveat"]
    assert all((tmp_path / "a" / f).is_file() for f in rep["figures"].values())
    md = (tmp_path / "a" / "report.md").read_text()
    assert rep["caveat"] in md and "min-max scaled" in md and "The mean-image row" not in md  # no mean image here


def test_audit_of_a_user_model_needs_its_data(parity_victim, tmp_path):
    model, _ = parity_victim
    bare = load_model(model.module, input_shape=(1, 8, 8), device="cpu")  # no metadata: no members known
    with pytest.raises(DataError, match="needs the training set"):
        audit(bare, out=tmp_path / "b")


def test_flipped_member_labels_are_named_in_the_warning_and_the_report(parity_victim, digits_parity, tmp_path):
    from netinv.data import Dataset

    model, _ = parity_victim
    tr = digits_parity.train
    flipped = Dataset(tr.x, 1 - tr.y, tr.classes, tr.source)
    with pytest.warns(UserWarning, match="classifies the members poorly \\(accuracy 0.00; non-members") as rec:
        audit(model, out=tmp_path / "f", train=flipped, heldout=digits_parity.heldout,
              config=KKTConfig(iterations=5, show_progress=False), device="cpu")
    assert sum("classifies the members poorly" in str(w.message) for w in rec) == 1  # once, before the attack
    from netinv.metrics import evaluate

    with pytest.warns(UserWarning, match="classifies the members poorly"):  # evaluate alone says it too
        evaluate(torch.rand(8, 1, 8, 8), flipped, digits_parity.heldout, model=model)
    info = json.loads((tmp_path / "f" / "report.json").read_text())["info"]
    assert info["train accuracy"] == 0.0
    assert any("classifies the members poorly" in v for k, v in info.items() if k.startswith("warning"))
    assert "classifies the members poorly" in (tmp_path / "f" / "report.html").read_text()


def test_verdict_wording():
    fig = lambda frac, auc, n: {"frac_leaked": frac, "auc": auc, "n_leaked": n}  # noqa: E731
    s = {"attack": fig(0.4, 0.8, 40), "noise": fig(0.05, 0.5, 5), "real_heldout": fig(0.05, 0.52, 5)}
    assert verdict(s, 100).startswith("Clear leakage: 40 of 100 training images (40%)")
    s["attack"] = fig(0.06, 0.53, 6)
    assert verdict(s, 100).startswith("No measurable leakage")
    ml = {"rel_tol": 0.1, "n_on_margin": 9, "leaked": {"attack": 7, "noise": 0, "real_heldout": 1}}
    assert verdict(s, 100, ml).endswith("Of the 9 training images on the margin (within 10% of the smallest margin: "
                                        "those a KKT attack can recover), 7 leaked.")
    assert "margin" not in verdict(s, 100)
    # leakage without recognisable reconstructions is named as such; an attack AUC below 0.5 is never leakage
    s = {"attack": {**fig(0.8, 0.99, 80), "best_mean_ssim": 0.08}, "noise": fig(0.05, 0.5, 5),
         "real_heldout": fig(0.05, 0.3, 5)}
    assert "do not resemble their training images (mean SSIM of the best 10: 0.08" in verdict(s, 100)
    s["attack"]["best_mean_ssim"] = 0.7
    assert "resemble" not in verdict(s, 100)
    s = {"attack": fig(0.05, 0.45, 5), "noise": fig(0.05, 0.3, 5), "real_heldout": fig(0.05, 0.32, 5)}
    assert verdict(s, 100).startswith("No measurable leakage")
    # an AUC above the baselines with no more members above τ than the null candidates is only a weak signal
    s = {"attack": fig(0.02, 0.59, 2), "noise": fig(0.04, 0.5, 4), "real_heldout": fig(0.04, 0.51, 4)}
    assert verdict(s, 100).startswith("Weak leakage") and "no more of them stand out" in verdict(s, 100)
    # the decision follows the printed (rounded) figures: 0.553 reads 0.55 (never leakage), 0.7496 reads 0.75
    s = {"attack": fig(0.1, 0.553, 10), "noise": fig(0.05, 0.45, 5), "real_heldout": fig(0.05, 0.45, 5)}
    # (10% above τ against 5% is p ≈ 0.03: above the 0.025 per test of the inconclusive band)
    assert verdict(s, 100).startswith("No measurable leakage") and "AUC 0.55;" in verdict(s, 100)
    s["attack"] = fig(0.11, 0.553, 11)  # 11% is p ≈ 0.012: inconclusive (0.005 ≤ p < 0.025), never "no leakage"
    assert verdict(s, 100).startswith("Inconclusive: possible leakage") and "rerun with other seeds" in verdict(s, 100)
    s["attack"] = fig(0.3, 0.7496, 30)
    assert verdict(s, 100).startswith("Clear leakage")
    # the model's mean image is a null baseline too when it ships with the model: the attack must beat it
    s["mean_image"] = fig(0.3, 0.74, 30)
    v = verdict(s, 100)
    assert v.startswith("No measurable leakage") and "the model's mean image alone 30% / AUC 0.74" in v
    assert "publishing it discloses membership by itself" in v
    s["mean_image"] = fig(0.05, 0.5, 5)  # a mean that tells nothing: not named as a disclosure
    assert "discloses" not in verdict(s, 100) and verdict(s, 100).startswith("Clear leakage")


def test_verdict_needs_a_significant_auc_and_names_the_mean_image_in_its_headline():
    fig = lambda frac, auc, n: {"frac_leaked": frac, "auc": auc, "n_leaked": n}  # noqa: E731
    s = {"attack": fig(0.1, 0.62, 2), "noise": fig(0.05, 0.5, 1), "real_heldout": fig(0.05, 0.5, 1)}
    assert verdict(s, 20).startswith("Some leakage")  # the fixed margins alone pass 0.62 …
    v = verdict(s, 20, None, 300)  # … but with 20 members against 300 non-members it is p ≈ 0.036: not leakage
    assert v.startswith("No measurable leakage") and "AUC 0.62, p = 0.036 against chance" in v
    v = verdict(s | {"attack": fig(0.1, 0.64, 2)}, 20, None, 300)  # p ≈ 0.017: between 0.005 and 0.025 per test
    assert v.startswith("Inconclusive: possible leakage") and "rerun with other seeds (--seeds)" in v
    v = verdict(s | {"attack": fig(0.3, 0.69, 30)}, 100, None, 1497)
    assert v.startswith("Some leakage") and "AUC 0.69, p < 0.001 against chance" in v
    # the attack no better than the mean image, which itself separates members: the headline says so
    s = {"attack": fig(0.06, 0.565, 6), "noise": fig(0.05, 0.5, 5), "real_heldout": fig(0.05, 0.49, 5),
         "mean_image": fig(0.07, 0.57, 7)}
    v = verdict(s, 100)
    assert v.startswith("No measurable leakage by the attack beyond the mean image") and "discloses" in v
    # the p-value against chance, checked with a Mann-Whitney simulation under the null
    from netinv.metrics import membership_auc
    from netinv.report.render import auc_p_value

    g = torch.Generator().manual_seed(0)
    aucs = torch.tensor([membership_auc(torch.rand(20, generator=g), torch.rand(300, generator=g))
                         for _ in range(4000)])
    assert float((aucs >= 0.62).float().mean()) == pytest.approx(auc_p_value(0.62, 20, 300), abs=0.01)


def test_a_reconstructed_subset_is_leakage_even_with_a_weak_auc():
    """Audit P: 10 of 50 members above τ (20%) against at most 6% for every null set, recognisable reconstructions,
    and AUC 0.59 (p = 0.027) was headlined "No measurable leakage". The share above τ is now tested too (Fisher's
    exact test against the held-out images above τ, and a binomial at the strongest null's rate)."""
    from netinv.report.render import assess

    fig = lambda frac, auc, n: {"frac_leaked": frac, "auc": auc, "n_leaked": n}  # noqa: E731
    s = {"attack": fig(0.2, 0.59, 10), "noise": fig(0.04, 0.51, 2), "real_heldout": fig(0.06, 0.52, 3),
         "mean_image": fig(0.02, 0.55, 1)}
    a = assess(s, 50, None, 207)
    assert a["level"] == "some" and a["p_above_tau"] < 0.01 and 0.01 < a["p_auc"] < 0.05
    assert a["verdict"].startswith("Some leakage: 10 of 50 training images (20%)") and "p = 0.0021 against" in \
        a["verdict"]
    # the same share no higher than a null set's is not leakage, however small its p against 5%
    assert assess(s | {"mean_image": fig(0.2, 0.55, 10)}, 50, None, 207)["level"] in ("none", "inconclusive")
    assert assess({"attack": fig(0.04, 0.5, 2), "noise": fig(0.04, 0.5, 2), "real_heldout": fig(0.06, 0.5, 3)},
                  50, None, 207)["level"] == "none"


def test_the_above_tau_p_value_holds_its_level_under_the_null():
    """Members and non-members drawn alike: the share of members above the non-members' 95th percentile reaches
    p < 0.01 in at most ~1% of draws (it accounts for τ being estimated from the same non-members)."""
    from netinv.report.render import above_tau_p_value

    g = torch.Generator().manual_seed(1)
    hits = 0
    for _ in range(2000):
        members, non = torch.rand(20, generator=g), torch.rand(150, generator=g)
        tau = torch.quantile(non, 0.95)
        hits += above_tau_p_value(int((members > tau).sum()), 20, 150) < 0.01
    assert hits / 2000 <= 0.012


def test_cli_audit_takes_the_attack_settings(parity_victim, tmp_path):
    """`netinv audit --iterations N --config F` reaches the attack (a quick audit from the command line)."""
    from typer.testing import CliRunner

    from netinv.cli.app import app

    _, ckpt = parity_victim
    (tmp_path / "k.yaml").write_text("lam_min: 0.2\n")
    res = CliRunner().invoke(app, ["audit", str(ckpt), "--out", str(tmp_path / "c"), "--iterations", "7",
                                   "--config", str(tmp_path / "k.yaml"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "c" / "kkt" / "run.json").read_text())
    assert run["config"]["iterations"] == 7 and run["config"]["lam_min"] == 0.2
    assert "report:" in res.output


def test_an_audit_over_several_seeds_reports_each_and_headlines_the_worst(parity_victim, tmp_path):
    """Audit P: one run is one draw (the verdict changed with the seed); `--seeds 0,1` audits once per seed, each
    exactly as a single audit with that seed, and the summary's headline is the worst verdict."""
    from typer.testing import CliRunner

    from netinv import ConfigError, audit_seeds
    from netinv.cli.app import app
    from netinv.report.render import LEVELS

    _, ckpt = parity_victim
    cfg = KKTConfig(iterations=8, show_progress=False)
    many = audit_seeds(ckpt, [0, 2], out=tmp_path / "s", config=cfg, device="cpu")
    one = audit(ckpt, out=tmp_path / "one", config=cfg, seed=2, device="cpu")
    assert torch.equal(many.runs[2].candidates.x, one.candidates.x)  # the same as its own audit
    assert many.runs[2].verdict == one.verdict
    rank = {s: (LEVELS.index(r.verdict["level"]), r.evaluation.attack.frac_leaked) for s, r in many.runs.items()}
    assert many.worst_seed == max(rank, key=rank.get)
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["worst_seed"] == many.worst_seed and rep["level"] == many.worst.verdict["level"]
    assert [r["seed"] for r in rep["seeds"]] == [0, 2] and rep["verdict"].startswith(
        f"Worst of 2 seeds (seed {many.worst_seed}): {many.worst.verdict['verdict']}")
    assert all((tmp_path / "s" / r["report"]).is_file() for r in rep["seeds"])
    md = (tmp_path / "s" / "report.md").read_text()
    assert "does not prove that the weights leak nothing" in md and "| 2 |" in md
    for bad, match in (([], "seeds"), ([1, 1], "seeds"), ([-1], "seeds")):
        with pytest.raises(ConfigError, match=match):
            audit_seeds(ckpt, bad, out=tmp_path / "x")
    r = CliRunner().invoke(app, ["audit", str(ckpt), "--out", str(tmp_path / "c"), "--seeds", "0,1", "--seed", "3"])
    assert isinstance(r.exception, ConfigError) and "--seed and --seeds given" in str(r.exception)  # one line
    with patch("netinv.cli.audit.audit_seeds") as api:
        api.return_value.table.return_value = "table"
        r = CliRunner().invoke(app, ["audit", str(ckpt), "--out", str(tmp_path / "c"), "--seeds", "0,1",
                                     "--iterations", "3"])
    assert r.exit_code == 0, r.output
    (model, seeds), kw = api.call_args
    assert seeds == [0, 1] and kw["config"].iterations == 3 and kw["out"] == tmp_path / "c"


def test_members_the_model_misclassifies_are_warned_about(parity_victim, digits_parity, tmp_path):
    """The KKT attack assumes zero training error: a few flipped members get their own warning; a model at the
    majority-class rate (e.g. a wrong mean or input scale) gets the 'poorly' one, whose fix names --mean."""
    from netinv.data import Dataset

    model, _ = parity_victim
    tr = digits_parity.train
    few = Dataset(tr.x, torch.where(torch.arange(len(tr)) < 3, 1 - tr.y, tr.y), tr.classes, tr.source)
    with pytest.warns(UserWarning, match=f"misclassifies 3 of the {len(tr)} members"):
        audit(model, out=tmp_path / "a", train=few, heldout=digits_parity.heldout,
              config=KKTConfig(iterations=2, show_progress=False), device="cpu")
    const = Dataset(torch.zeros_like(tr.x), tr.y, tr.classes, tr.source)  # every member gets the same logit
    with pytest.warns(UserWarning, match="poorly .*--mean and --input-range"):
        audit(model, out=tmp_path / "b", train=const, heldout=digits_parity.heldout,
              config=KKTConfig(iterations=2, show_progress=False), device="cpu")


def test_a_training_set_large_for_the_input_is_named_in_the_report(parity_victim, digits_parity, tmp_path):
    """Members at least half the input dimensions: KKT recovers fewer (benchmarks/kkt_draws.py), so the report
    says a low figure is weak evidence; 20 members in 64 dimensions get no such line."""
    from netinv.attacks.kkt import members_note
    from netinv.data import Dataset

    model, _ = parity_victim
    tr, ho = digits_parity.train, digits_parity.heldout
    big = Dataset(torch.cat([tr.x, ho.x[:30]]), torch.cat([tr.y, ho.y[:30]]), tr.classes, tr.source)  # 70 > 64
    rest = Dataset(ho.x[30:], ho.y[30:], ho.classes, ho.source)
    with pytest.warns(UserWarning, match="training set \\(70 members\\) is large for the model's 64 input") as rec:
        audit(model, out=tmp_path / "a", train=big, heldout=rest, config=KKTConfig(iterations=2, show_progress=False),
              device="cpu")
    assert sum("is large for the model" in str(w.message) for w in rec) == 1
    info = json.loads((tmp_path / "a" / "report.json").read_text())["info"]
    assert any("weak evidence that the weights are safe" in v for k, v in info.items() if k.startswith("warning"))
    few = Dataset(tr.x[::2], tr.y[::2], tr.classes, tr.source)  # 20 members: no line
    audit(model, out=tmp_path / "b", train=few, heldout=rest, config=KKTConfig(iterations=2, show_progress=False),
          device="cpu")
    info = json.loads((tmp_path / "b" / "report.json").read_text())["info"]
    assert info["members"] == 20 and not any("is large for" in v for k, v in info.items() if k.startswith("warning"))
    assert members_note(31, (1, 8, 8)) is None and members_note(32, (64,)) is not None
    assert members_note(1536, (3, 32, 32)) is not None and members_note(500, (3, 32, 32)) is None


def test_api_misuse_is_one_netinv_error(parity_victim, tmp_path):
    """A dict config, no output folder or an array for a data set ended in AttributeError / TypeError."""
    import numpy as np

    from netinv import ConfigError, evaluate

    model, _ = parity_victim
    with pytest.raises(ConfigError, match="not a KKTConfig"):
        audit(model, out=tmp_path / "a", config={"iterations": 3}, device="cpu")
    with pytest.raises(ConfigError, match="not a KKTConfig"):  # said before the model is even loaded
        audit(tmp_path / "no-such-model", out=tmp_path / "a", config={"iterations": 3})
    with pytest.raises(ConfigError, match="out is None"):
        audit(model, out=None, device="cpu")
    with pytest.raises(DataError, match="got a ndarray for a data set"):
        evaluate(np.zeros((4, 1, 8, 8)), np.zeros((4, 1, 8, 8)), np.zeros((4, 1, 8, 8)))


def test_the_above_tau_p_value_matches_scipy_and_scales_to_cifar_sizes():
    """Computed in log space: exact sums of binomial coefficients overflowed a float at 2 000 members."""
    from scipy.stats import binom, hypergeom

    from netinv.report.render import above_tau_p_value

    for k, n, m, q in ((10, 50, 207, 0.06), (3, 20, 300, 0.0), (200, 2000, 10000, 0.05), (3500, 60000, 10000, 0.05)):
        h = m - 1 - (95 * (m - 1)) // 100
        want = max(hypergeom.sf(k - 1, n + m, k + h, n), binom.sf(k - 1, n, max(q, 0.05)))
        assert above_tau_p_value(k, n, m, q) == pytest.approx(min(1.0, want), rel=1e-9, abs=1e-300)
    assert above_tau_p_value(0, 10, 100) == 1.0 and above_tau_p_value(5, 10, 100, 1.0) == 1.0


def test_a_share_above_tau_needs_an_effect_as_the_auc_does():
    """Review R2: with 60 000 members, 6% above τ against 5% (AUC 0.51) was p = 3e-5 and called "Some leakage";
    the share now needs 5 points beyond every null set, as the AUC needs 0.05."""
    from netinv.report.render import assess

    fig = lambda frac, auc, n: {"frac_leaked": frac, "auc": auc, "n_leaked": n}  # noqa: E731
    s = {"attack": fig(0.06, 0.51, 3600), "noise": fig(0.05, 0.5, 3000), "real_heldout": fig(0.05, 0.5, 3000)}
    assert assess(s, 60000, None, 10000)["level"] == "none"
    s["attack"] = fig(0.10, 0.51, 6000)
    assert assess(s, 60000, None, 10000)["level"] == "some"
