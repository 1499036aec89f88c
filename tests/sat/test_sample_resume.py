"""`sample` keeps its preimages through Ctrl-C and the time limit, and `resume=True` / `--resume` continues it."""

from __future__ import annotations

import json
from unittest.mock import patch

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import netinv.sat.sampling as q
from netinv._errors import ConfigError, NetinvError
from netinv._utils.checkpoint import load_state
from netinv.sat import InputConstraints, QueryConfig, Status, sample

from ._helpers import all_inputs, random_bnn, torch_classes

CFG = QueryConfig(candidates=0, time_limit=30)  # the solver finds every preimage: the loop the interrupt lands in
STATE = ".sample_state.pt"


@pytest.fixture(scope="module")
def net():
    """A 16-input net whose class 0 has 28 720 preimages (of 65 536), so a sample of 40 is never exhausted."""
    m = random_bnn(16, (8,), 3, seed=0)
    assert (torch_classes(m, all_inputs(16)) == 0).sum() == 28720
    return m


def _interrupted(m, out, k: int, cfg=CFG, **kw) -> np.ndarray:
    """Run a sample into ``out`` and press Ctrl-C when the solver has found ``k`` preimages; returns them."""
    real, got = q._bits_from_model, []

    def cut(f, model):
        if len(got) == k:
            raise KeyboardInterrupt
        got.append(real(f, model))
        return got[-1]

    with patch.object(q, "_bits_from_model", cut), pytest.raises(KeyboardInterrupt):
        sample(m, 0, 40, config=cfg, out=out, **kw)
    return np.stack(got)


def _solver_calls() -> tuple[list[int], type]:
    calls: list[int] = []

    class Counted(q.LimitedSolver):
        def solve(self, *a, **kw):
            calls.append(1)
            return super().solve(*a, **kw)

    return calls, Counted


def test_ctrl_c_keeps_every_preimage_and_resume_finishes_with_them(net, tmp_path):
    out = tmp_path / "s"
    got = _interrupted(net, out, 7)
    st = load_state(out / STATE)  # saved on the interrupt, between two periodic saves (the test is under 1 s)
    assert np.array_equal(st["bits"].numpy(), got) and st["methods"]["solver"] == 7 and st["status"] == "UNKNOWN"
    assert not (out / "result.json").exists()

    calls, counted = _solver_calls()
    with patch.object(q, "LimitedSolver", counted):  # another time limit: it is per invocation, not compared
        r = sample(net, 0, 40, config=QueryConfig(candidates=0, time_limit=20), out=out, resume=True)
    assert r.status is Status.SAT and len(r.bits) == 40 and len(np.unique(r.bits, axis=0)) == 40
    assert np.array_equal(r.bits[:7], got) and r.resumed == 7 and r.methods["solver"] == 40
    assert len(calls) == 33  # only the 33 missing preimages were searched for
    assert r.verified is True and (torch_classes(net, torch.from_numpy(r.x)) == 0).all()
    assert not (out / STATE).exists()  # done: nothing left to resume
    rec = json.loads((out / "result.json").read_text())
    assert rec["found"] == 40 and rec["resumed"] == 7 and rec["config"]["time_limit"] == 20


def test_the_state_is_saved_while_the_solver_runs(net, tmp_path):
    """Between saves only what a kill without warning (SIGKILL) can lose is at stake: at most SAVE_EVERY_S."""
    real, saved = q.save_state, []

    def record(path, state):
        saved.append(len(state["bits"]))
        real(path, state)

    with patch.object(q, "save_state", record), patch.object(q, "SAVE_EVERY_S", 0.0):
        sample(net, 0, 10, config=CFG, method="solver", out=tmp_path / "s")
    assert saved == [*range(1, 11), 10]  # after each preimage, and once when the search stops
    saved.clear()
    with patch.object(q, "save_state", record):  # the default: at most once a second, then once when it stops
        sample(net, 0, 10, config=CFG, method="solver", out=tmp_path / "t")
    assert saved == [10]


def test_a_resume_during_the_candidates_replays_them_from_the_seed(net, tmp_path):
    """The cheap candidates are drawn from the seed: an interrupted candidate phase resumes to the same inputs."""
    cfg = QueryConfig(candidates=8, climb_steps=0, time_limit=30)
    full = sample(net, 0, 40, config=cfg)
    assert full.methods["candidates"] == 40
    real, rounds = q._cheap, []

    def cut(*a, **kw):
        if len(rounds) == 3:
            raise KeyboardInterrupt
        rounds.append(1)
        return real(*a, **kw)

    with patch.object(q, "_cheap", cut), pytest.raises(KeyboardInterrupt):
        sample(net, 0, 40, config=cfg, out=tmp_path / "s")
    kept = load_state(tmp_path / "s" / STATE)["bits"].numpy()
    assert 0 < len(kept) < 40 and np.array_equal(kept, full.bits[:len(kept)])
    r = sample(net, 0, 40, config=cfg, out=tmp_path / "s", resume=True)
    assert np.array_equal(r.bits, full.bits) and r.resumed == len(kept) and r.verified is True


def test_a_timed_out_sample_keeps_its_state_and_resume_continues_it(net, tmp_path):
    real = q.LimitedSolver.solve
    calls = []

    def timeout_after_5(self, *a, **kw):
        calls.append(1)
        return None if len(calls) > 5 else real(self, *a, **kw)

    with patch.object(q.LimitedSolver, "solve", timeout_after_5):
        r = sample(net, 0, 40, config=CFG, out=tmp_path / "s")
    assert r.status is Status.UNKNOWN and len(r.bits) == 5 and (tmp_path / "s" / STATE).is_file()
    again = sample(net, 0, 40, config=CFG, out=tmp_path / "s", resume=True)
    assert again.status is Status.SAT and np.array_equal(again.bits[:5], r.bits) and again.verified is True


def test_a_resume_of_another_query_is_refused(net, tmp_path):
    out = tmp_path / "s"
    _interrupted(net, out, 3)
    other = [dict(m=net, cls=1), dict(m=net, n=41), dict(m=net, cfg=QueryConfig(candidates=0, seed=1)),
             dict(m=random_bnn(16, (8,), 3, seed=1)), dict(m=net, constraints=InputConstraints(max_on=12)),
             dict(m=net, method="solver")]
    for o in other:
        with pytest.raises(ConfigError, match="other settings") as e:
            sample(o["m"], o.get("cls", 0), o.get("n", 40), o.get("constraints"), o.get("cfg", CFG), out=out,
                   method=o.get("method", "auto"), resume=True)
        assert isinstance(e.value, NetinvError) and "\n" not in str(e.value)
    assert len(load_state(out / STATE)["bits"]) == 3  # a refused resume leaves the state alone
    with pytest.warns(UserWarning, match="interrupted run's checkpoint; this run starts afresh"):
        sample(net, 1, 5, config=CFG, out=out)  # without resume: replaced
    assert not (out / STATE).exists() and json.loads((out / "result.json").read_text())["class"] == 1
    with pytest.raises(ConfigError, match="unigen cannot resume"):
        sample(net, 0, 40, config=CFG, out=out, method="unigen", resume=True)
    with pytest.raises(ConfigError, match="--out"):
        sample(net, 0, 40, config=CFG, resume=True)


@pytest.mark.parametrize("n", [40, 10_000])  # SAT (n found) and UNSAT (every preimage of a small class listed)
def test_a_resume_of_a_finished_sample_returns_it_without_searching(n, tmp_path):
    m = random_bnn(8, (6,), 3, seed=5)  # class 2 has 73 preimages of 256
    r = sample(m, 2, n, config=CFG, out=tmp_path / "s")
    assert r.status is (Status.SAT if n == 40 else Status.UNSAT) and len(r.bits) == min(n, 73)

    def no_search(*a, **kw):
        raise AssertionError("a finished sample searched again")

    with patch.object(q, "LimitedSolver", no_search), patch.object(q, "_cheap", no_search):
        again = sample(m, 2, n, config=CFG, out=tmp_path / "s", resume=True)
    assert again.status is r.status and np.array_equal(again.bits, r.bits) and again.methods == r.methods
    assert again.verified is True and again.time_s == pytest.approx(r.time_s)


def test_cli_sample_resume(net, tmp_path):
    from netinv.cli.app import app
    from netinv.sat import export

    export(net, tmp_path / "e")
    plain, out = str(tmp_path / "e" / "plain.npz"), tmp_path / "s"
    got = _interrupted(plain, out, 7)
    runner = CliRunner()
    r = runner.invoke(app, ["sat", "sample", plain, "--class", "0", "-n", "40", "--candidates", "0", "--out",
                            str(out), "--resume"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["status"] == "SAT" and d["found"] == 40 and d["resumed"] == 7
    x = np.load(out / "preimages.npz")["x"]
    bits = x.reshape(len(x), -1) >= 0.5
    assert len(np.unique(bits, axis=0)) == 40 and np.array_equal(bits[:7], got)
    assert (torch_classes(net, torch.from_numpy(x)) == 0).all()
    r = runner.invoke(app, ["sat", "sample", plain, "--class", "0", "--resume"])
    assert r.exit_code != 0 and "give --out DIR" in str(r.exception)
