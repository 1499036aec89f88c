"""The CLI is a mapping onto the API: commands pass their flags through; known errors are one line, exit 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from netinv.cli.app import app

runner = CliRunner()


def test_data_list_and_show():
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0 and "digits" in r.output and "cifar10" in r.output
    r = runner.invoke(app, ["data", "show", "digits"])
    assert r.exit_code == 0 and '"n": 1797' in r.output and '"input_shape": [\n    1,\n    8,\n    8\n  ]' in r.output


def test_short_help_and_version():
    """`-h` works on every command (typer's default is `--help` only); `--version` names netinv's and torch's."""
    import torch

    from netinv._utils.runinfo import netinv_version

    for args in (["-h"], ["sat", "sample", "-h"], ["reconstruct", "kkt", "-h"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and "Usage: netinv" in r.output and "--help" in r.output, (args, r.output)
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"netinv {netinv_version()} (torch {torch.__version__})\n"


def test_train_maps_flags_onto_the_api(tmp_path):
    with patch("netinv.cli.train.train_api") as api:
        api.return_value.meta = {"train_accuracy": 1.0, "test_accuracy": 0.9, "final_loss": 1e-3, "epochs_run": 10,
                                 "wall_time_s": 1.0, "data": {"train_indices": list(range(100))}}
        r = runner.invoke(app, ["train", "--task", "parity", "--n-per-class", "50", "--arch", "mlp:1000,1000",
                                "--bias", "none", "--init-scale", "0.001", "--lr", "0.05", "--seed", "3",
                                "--out", str(tmp_path / "v"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    (data, arch, cfg), kw = api.call_args  # one API call, as the CLI promises
    assert data == "digits" and arch == "mlp:1000,1000" and cfg.lr == 0.05 and cfg.seed == 3 and cfg.optimizer == "gd"
    assert kw == {"task": "parity", "n_per_class": 50, "heldout_per_class": None, "root": None, "path": None,
                  "download": False, "check_md5": False, "out": tmp_path / "v", "resume": False, "device": "cpu",
                  "bias": "none", "init_scale": 0.001, "threshold": None, "ternary": None}
    assert "100 members" in r.output


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netinv", *args], capture_output=True, text=True, timeout=120)


def test_known_errors_are_one_line_with_exit_2(tmp_path):
    r = run_cli("train", "--arch", "resnet:3", "--out", str(tmp_path / "x"), "--device", "cpu")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: unknown architecture 'resnet' — use one of: mlp, cnn, bnn "
                                             "(e.g. mlp:1000,1000)"]
    assert not (tmp_path / "x").exists()  # nothing half-written
    r = run_cli("data", "show", "mnist", "--root", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "MNIST" in r.stderr
    r = run_cli("info", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_are_one_line_with_exit_2():
    """click's usage errors came in a four-line box; they are bad input like any other."""
    r = run_cli("train", "--bogus")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["error: No such option: --bogus (Possible options: --bias, --loss, --out) "
                                             "— see python -m netinv train --help"]  # the program as it was called
    r = run_cli("info", "runs/victim", "--json", "true")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "netinv info --help" in r.stderr
    r = run_cli("train", "--lr", "fast")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Invalid value for '--lr'" in r.stderr
    r = run_cli("evaluate", "x", "--seed")  # a missing value: the command's own help is named
    assert r.returncode == 2 and r.stderr.strip().endswith("— see netinv evaluate --help")
    r = run_cli("sat", "count", "x", "--classes")
    assert r.returncode == 2 and r.stderr.strip().endswith("— see netinv sat count --help")
    r = run_cli("sat")  # a group without its command: the group's help, as before
    assert r.returncode == 2 and "invert" in r.stdout + r.stderr
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "--target-loss" in r.stdout and r.stderr == ""


_WITHOUT_SAT = r"""
import json, sys
sys.modules["pysat"] = None  # python-sat (and optuna) not installed: importing them fails
sys.modules["optuna"] = None
from typer.testing import CliRunner
from netinv.cli.app import app, main
runner = CliRunner()
r = [runner.invoke(app, args) for args in (["--help"], ["data", "list"])]
print("RESULT" + json.dumps([[x.exit_code, x.output] for x in r]))
sys.argv = ["netinv", "sat", "export", "ckpt", "--out", "o"]
main()
"""


def test_cli_works_without_python_sat():
    """Only the sat commands need python-sat: the CLI imports and runs without it, and a sat command says what to
    install in one line."""
    p = subprocess.run([sys.executable, "-c", _WITHOUT_SAT], capture_output=True, text=True, timeout=120)
    assert "RESULT" in p.stdout, p.stderr[-2000:]
    (help_rc, help_out), (list_rc, list_out) = json.loads(p.stdout.split("RESULT", 1)[1])
    assert help_rc == 0 and "sat" in help_out and "train" in help_out, help_out
    assert list_rc == 0 and "digits" in list_out
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().count("\n") == 0 and "pip install python-sat" in p.stderr


def test_netinv_warnings_are_one_clean_line_in_the_cli(tmp_path):
    """The KKT attack's "not positively homogeneous" warning reached CLI users as Python's
    ``/path/file.py:123: UserWarning: ...``; the CLI writes netinv's warnings as one ``warning: ...`` line, and
    library callers keep Python's warnings once the command is over."""
    import warnings

    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)).eval()  # biases after layer 1
    ep = torch.export.export(net, (torch.rand(4, 1, 4, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown even when an earlier test already warned from the same line
        before = warnings.showwarning
        r = runner.invoke(app, ["reconstruct", "kkt", str(tmp_path / "m.pt2"), "--iterations", "2", "--m", "4",
                                "--out", str(tmp_path / "k"), "--device", "cpu"])
        assert warnings.showwarning is before  # restored: nothing changes for library users
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("note: ")]  # 2 it.: a poor fit
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("warning: the model is not positively homogeneous in its parameters (")
    assert "expect weaker reconstructions" in lines[0] and "UserWarning" not in r.stderr and ".py:" not in r.stderr


def test_cli_warning_format_applies_to_netinv_files_only():
    import io
    import warnings
    from pathlib import Path

    import typer

    import netinv
    from netinv.cli._errors import cli_warnings

    inside = str(Path(netinv.__file__).parent / "attacks" / "kkt.py")
    # audit P: a netinv warning whose stacklevel reached past the command into typer printed Python's raw form
    framework = str(Path(typer.__file__).parent / "main.py")
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as passed_on, cli_warnings():
        for filename in (inside, framework, "/elsewhere/user.py"):
            warnings.showwarning(UserWarning("two\n  lines"), UserWarning, filename, 7, out)
    assert out.getvalue() == "warning: two lines\n" * 2
    assert [(w.filename, str(w.message)) for w in passed_on] == [("/elsewhere/user.py", "two\n  lines")]  # Python's


def test_ctrl_c_says_how_to_continue(capsys, monkeypatch):
    """typer turns Ctrl-C into a silent exit 130; the CLI names the kept checkpoint and --resume."""
    from netinv.cli._errors import run_cli

    def interrupted_app(standalone_mode: bool = True) -> None:
        raise SystemExit(130)

    from netinv._utils import checkpoint

    monkeypatch.setattr(sys, "argv", ["netinv", "invert", "runs/cnn"])
    monkeypatch.setattr(checkpoint, "STATE_ON_DISK", False)  # stopped before its first checkpoint
    with pytest.raises(SystemExit) as e:
        run_cli(interrupted_app, hard_exit=sys.exit)  # the CLI itself ends with os._exit(130), skipping teardown
    assert e.value.code == 130 and "nothing to resume; run the command again" in capsys.readouterr().err
    monkeypatch.setattr(checkpoint, "STATE_ON_DISK", True)  # a state was written (or loaded) by this process
    with pytest.raises(SystemExit) as e:
        run_cli(interrupted_app, hard_exit=sys.exit)
    assert e.value.code == 130 and "run the same command with --resume" in capsys.readouterr().err
    for argv in (["netinv", "sat", "sample", "m.npz"], ["netinv", "sat", "count", "m.npz"]):  # the resumable sat loops
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit):
            run_cli(interrupted_app, hard_exit=sys.exit)
        assert "run the same command with --resume" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["netinv", "evaluate", "runs/cnn"])  # no --resume there: not promised
    with pytest.raises(SystemExit):
        run_cli(interrupted_app, hard_exit=sys.exit)
    assert capsys.readouterr().err == "interrupted\n"


def test_the_next_hint_names_the_data_a_user_model_needs(parity_victim):
    from pathlib import Path

    from netinv import load_model
    from netinv.cli._options import evaluate_hint

    model, _ = parity_victim  # a netinv checkpoint records its members and non-members
    assert evaluate_hint(model, Path("runs/k")) == "next: netinv evaluate runs/k"
    bare = load_model(model.module, input_shape=(1, 8, 8), device="cpu")
    assert evaluate_hint(bare, Path("runs/k")).endswith("--train MEMBERS.npz --heldout NONMEMBERS.npz")
    factory = dataclasses.replace(bare, source={"format": "factory", "factory": "mymod:make", "weights": "/w.pt"})
    assert evaluate_hint(factory, Path("runs/k")) == ("next: netinv evaluate runs/k --model mymod:make --weights /w.pt "
                                                      "--train MEMBERS.npz --heldout NONMEMBERS.npz")


def test_sigterm_stops_like_ctrl_c_and_keeps_the_checkpoint(parity_victim, tmp_path):
    """docker stop / kill / SLURM send SIGTERM: the process died with no message (rc −15)."""
    import signal
    import time

    _, ckpt = parity_victim
    out = tmp_path / "k"
    p = subprocess.Popen([sys.executable, "-m", "netinv", "reconstruct", "kkt", str(ckpt), "--out", str(out),
                          "--iterations", "200000", "--checkpoint-every", "20", "--device", "cpu"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not (out / ".kkt_state.pt").exists() and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted: the last checkpoint is kept" in err and "Traceback" not in err
    assert (out / ".kkt_state.pt").is_file()


def test_temporary_files_a_killed_write_left_are_removed(tmp_path):
    import os

    from netinv._utils.checkpoint import atomic_write_bytes

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that has exited
    (tmp_path / f".state.pt.{dead}.ab12cd_3").write_bytes(b"half")  # what SIGKILL mid-write leaves
    (tmp_path / f".state.pt.{os.getpid()}.zz12cd_3").write_bytes(b"a live writer's")  # another thread's: kept
    (tmp_path / ".state.pt.original").write_bytes(b"a user's file")  # not netinv's name: kept
    atomic_write_bytes(tmp_path / "state.pt", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".state.pt.{os.getpid()}.zz12cd_3", ".state.pt.original",
                                                          "state.pt"]


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    """A file far larger inside than on disk (a zip bomb's float conversion, a forged IDX count) ended in a
    MemoryError traceback; the CLI now says it in one line with exit 2."""
    import typer

    from netinv.cli._errors import run_cli as run_app

    app = typer.Typer()

    @app.command()
    def load() -> None:
        raise MemoryError

    from netinv.cli import _errors

    monkeypatch.setattr(sys, "argv", ["netinv"])
    monkeypatch.setenv("NETINV_MALLOC", "system")  # leave this test process's allocator alone
    monkeypatch.setattr(_errors.signals, "start_relay", lambda: None)  # and its signal handling
    monkeypatch.setattr(_errors.signal, "signal", lambda *a: None)
    with pytest.raises(SystemExit) as e:
        run_app(app)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out of memory — the input")


@pytest.mark.parametrize("command", ["data list", "--help", "sat sample -h"])
def test_a_reader_that_leaves_early_gives_the_sigpipe_exit_code_and_no_message(command):
    """`netinv data list | true` exited 1 (click's EPIPE exit) like a failure, and `--help | head` did too (rich's
    exit on a closed pipe); both are 141, as for SIGPIPE."""
    r = subprocess.run(f"{sys.executable} -m netinv {command} | true; echo $" + "{PIPESTATUS[0]}", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() in ("141", "0") and "Traceback" not in r.stderr and "error" not in r.stderr  # 0: no EPIPE


def test_the_config_help_lists_the_keys_each_command_accepts():
    """`--config` keys were found only by trial (an unknown key is refused with the list); each command's help now
    lists them, taken from the settings it merges the file into (sat's named by hand: checked here)."""
    import dataclasses

    from netinv.apps.adversarial import AdversarialConfig
    from netinv.apps.ood import OODConfig
    from netinv.attacks.generator import GeneratorConfig
    from netinv.attacks.kkt import KKTConfig
    from netinv.attacks.tldr import TLDRConfig
    from netinv.metrics.evaluation import EvaluationConfig
    from netinv.sat.queries import QueryConfig
    from netinv.train import TrainConfig

    for args, cls in ((["reconstruct", "kkt"], KKTConfig), (["sweep", "kkt"], KKTConfig), (["audit"], KKTConfig),
                      (["reconstruct", "tldr"], TLDRConfig), (["invert"], GeneratorConfig), (["ood"], OODConfig),
                      (["adversarial"], AdversarialConfig), (["evaluate"], EvaluationConfig), (["train"], TrainConfig),
                      *((["sat", q], QueryConfig) for q in ("invert", "count", "sample", "robust", "infer"))):
        lines = [ln.strip(" │") for ln in runner.invoke(app, [*args, "--help"]).output.splitlines()]
        i = next(i for i, ln in enumerate(lines) if ln.startswith("--config") and "<path>" in ln)
        text = lines[i]
        for ln in lines[i + 1:]:  # the help's wrapped lines, up to the next option
            if ln.startswith("-") or not ln:
                break
            text += " " + ln
        keys = " ".join(text.split("keys: ")[1].split()).split(", ")
        assert keys == sorted(f.name for f in dataclasses.fields(cls)), (args, keys)
