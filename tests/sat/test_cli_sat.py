"""``netinv sat ...`` maps flags onto one API call each (the API is patched); errors are one line."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from typer.testing import CliRunner

from netinv.cli.app import app

runner = CliRunner()


def _run(args: list[str], api: str):
    with patch("netinv.models.loading.load_model") as load, patch(f"netinv.sat.{api}") as fn:
        load.return_value.input_shape = (1, 8, 8)
        fn.return_value.to_dict.return_value = {"status": "ok"}
        r = runner.invoke(app, ["sat", *args])
    assert r.exit_code == 0, r.output
    assert '"status": "ok"' in r.output
    return load, fn


def test_invert_maps_constraints_and_config(tmp_path):
    x = np.random.rand(1, 8, 8).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "m.npy", np.ones((1, 8, 8), bool))
    load, fn = _run(["invert", "ckpt", "--classes", "0,3", "--fixed", str(tmp_path / "x.npy"), "--mask",
                     str(tmp_path / "m.npy"), "--min-on", "5", "--max-on", "40", "--encoding", "adder",
                     "--time-limit", "7", "--candidates", "0", "--seed", "4", "--out", str(tmp_path / "o"),
                     "--input-range", "0,1"], "invert")
    assert load.call_args.args == ("ckpt",) and load.call_args.kwargs["input_range"] == (0.0, 1.0)
    (model, classes, cons, cfg), kw = fn.call_args
    assert classes == [0, 3] and np.array_equal(cons.fixed, x) and cons.mask.all() and cons.min_on == 5
    assert cons.max_on == 40 and cons.center is None
    assert cfg.encoding == "adder" and cfg.time_limit == 7 and cfg.candidates == 0 and cfg.seed == 4
    assert kw == {"out": tmp_path / "o"}


def test_sample_count_robust_infer_export(tmp_path):
    np.savez(tmp_path / "xs.npz", x=np.random.rand(5, 1, 8, 8).astype(np.float32))
    _, fn = _run(["sample", "ckpt", "--class", "2", "-n", "30", "--method", "unigen", "--max-on", "9"], "sample")
    assert fn.call_args.args[1:3] == (2, 30) and fn.call_args.kwargs["method"] == "unigen"
    assert fn.call_args.args[3].max_on == 9  # the input constraints reach sample and count as they reach invert
    _, fn = _run(["count", "ckpt", "--classes", "1", "--epsilon", "0.5", "--delta", "0.1", "--min-on", "2"], "count")
    assert fn.call_args.args[1] == [1] and fn.call_args.kwargs["epsilon"] == 0.5 and fn.call_args.args[2].min_on == 2
    assert fn.call_args.kwargs["delta"] == 0.1 and fn.call_args.kwargs["method"] == "approxmc"
    _, fn = _run(["robust", "ckpt", "--input", str(tmp_path / "xs.npz"), "--index", "3", "--radius", "2"], "robust")
    x, radius = fn.call_args.args[1:3]
    assert x.shape == (1, 8, 8) and radius == 2
    _, fn = _run(["infer", "ckpt", "--inputs", str(tmp_path / "xs.npz"), "--solver", "cd195"], "infer")
    assert fn.call_args.args[1].shape == (5, 1, 8, 8) and fn.call_args.args[2].solver == "cd195"
    with patch("netinv.models.loading.load_model"), patch("netinv.sat.export") as ex:
        ex.return_value = {"query": "export"}
        r = runner.invoke(app, ["sat", "export", "ckpt", "--out", str(tmp_path / "e"), "--class", "4"])
    assert r.exit_code == 0 and ex.call_args.args[1:] == (tmp_path / "e", "auto", 4)


def test_bad_flags_are_one_line_errors(tmp_path):
    from netinv.cli._errors import format_error

    r = runner.invoke(app, ["sat", "invert", "ckpt", "--classes", "a,b"])
    assert r.exit_code != 0 and "--classes" in format_error(r.exception)
    r = runner.invoke(app, ["sat", "robust", "ckpt", "--input", str(tmp_path / "none.npy"), "--radius", "1"])
    assert "no --input at" in format_error(r.exception)
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04garbage")  # a truncated download: numpy raises BadZipFile
    r = runner.invoke(app, ["sat", "infer", "ckpt", "--inputs", str(tmp_path / "torn.npz")])
    assert format_error(r.exception).startswith("error: cannot read --inputs") and r.exit_code != 0


def test_each_query_has_a_one_line_summary_for_a_reader():
    from netinv.cli.sat import summary

    inv = {"query": "invert", "verified": True, "classes": {0: {"status": "SAT"}, 3: {"status": "UNSAT"}}}
    assert summary(inv) == "invert: class 0 SAT, class 3 UNSAT, verified by the PyTorch model"
    cnt = {"query": "count", "method": "exact", "space": 43745,
           "classes": {3: {"count": 43102.0, "status": "SAT"}, 5: {"count": None, "status": "UNKNOWN"}}}
    assert summary(cnt) == "count (exact, of 43745 inputs): class 3 43102, class 5 UNKNOWN"
    rob = {"query": "robust", "radius": 2, "robust": False, "counterexample_class": 7, "distance": 1}
    assert summary(rob) == "robust within radius 2: not robust: class 7 at distance 1"
    assert summary({"query": "infer", "n": 5, "agree": True, "unknown": 0}) == "infer: 5 inputs, CNF and model agree"


def test_class_is_accepted_for_classes_as_the_issue_and_sample_spell_it():
    """`sat sample --class 2` takes one class; `invert` / `count` take a list under --classes, and --class there
    must mean the same list rather than fail as an unknown option."""
    _, fn = _run(["invert", "ckpt", "--class", "3"], "invert")
    assert fn.call_args.args[1] == [3]
    _, fn = _run(["count", "ckpt", "--class", "1,2"], "count")
    assert fn.call_args.args[1] == [1, 2]


def test_a_config_files_seed_is_used_unless_seed_is_given(tmp_path):
    """`seed: 7` in --config was overwritten by the unset --seed flag's default 0 (train and sat)."""
    (tmp_path / "c.yaml").write_text("seed: 7\ntime_limit: 3\n")
    _, fn = _run(["invert", "ckpt", "--config", str(tmp_path / "c.yaml")], "invert")
    cfg = fn.call_args.args[3]
    assert cfg.seed == 7 and cfg.time_limit == 3
    _, fn = _run(["invert", "ckpt", "--config", str(tmp_path / "c.yaml"), "--seed", "2"], "invert")
    assert fn.call_args.args[3].seed == 2  # the flag still wins
    _, fn = _run(["invert", "ckpt"], "invert")
    assert fn.call_args.args[3].seed == 0
    from netinv.cli.app import app

    (tmp_path / "t.yaml").write_text("seed: 5\nepochs: 1\n")
    with patch("netinv.cli.train.train_api") as api:
        api.return_value.meta = {"data": {"train_indices": [0]}, "train_accuracy": 1.0, "test_accuracy": 1.0,
                                 "final_loss": 0.0, "epochs_run": 1, "wall_time_s": 0.0}
        r = runner.invoke(app, ["train", "--config", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    assert api.call_args.args[2].seed == 5 and api.call_args.args[2].epochs == 1
