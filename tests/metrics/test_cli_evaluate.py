"""``netinv evaluate`` is a mapping onto ``evaluate_dir``: flags pass through, the table is printed."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

from typer.testing import CliRunner

from netinv._errors import DataError
from netinv.cli.app import app

runner = CliRunner()


def test_evaluate_maps_flags_onto_the_api(tmp_path):
    with patch("netinv.cli.evaluate.evaluate_dir") as api:
        api.return_value.table.return_value = "THE TABLE"
        api.return_value.figures = {"best_pairs": str(tmp_path / "best_pairs.png")}
        r = runner.invoke(app, ["evaluate", str(tmp_path), "--model", "runs/victim", "--train", "t.npz",
                                "--heldout", "h.npz", "--seed", "3", "--n-best", "5", "--device", "cpu",
                                "--input-range", "-1,1", "--input-shape", "1,8,8"])
    assert r.exit_code == 0, r.output
    (run_dir, model), kw = api.call_args
    assert run_dir == tmp_path and model == "runs/victim"
    assert kw == {"train_npz": Path("t.npz"), "heldout_npz": Path("h.npz"), "seed": 3, "n_best": 5,
                  "model_options": {"weights": None, "input_shape": (1, 8, 8), "input_range": (-1.0, 1.0),
                                    "mean": None, "device": "cpu"}}
    assert "THE TABLE" in r.output and "evaluation.json" in r.output and "best_pairs.png" in r.output
    assert "verdict: " in r.output  # the audit's verdict on the figures


def test_defaults_and_missing_run(tmp_path):
    with patch("netinv.cli.evaluate.evaluate_dir") as api:
        api.return_value.table.return_value = ""
        api.return_value.figures = {}
        r = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (_, model), kw = api.call_args
    assert model is None and kw["train_npz"] is None and kw["seed"] is None and kw["n_best"] == 10  # run.json's
    r = runner.invoke(app, ["evaluate", str(tmp_path / "none")])  # the real API: a one-line DataError
    assert isinstance(r.exception, DataError) and "no candidates" in str(r.exception)


def test_config_file_reaches_the_evaluation_settings(tmp_path):
    (tmp_path / "e.yaml").write_text("quantile: 0.9\nmargin_tol: 0.2\n")
    with patch("netinv.cli.evaluate.evaluate_dir") as api:
        api.return_value.table.return_value = ""
        api.return_value.figures = {}
        r = runner.invoke(app, ["evaluate", str(tmp_path), "--config", str(tmp_path / "e.yaml")])
    assert r.exit_code == 0, r.output
    cfg = api.call_args.kwargs["config"]
    assert cfg.quantile == 0.9 and cfg.margin_tol == 0.2 and cfg.window_size == 3
    (tmp_path / "bad.yaml").write_text("quantil: 0.9\n")
    r = runner.invoke(app, ["evaluate", str(tmp_path), "--config", str(tmp_path / "bad.yaml")])
    assert r.exit_code != 0 and "unknown option 'quantil'" in str(r.exception)
