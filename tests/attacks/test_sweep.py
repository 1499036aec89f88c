"""Sweeps: Optuna trials of an attack, judged and pooled by the attacker-side criterion; the CLI as a mapping."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from netinv._errors import ConfigError
from netinv.attacks.base import Candidates
from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.attacks.sweep import pool_candidates, sweep
from netinv.models.loaded import LoadedModel


def _victim() -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=False), nn.ReLU(), nn.Linear(12, 1, bias=False))
    return LoadedModel(net.eval(), (1, 4, 4), 1, (0.0, 1.0), torch.full((1, 4, 4), 0.25))


def test_sweep_runs_trials_in_parallel_and_pools_the_best_by_criterion(tmp_path):
    cfg = KKTConfig(iterations=15, show_progress=False)
    res = sweep(_victim(), KKTReconstruction, cfg, n_trials=4, out=tmp_path, n_jobs=2, pool_top=2, n=6, seed=1,
                space={"lr_x": ("log", 1e-3, 1e-1), "alpha": ("categorical", [20.0, 100.0])})
    assert (tmp_path / "study.db").is_file() and res.storage == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    done = sorted((t for t in res.trials if t["state"] == "COMPLETE"), key=lambda t: t["criterion"])
    assert len(done) == 4
    # the pooled trials are the two with the lowest criterion, and nothing else
    assert res.candidates.info["pooled_trials"] == [t["number"] for t in done[:2]]
    assert res.best_params == done[0]["params"]
    assert len(res.candidates) == 12 and set(res.candidates.arrays["trial"].tolist()) == {t["number"] for t in done[:2]}
    assert torch.all(res.candidates.score[:-1] >= res.candidates.score[1:])  # ranked, best first
    z = np.load(tmp_path / "candidates.npz")
    assert z["x"].shape == (12, 1, 4, 4) and "lam" in z.files
    # each trial's run is on disk with its own seed
    for t in done:
        assert (tmp_path / "trials" / f"{t['number']:04d}" / "run.json").is_file()
    # the same storage continues the same study
    res2 = sweep(_victim(), KKTReconstruction, cfg, n_trials=1, out=tmp_path, pool_top=2, n=6, seed=1,
                 space={"lr_x": ("log", 1e-3, 1e-1), "alpha": ("categorical", [20.0, 100.0])})
    assert len(res2.trials) == 5


def test_sweep_rejects_unknown_settings(tmp_path):
    with pytest.raises(ConfigError, match="not settings of KKTConfig"):
        sweep(_victim(), KKTReconstruction, KKTConfig(), n_trials=1, out=tmp_path, space={"lr": ("log", 0.1, 1)})


def test_pool_candidates_ranks_across_runs(tmp_path):
    for i, scores in enumerate([[0.1, 0.5], [0.3, 0.2]]):
        Candidates(torch.full((2, 1, 2, 2), float(i)), torch.tensor([0, 1]), torch.tensor(scores),
                   {"lam": torch.ones(2)}).save(tmp_path / str(i))
    pooled = pool_candidates([tmp_path / "0", tmp_path / "1"], [7, 9])
    assert pooled.score.tolist() == pytest.approx([0.5, 0.3, 0.2, 0.1])
    assert pooled.arrays["trial"].tolist() == [7, 9, 9, 7]
    with pytest.raises(ConfigError, match="missing"):
        pool_candidates([tmp_path / "nope"])


def test_cli_maps_flags_onto_one_sweep_call(tmp_path):
    from netinv.attacks.sweep import SweepResult
    from netinv.cli.app import app

    pooled = Candidates(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2),
                        info={"criterion": 0.05, "pooled_trials": [3]})
    fake = SweepResult(pooled, {"lr_x": 0.01}, [{"state": "COMPLETE"}], "s", "sqlite:///x.db")
    with patch("netinv.cli.sweep.load_model", return_value=_victim()), \
            patch("netinv.cli.sweep.sweep_api", return_value=fake) as api:
        res = CliRunner().invoke(app, ["sweep", "kkt", "m/dir", "--out", str(tmp_path), "--trials", "5", "--jobs",
                                       "2", "--storage", "postgresql://db/x", "--study-name", "s", "--pool-top",
                                       "3", "--iterations", "11", "--m", "6", "--seed", "4"])
    assert res.exit_code == 0, res.output
    args, kw = api.call_args
    assert args[1] is KKTReconstruction and args[2].iterations == 11
    assert kw == {"n_trials": 5, "out": tmp_path, "storage": "postgresql://db/x", "study_name": "s", "n_jobs": 2,
                  "pool_top": 3, "n": 6, "seed": 4}
    assert "best residual 0.05" in res.output


def test_sweep_without_optuna_says_what_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed
    with pytest.raises(ConfigError, match="needs optuna") as e:
        sweep(_victim(), KKTReconstruction, KKTConfig(iterations=2, show_progress=False), n_trials=1, out=tmp_path)
    assert e.value.fix == "pip install optuna"


def test_parallel_sweep_on_an_export_archive_emits_no_future_warning(tmp_path):
    """Each parallel trial copies the model; copying a loaded .pt2 graph made torch print a FutureWarning about its
    internal ``LeafSpec`` on every trial."""
    import warnings

    from netinv.models.loading import load_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False)).eval()
    ep = torch.export.export(net, (torch.rand(4, 1, 4, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    victim = load_model(tmp_path / "m.pt2", device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sweep(victim, KKTReconstruction, KKTConfig(iterations=3, show_progress=False), n_trials=2,
                    out=tmp_path / "s", n_jobs=2, pool_top=1, n=4, space={"lr_x": ("log", 1e-3, 1e-2)})
    assert sum(t["state"] == "COMPLETE" for t in res.trials) == 2
    future = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]
    assert future == []
