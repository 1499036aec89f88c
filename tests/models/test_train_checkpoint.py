"""Training reaches zero training error; checkpoints round-trip bit-identically; resume equals an uninterrupted run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys

import pytest
import torch

from netinv import ConfigError, ModelError, load_model
from netinv.data import load_data, make_task, split_from_record
from netinv.models.checkpoint import load_checkpoint
from netinv.models.registry import parse_arch
from netinv.train import TrainConfig, train


def test_digits_training_reaches_zero_training_error(parity_victim, digits_parity):
    model, _ = parity_victim
    assert model.accuracy(digits_parity.train.x, digits_parity.train.y) == 1.0
    assert model.meta["train_accuracy"] == 1.0
    assert model.meta["final_loss"] < 0.05
    assert model.meta["test_accuracy"] > 0.7  # generalises: a real victim, not a memoriser of noise


def test_checkpoint_round_trip_is_bit_identical(parity_victim):
    model, ckpt = parity_victim
    again = load_checkpoint(ckpt)
    x = torch.rand(16, 1, 8, 8)
    assert torch.equal(model.logits(x), again.logits(x))
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["arch"] == {"kind": "mlp", "input_shape": [1, 8, 8], "widths": [64], "num_outputs": 1, "bias": "none",
                            "init_scale": 1.0}
    assert meta["seed"] == 0 and meta["loss_curve"] and meta["data"]["train_indices"]


def test_checkpoint_records_exact_members(parity_victim, digits_parity):
    _, ckpt = parity_victim
    split = split_from_record(load_checkpoint(ckpt).meta["data"])
    assert torch.equal(split.train.x, digits_parity.train.x) and torch.equal(split.train.y, digits_parity.train.y)
    assert torch.equal(split.heldout.x, digits_parity.heldout.x)
    assert not set(split.train.indices) & set(split.heldout.indices)


def test_mean_subtraction_is_recorded_and_applied(digits_parity, tmp_path):
    model = train(digits_parity, "mlp:32", TrainConfig(lr=0.2, epochs=200, mean_subtract=True), out=tmp_path / "m",
                  device="cpu", show_progress=False)
    again = load_model(tmp_path / "m", device="cpu")
    assert torch.allclose(again.mean, digits_parity.train.x.mean(0))
    x = digits_parity.heldout.x[:8]
    assert torch.equal(again.logits(x), again.module(x - digits_parity.train.x.mean(0)))
    assert torch.equal(model.logits(x), again.logits(x))
    assert model.meta["environment"]["device"] == "cpu"  # where it ran (``cuda`` names the machine's GPU, if any)


def test_resume_equals_uninterrupted(digits_parity, tmp_path):
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=40, batch_size=16, checkpoint_every=10, log_every=10,
                      target_loss=0.0)
    full = train(digits_parity, "cnn:4", cfg, out=tmp_path / "full", device="cpu", show_progress=False)
    # interrupt the run right after its epoch-20 state is saved: what a killed run leaves behind
    trainer = sys.modules["netinv.train"]  # the module (the package exports a function of the same name)
    real = trainer.save_state

    class Stop(Exception):
        pass

    def save_then_stop(path, state):
        real(path, state)
        if state["epoch"] == 20:
            raise Stop

    trainer.save_state = save_then_stop
    try:
        with pytest.raises(Stop):
            train(digits_parity, "cnn:4", cfg, out=tmp_path / "resumed", device="cpu", show_progress=False)
    finally:
        trainer.save_state = real
    assert (tmp_path / "resumed" / ".train_state.pt").exists()
    with pytest.raises(Stop), pytest.warns(UserWarning, match="interrupted run's checkpoint; this run starts afresh"):
        trainer.save_state = save_then_stop  # a plain rerun says it replaces the interrupted run (it used to be silent)
        try:
            train(digits_parity, "cnn:4", cfg, out=tmp_path / "resumed", device="cpu", show_progress=False)
        finally:
            trainer.save_state = real
    with pytest.raises(ConfigError, match="other settings \\(lr 0.01 → 0.02\\)"):
        train(digits_parity, "cnn:4", dataclasses.replace(cfg, lr=2e-2, checkpoint_every=20), out=tmp_path / "resumed",
              resume=True, device="cpu", show_progress=False)  # the interval is not a difference: lr is named alone
    with pytest.raises(ConfigError, match="other settings \\(lr 0.01 → 0.02\\)"):
        train(digits_parity, "cnn:4", dataclasses.replace(cfg, lr=2e-2), out=tmp_path / "resumed", resume=True,
              device="cpu", show_progress=False)
    resumed = train(digits_parity, "cnn:4", cfg, out=tmp_path / "resumed", resume=True, device="cpu",
                    show_progress=False)
    assert not (tmp_path / "resumed" / ".train_state.pt").exists()  # removed once the run completes
    x = digits_parity.heldout.x
    assert torch.allclose(full.logits(x), resumed.logits(x), atol=1e-6)
    losses = [p["loss"] for p in resumed.meta["loss_curve"]]
    assert losses == pytest.approx([p["loss"] for p in full.meta["loss_curve"]], rel=1e-5)


def test_resume_of_a_finished_checkpoint_returns_it_without_training(digits_parity, tmp_path, monkeypatch):
    cfg = TrainConfig(lr=0.2, epochs=50, log_every=10)
    first = train(digits_parity, "mlp:16", cfg, out=tmp_path / "m", device="cpu", show_progress=False)
    trainer = sys.modules["netinv.train"]
    monkeypatch.setattr(trainer, "save_checkpoint", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = train(digits_parity, "mlp:16", dataclasses.replace(cfg, checkpoint_every=7), out=tmp_path / "m",
                  resume=True, device="cpu", show_progress=False)  # the checkpoint interval is not a difference
    x = digits_parity.heldout.x
    assert torch.equal(first.logits(x), again.logits(x)) and again.meta["loss_curve"] == first.meta["loss_curve"]
    with pytest.raises(ConfigError, match="other settings \\(lr 0.2 → 0.3\\)"):
        train(digits_parity, "mlp:16", dataclasses.replace(cfg, lr=0.3), out=tmp_path / "m", resume=True,
              device="cpu", show_progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        train(digits_parity, "mlp:32", cfg, out=tmp_path / "m", resume=True, device="cpu", show_progress=False)


def test_cnn_multiclass_trains(tmp_path):
    split = make_task(load_data("digits"), "classes:0,1,2", n_per_class=30, heldout_per_class=30)
    m = train(split, "cnn:8,16", TrainConfig(optimizer="adam", lr=3e-3, epochs=30, batch_size=32, target_loss=0.0),
              device="cpu", show_progress=False)
    assert m.num_outputs == 3 and m.meta["loss"] == "ce"
    assert m.meta["test_accuracy"] > 0.9


@pytest.mark.parametrize("arch,match", [("resnet:3", "unknown architecture"), ("mlp:10,x", "cannot read widths"),
                                        ("mlp:0", "must be positive")])
def test_bad_architecture_strings(arch, match):
    with pytest.raises(ConfigError, match=match):
        parse_arch(arch, (1, 8, 8), 1)


def test_unknown_arch_option_and_logistic_on_multiclass(digits_parity):
    with pytest.raises(ConfigError, match="no option"):
        parse_arch("mlp:8", (64,), 1, channels=3)
    for bad in ("first", "xyz"):  # accepted and ignored before (a cnn with biases was trained)
        with pytest.raises(ConfigError, match=f"bias='{bad}' is not allowed for a cnn"):
            parse_arch("cnn:4", (1, 8, 8), 1, bias=bad)
    assert parse_arch("cnn:4", (1, 8, 8), 1, bias="none").bias is False
    split = make_task(load_data("digits"), "classes:0,1,2", n_per_class=5, heldout_per_class=5)
    with pytest.raises(ConfigError, match="logistic loss needs a binary task"):
        train(split, "mlp:8", TrainConfig(loss="logistic", epochs=1), device="cpu", show_progress=False)


def test_corrupt_checkpoint_gives_model_error(parity_victim, tmp_path):
    import shutil

    _, ckpt = parity_victim
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="do not fit|corrupt|cannot read"):
        load_checkpoint(bad)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["arch"].update(widths=[30000, 30000]), "do not fit the recorded architecture"),  # shapes first
    (lambda m: m.pop("arch"), "does not describe a model"),
    (lambda m: m.update(arch="mlp:64"), "does not describe a model"),
    (lambda m: m["arch"].update(widths="abc"), "does not describe a model"),
    (lambda m: m["arch"].update(widths=[-5]), "does not describe a model"),
    (lambda m: m.update(input_range="ab"), "does not describe a model"),
    (lambda m: m.update(mean_subtracted=True), "cannot read the mean image"),
    (lambda m: m.update(input_range=[float("nan"), float("nan")]), "input_range \\[nan, nan\\] is not a finite"),
    (lambda m: m.update(input_range=[1, 0]), "not a finite LO < HI"),
    (lambda m: m["arch"].update(input_shape=[1, 65536, 65536]), "does not describe a model|do not fit"),
])
def test_an_edited_checkpoint_is_one_model_error(parity_victim, tmp_path, edit, match):
    import shutil

    _, ckpt = parity_victim
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    meta = json.loads((bad / "meta.json").read_text())
    edit(meta)
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=match):
        load_checkpoint(bad)


def test_cuda_rng_state_is_the_model_devices_own(monkeypatch):
    """Resumable states carry the CUDA generator of the model's device; an older state's list of every visible GPU's
    state resumes with the device's own entry, and a CPU run ignores it (simulated: no GPU needed)."""
    from netinv._utils.seed import cuda_rng_state, set_cuda_rng_state

    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((state, device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    a, b = torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)
    assert cuda_rng_state(torch.device("cpu")) is None
    set_cuda_rng_state(a, torch.device("cpu"))
    set_cuda_rng_state(None, torch.device("cuda:0"))
    assert calls == []
    set_cuda_rng_state(a, torch.device("cuda:1"))
    set_cuda_rng_state([a, b], torch.device("cuda:1"))
    set_cuda_rng_state([a, b], torch.device("cuda"))
    set_cuda_rng_state([a], torch.device("cuda:1"))  # saved with fewer GPUs visible: nothing to restore
    assert [(int(s[0]), str(d)) for s, d in calls] == [(1, "cuda:1"), (2, "cuda:1"), (1, "cuda")]


def test_a_diverged_run_stops_with_one_line(digits_parity, tmp_path):
    """A step far too large makes the loss NaN: training stops with a one-line error (it used to run every epoch on
    NaN weights and save them), and no NaN state is left to resume from."""
    from netinv.cli._errors import format_error

    cfg = TrainConfig(optimizer="gd", lr=1e30, epochs=400, log_every=10, checkpoint_every=5)
    with pytest.raises(ConfigError, match=r"training diverged at epoch \d+ \(loss nan\) with gd lr 1e\+30") as e:
        train(digits_parity, "mlp:32", cfg, out=tmp_path / "m", show_progress=False)
    assert format_error(e.value).count("\n") == 0 and "lower --lr" in str(e.value)
    state = tmp_path / "m" / ".train_state.pt"
    if state.exists():  # a state saved before the divergence holds finite weights only
        st = torch.load(state, weights_only=False)
        assert all(torch.isfinite(v).all() for v in st["model"].values())


def test_a_dead_network_is_named_not_saved_silently(digits_parity):
    """Weights at zero (every ReLU dead from the start) never move: train says so instead of reporting it trained."""
    from netinv.train import TrainConfig, train

    with pytest.warns(UserWarning, match="outputs 0 on every training input"):
        train(digits_parity, "mlp:8", TrainConfig(epochs=3), bias="none", init_scale=0.0, device="cpu",
              show_progress=False)


def test_one_call_from_a_source_name_equals_split_then_train(digits_parity):
    cfg = TrainConfig(lr=0.2, epochs=200, target_loss=0.0)
    a = train(digits_parity, "mlp:16", cfg, bias="none", device="cpu", show_progress=False)
    b = train("digits", "mlp:16", cfg, task="parity", n_per_class=20, heldout_per_class=40, bias="none", device="cpu",
              show_progress=False)
    assert a.meta["data"] == b.meta["data"]
    x = torch.rand(8, 1, 8, 8)
    assert torch.equal(a.logits(x), b.logits(x))
    with pytest.raises(ConfigError, match="TaskSplit was given"):
        train(digits_parity, "mlp:16", cfg, task="parity", show_progress=False)
    with pytest.raises(ConfigError, match="not int"):
        train(3, "mlp:16", cfg, show_progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["load_args"].update(evil=1), "unknown load_args"),
    (lambda d: d.update(train_indices=[0, 10**9]), "index 1000000000 outside"),
    (lambda d: d.pop("task"), "unusable: 'task'"),
])
def test_an_edited_data_record_is_one_data_error(parity_victim, edit, match):
    from netinv import DataError

    model, _ = parity_victim
    record = json.loads(json.dumps(model.meta["data"]))
    edit(record)
    with pytest.raises(DataError, match=match):
        split_from_record(record)


def test_a_record_never_makes_netinv_download(tmp_path, monkeypatch):
    """A checkpoint's meta.json may come from anyone: its load_args must not fetch files into a folder it names."""
    from netinv import DataError
    from netinv.data import _download

    monkeypatch.setattr(_download.urllib.request, "urlopen",
                        lambda *a, **k: pytest.fail("a record made netinv download"))
    record = {"load_args": {"name": "mnist", "root": str(tmp_path / "elsewhere"), "download": True},
              "task": {"task": "parity"}, "train_indices": [0], "heldout_indices": [1]}
    with pytest.raises(DataError):
        split_from_record(record)
    assert not any((tmp_path / "elsewhere").rglob("*.gz"))


@pytest.mark.parametrize("raw, match", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # used to be a RecursionError traceback
    (b'{"format": "\xff\xfe"}', "not UTF-8"),  # UnicodeDecodeError
    (b"[1, 2]", "a JSON list, not an object"),  # AttributeError: 'list' object has no attribute 'get'
])
def test_a_meta_json_that_is_not_one_object_is_one_model_error(parity_victim, tmp_path, raw, match):
    import shutil

    _, ckpt = parity_victim
    shutil.copytree(ckpt, tmp_path / "bad")
    (tmp_path / "bad" / "meta.json").write_bytes(raw)
    with pytest.raises(ModelError, match=match):
        load_checkpoint(tmp_path / "bad")


def test_a_checkpoint_mean_with_a_forged_header_or_nan_is_refused(parity_victim, digits_parity, tmp_path):
    import io
    import shutil

    import numpy as np

    model = train(digits_parity, "mlp:8", TrainConfig(lr=0.2, epochs=5, mean_subtract=True), out=tmp_path / "m",
                  device="cpu", show_progress=False)
    assert model.mean is not None
    for name, payload in (("forged", None), ("nan", np.full((1, 8, 8), np.nan, np.float32))):
        bad = tmp_path / name
        shutil.copytree(tmp_path / "m", bad)
        if payload is None:  # 144 bytes claiming 10¹² float32 values: refused before anything is allocated
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (10**12,)})
            (bad / "mean.npy").write_bytes(buf.getvalue() + b"\0" * 16)
        else:
            np.save(bad / "mean.npy", payload)
        with pytest.raises(ModelError, match="cannot read the mean image .*(truncated or forged|not all finite)"):
            load_checkpoint(bad)


def test_first_line_skips_blank_lines():
    from netinv._errors import first_line

    assert first_line(RuntimeError("\nUnknown type name 'posix.system'\nmore")) == "Unknown type name 'posix.system'"
    assert first_line(RuntimeError("")) == "RuntimeError"


@pytest.mark.parametrize("bad, named", [({"epochs": -1}, "epochs=-1"), ({"batch_size": -3}, "batch_size=-3"),
                                        ({"lr": -1.0}, "lr=-1.0"), ({"weight_decay": -5.0}, "weight_decay=-5.0"),
                                        ({"momentum": 1.0}, "momentum=1.0")])
def test_settings_no_training_can_use_are_one_config_error(digits_parity, tmp_path, bad, named):
    """--epochs -1 'trained' 0 epochs, a negative batch size took no step, a negative lr was a torch traceback."""
    with pytest.raises(ConfigError, match=named):
        train(digits_parity, "mlp:8", TrainConfig(**bad), out=tmp_path / "m", show_progress=False)
    assert not (tmp_path / "m").exists()  # refused before anything is written


def test_a_negative_member_count_is_named():
    from netinv._errors import DataError
    from netinv.data import load_data, make_task

    with pytest.raises(DataError, match="--n-per-class >= 1"):
        make_task(load_data("digits"), "parity", n_per_class=-2, seed=0)


def test_an_npz_named_mean_npy_is_one_model_error(parity_victim, tmp_path):
    """np.load gave an NpzFile, and its missing dtype was an AttributeError that nothing caught."""
    import shutil

    import numpy as np

    _, ckpt = parity_victim
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    meta = json.loads((bad / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps({**meta, "mean_subtracted": True}))
    with open(bad / "mean.npy", "wb") as f:
        np.savez(f, mean=np.zeros(64, np.float32))
    with pytest.raises(ModelError, match="cannot read the mean image .*not one array"):
        load_checkpoint(bad)


def test_a_checkpoint_refuses_a_mean_or_weights_it_would_ignore_or_contradict(parity_victim, tmp_path):
    """`--mean` silently changed what a checkpoint computes (and `info` then said mean_subtracted); `--weights` was
    silently dropped. Both are refused, as a contradicting --input-range already was."""
    import numpy as np

    _, ckpt = parity_victim
    np.save(tmp_path / "mean.npy", np.full((1, 8, 8), 0.3, np.float32))
    with pytest.raises(ModelError, match="records its own mean image"):
        load_model(ckpt, mean=tmp_path / "mean.npy", device="cpu")
    with pytest.raises(ModelError, match="--weights .* applies to a package.module:factory model"):
        load_model(ckpt, weights=tmp_path / "nothing.pt", device="cpu")


def test_a_checkpoint_and_a_generator_file_are_byte_identical_across_processes(tmp_path):
    """Audit G: the same seed gave generator.safetensors files that differed between processes (safetensors writes
    its metadata in the order of a Rust HashMap, random per process); model.safetensors had the same flaw."""
    import subprocess

    code = ("import sys, torch; from netinv.models.checkpoint import save_checkpoint; "
            "from netinv.attacks._generator_training import save_generator_weights; from pathlib import Path; "
            "from netinv.models.registry import parse_arch; torch.manual_seed(0); "
            "spec = parse_arch('mlp:4', (1, 2, 2), 2); m = spec.build(); out = Path(sys.argv[1]); "
            "save_checkpoint(out / 'ckpt', m, spec, {'seed': 5}); save_generator_weights(out, m, seed=5)")
    digests = set()
    for i in range(4):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / str(i))], check=True, timeout=120)
        digests.add(tuple(hashlib.sha256((tmp_path / str(i) / f).read_bytes()).hexdigest()
                          for f in ("ckpt/model.safetensors", "generator.safetensors")))
    assert len(digests) == 1
