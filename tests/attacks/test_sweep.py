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
                  "pool_top": 3, "n": 6, "seed": 4, "resume": False, "fixed": []}
    assert "best criterion 0.05" in res.output


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


SPACE = {"lr_x": ("log", 1e-3, 1e-1), "alpha": ("categorical", [20.0, 100.0])}


def _summary(res) -> list:
    return [(t["index"], t["state"], t["params"], t["criterion"]) for t in res.trials if not t["interrupted"]]


def test_parallel_sweeps_with_one_seed_are_identical(tmp_path):
    """Optuna reseeds its sampler in every worker thread; netinv draws each trial's settings in order, by a sampler
    seeded with seed + k, so --jobs 2 is as reproducible as --jobs 1."""
    cfg = KKTConfig(iterations=5, show_progress=False)
    a, b = (sweep(_victim(), KKTReconstruction, cfg, n_trials=4, out=tmp_path / d, n_jobs=2, pool_top=2, n=6,
                  seed=5, space=SPACE) for d in ("a", "b"))
    assert _summary(a) == _summary(b) and len({str(t["params"]) for t in a.trials}) == 4
    assert torch.equal(a.candidates.x, b.candidates.x)


CUT_CFG = KKTConfig(iterations=12, checkpoint_every=4, show_progress=False)


def _reference_and_cut(tmp_path, monkeypatch, stop: type[BaseException], storage: str | None = None):
    """An uninterrupted 3-trial sweep, and the same sweep in ``cut`` stopped by ``stop`` in its second trial after
    that trial's first checkpoint; returns the reference."""
    from netinv.attacks import kkt

    ref = sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "ref", pool_top=2, n=6, seed=2,
                space=SPACE)
    step, calls = kkt._Problem.step, {"n": 0}

    def stopping(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == CUT_CFG.iterations + 7:  # the second trial, after its first checkpoint
            raise stop
        return step(self, *a, **k)

    monkeypatch.setattr(kkt._Problem, "step", stopping)
    with pytest.raises(stop):
        sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "cut", pool_top=2, n=6, seed=2,
              space=SPACE, storage=storage)
    monkeypatch.setattr(kkt._Problem, "step", step)
    return ref


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    ref = _reference_and_cut(tmp_path, monkeypatch, KeyboardInterrupt)
    assert (tmp_path / "cut" / "trials" / "0001" / ".kkt_state.pt").is_file()  # the work done so far is kept
    from netinv._utils import checkpoint

    monkeypatch.setattr(checkpoint, "STATE_ON_DISK", False)
    with pytest.warns(UserWarning, match=r"trials \[1\] .* were interrupted"):  # a plain rerun says so
        sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=0, out=tmp_path / "cut", pool_top=2, n=6, seed=2,
              space=SPACE)
    assert checkpoint.STATE_ON_DISK  # the study is on disk: Ctrl-C now names --resume, not 'nothing to resume'
    res = sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=99, out=tmp_path / "cut", pool_top=2, n=6, seed=2,
                space=SPACE, resume=True)  # n_trials is the interrupted call's
    assert _summary(res) == _summary(ref)
    assert torch.equal(res.candidates.x, ref.candidates.x)
    assert [t["interrupted"] for t in res.trials].count(True) == 1


class _Killed(BaseException):
    """What a SIGKILL looks like to the study: the trial is never told anything and stays RUNNING."""


def test_a_killed_sweep_resumes_its_running_trial(tmp_path, monkeypatch):
    """A sweep killed by SIGTERM / SIGKILL left its trial RUNNING, and --resume silently pooled one trial fewer."""
    ref = _reference_and_cut(tmp_path, monkeypatch, _Killed)
    res = sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "cut", pool_top=2, n=6, seed=2,
                space=SPACE, resume=True)
    assert _summary(res) == _summary(ref) and torch.equal(res.candidates.x, ref.candidates.x)
    with pytest.raises(ConfigError, match="nothing to resume"):  # a fresh folder has no study to resume
        sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "new", n=6, space=SPACE,
              resume=True)
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="no trial .* completed"):  # a study that never planned a trial
        sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=0, out=tmp_path / "empty", n=6, space=SPACE)
    with pytest.raises(ConfigError, match="nothing to resume .* had not started a trial"):
        sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "empty", n=6, space=SPACE,
              resume=True)


@pytest.mark.parametrize("own", [True, "relative", False])
def test_a_killed_trial_in_a_storage_url(tmp_path, monkeypatch, own):
    """The folder's own study.db named as a URL is still the folder's: its killed trial is redone. On shared
    storage a RUNNING trial may be another machine's: it is left alone, and the resume says so."""
    url = f"sqlite:///{(tmp_path / 'cut' / 'study.db').resolve() if own else tmp_path / 'shared.db'}"
    if own == "relative":  # the same file named relative to the working directory
        monkeypatch.chdir(tmp_path)
        url = "sqlite:///cut/study.db"
    if own:
        (tmp_path / "cut").mkdir()
    ref = _reference_and_cut(tmp_path, monkeypatch, _Killed, storage=url)
    if own:
        res = sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "cut", pool_top=2, n=6,
                    seed=2, space=SPACE, resume=True, storage=url)
        assert _summary(res) == _summary(ref)
    else:
        with pytest.warns(UserWarning, match=r"trials \[1\] .* are RUNNING in the shared storage"):
            sweep(_victim(), KKTReconstruction, CUT_CFG, n_trials=3, out=tmp_path / "cut", pool_top=2, n=6,
                  seed=2, space=SPACE, resume=True, storage=url)


def test_ctrl_c_during_a_parallel_batch_stops_its_worker_threads(tmp_path, monkeypatch):
    """Ctrl-C reaches the main thread only; worker threads left running inside torch at exit aborted the CLI
    ("terminate called without an active exception", exit 134). The workers now stop at their next iteration and
    are joined; their trials are marked interrupted and resume as usual."""
    import threading

    from netinv._utils import progress
    from netinv.attacks import kkt

    step, started = kkt._Problem.step, threading.Event()

    def slow_step(self, *a, **k):  # long enough that the interrupt lands mid-trial
        started.set()
        return step(self, *a, **k)

    monkeypatch.setattr(kkt._Problem, "step", slow_step)
    join, fired = threading.Thread.join, {"n": 0}

    def interrupted_join(self, timeout=None):  # the main thread's first wait is hit by Ctrl-C
        if threading.current_thread() is threading.main_thread() and started.is_set() and not fired["n"]:
            fired["n"] = 1
            raise KeyboardInterrupt
        return join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    cfg = KKTConfig(iterations=20_000, checkpoint_every=5, show_progress=False)
    before = set(threading.enumerate())  # other tests' helper threads (e.g. tqdm's monitor) are not ours
    with pytest.raises(KeyboardInterrupt):
        sweep(_victim(), KKTReconstruction, cfg, n_trials=2, n_jobs=2, out=tmp_path / "s", n=6, seed=1, space=SPACE)
    assert set(threading.enumerate()) <= before and not progress.STOP.is_set()  # no worker left, the flag reset
    monkeypatch.setattr(threading.Thread, "join", join)
    monkeypatch.setattr(kkt._Problem, "step", step)
    with pytest.warns(UserWarning, match=r"trials \[0, 1\] .* were interrupted"), \
            pytest.raises(ConfigError, match="no trial .* completed"):  # both kept for --resume, none finished
        sweep(_victim(), KKTReconstruction, KKTConfig(iterations=20_000, checkpoint_every=5, show_progress=False),
              n_trials=0, out=tmp_path / "s", n=6, seed=1, space=SPACE)


def test_a_study_refuses_another_model_or_setting_and_a_bad_storage(tmp_path):
    cfg = KKTConfig(iterations=3, show_progress=False)
    sweep(_victim(), KKTReconstruction, cfg, n_trials=1, out=tmp_path / "s", n=6, space=SPACE)
    other = _victim()
    other.source = {"format": "export", "path": "/elsewhere/m.pt2"}
    with pytest.raises(ConfigError, match="was run with model"):
        sweep(other, KKTReconstruction, cfg, n_trials=1, out=tmp_path / "s", n=6, space=SPACE)
    with pytest.raises(ConfigError, match="was run with base_config"):
        sweep(_victim(), KKTReconstruction, KKTConfig(iterations=4, show_progress=False), n_trials=1,
              out=tmp_path / "s", n=6, space=SPACE)
    with pytest.raises(ConfigError, match="cannot open the Optuna storage") as e:
        sweep(_victim(), KKTReconstruction, cfg, n_trials=1, out=tmp_path / "bad", storage="notaurl", space=SPACE)
    assert "sqlite:///" in e.value.fix and not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="alpha=-5.0: step sizes"):  # named, not "every trial diverged"
        sweep(_victim(), KKTReconstruction, KKTConfig(iterations=3, alpha=-5.0, show_progress=False), n_trials=1,
              out=tmp_path / "bad-alpha", n=6, space=SPACE)
    assert not (tmp_path / "bad-alpha").exists()
    replaced = _victim()  # the same path, other contents: its trials must not be pooled with the study's
    with torch.no_grad():
        next(replaced.module.parameters()).mul_(1.01)
    with pytest.raises(ConfigError, match="was run with model"):
        sweep(replaced, KKTReconstruction, cfg, n_trials=1, out=tmp_path / "s", n=6, space=SPACE)
    with pytest.raises(ConfigError, match="holds the trials of study 'netinv-sweep', not 'other'"):
        sweep(_victim(), KKTReconstruction, cfg, n_trials=1, out=tmp_path / "s", n=6, space=SPACE,
              study_name="other")  # its trial 0 would have resumed study one's checkpoint, or overwritten its run
    (tmp_path / "linked").mkdir()
    (tmp_path / "elsewhere.db").write_bytes(b"")
    (tmp_path / "linked" / "study.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(ConfigError, match="study.db is a link"):  # sqlite would write through it
        sweep(_victim(), KKTReconstruction, cfg, n_trials=1, out=tmp_path / "linked", n=6, space=SPACE)
    assert (tmp_path / "elsewhere.db").read_bytes() == b""


def test_settings_the_user_fixed_are_not_swept(tmp_path):
    """α set in the base config (or named in ``fixed``) stays as given; the rest of the default space is swept."""
    res = sweep(_victim(), KKTReconstruction, KKTConfig(iterations=3, alpha=20.0, show_progress=False), n_trials=2,
                out=tmp_path / "a", n=6)
    assert all(set(t["params"]) == {"init_scale", "lr_x", "lam_min"} for t in res.trials)
    res = sweep(_victim(), KKTReconstruction, KKTConfig(iterations=3, show_progress=False), n_trials=1,
                out=tmp_path / "b", n=6, fixed=["lr_x"])
    assert set(res.trials[0]["params"]) == {"init_scale", "lam_min", "alpha"}


def test_a_setting_error_stops_the_sweep_with_its_own_message_and_divergence_is_quoted(tmp_path):
    """Only a diverged trial is a result the sweep goes on from; any other error is the user's to see (n=1 for two
    classes used to end as "no trial completed (every run diverged?)")."""
    cfg = KKTConfig(iterations=5, show_progress=False)
    with pytest.raises(ConfigError, match="candidates for 2 classes"):
        sweep(_victim(), KKTReconstruction, cfg, n_trials=2, out=tmp_path / "a", n=1, seed=0)
    huge = KKTConfig(iterations=30, lr_x=1e30, init_scale=1e30, show_progress=False)  # overflows to inf at once
    with pytest.raises(ConfigError, match=r"no trial of study .* completed \(1 distinct error\(s\), e.g. the attack "
                                          r"diverged"):
        sweep(_victim(), KKTReconstruction, huge, n_trials=2, out=tmp_path / "b", n=4, seed=0, space={})


def test_pooling_a_pooled_folder_keeps_one_trial_id_per_candidate(tmp_path):
    Candidates(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), torch.tensor([0.2, 0.1]),
               {"lam": torch.ones(2), "trial": torch.tensor([3, 4])}).save(tmp_path / "pooled")
    again = pool_candidates([tmp_path / "pooled"], [7])
    assert again.arrays["trial"].tolist() == [7, 7] and len(again) == 2
