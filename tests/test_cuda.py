"""The accelerator paths: every public entry point that takes ``device`` runs on the device under test, hands CPU
tensors back, writes files a CPU-only process reads, and agrees with the same call on the CPU.

The device under test is ``NETINV_TEST_DEVICE`` (default ``cuda``; the file is skipped without a GPU). With
``NETINV_TEST_DEVICE=cpu`` both sides are the CPU and the file checks its own plumbing; that is how it runs on a
machine without a GPU.

Tolerances, not bit equality: float32 on another chip sums in another order (~1e-7 relative per operation), and cuDNN
may run float32 convolutions in TF32, so CNN comparisons are looser than MLP ones. The KKT attack is chaotic: on the
CPU, float32 against float64 (a perturbation of the size a change of chip makes) agrees per candidate to ~4e-6 (of the
largest score) after 50 iterations, but after 300 only in the run's criterion (~0.5%); per-candidate checks therefore
use 50 iterations and the longer run is compared in its criterion. Stochastic runs (generator, TLDR, OOD: dropout
draws from the device's own random stream) are compared in their figures. Measured on an H200 (torch 2.11+cu130)
against its CPU: MLP logits 2e-7, CNN logits 2e-4, TLDR per-sample gradient norms 1e-2, KKT after 50 iterations
scores 2e-4 and criterion 1e-5, after 300 criterion 0.6%, in float64 criterion 1e-12; resumes bit-identical. The
measured differences are printed (``pytest -rA`` shows them).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from netinv.apps.adversarial import AdversarialConfig, compare_adversarial, perturbation_norms, random_targets
from netinv.apps.ood import OODConfig, garbage_ood
from netinv.attacks import kkt as kkt_mod
from netinv.attacks.generator import GeneratorConfig, GeneratorInversion, load_generator
from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.attacks.tldr import TLDR, TLDRConfig
from netinv.data import load_data, make_task
from netinv.losses import candidate_margins
from netinv.metrics import evaluate
from netinv.models.features import Features
from netinv.models.loading import load_model
from netinv.train import TrainConfig, train

DEV = os.environ.get("NETINV_TEST_DEVICE", "cuda")
DEV_TYPE = torch.device(DEV).type

pytestmark = pytest.mark.skipif(DEV.startswith("cuda") and not torch.cuda.is_available(),
                                reason="no CUDA device: set NETINV_TEST_DEVICE=cpu to run these checks on the CPU")

CONV_RTOL = 2e-2 if DEV_TYPE == "cuda" else 1e-5  # cuDNN may run float32 convolutions in TF32
TRAIN_MODULE = importlib.import_module("netinv.train")  # the module (the package exports a function of that name)


@pytest.fixture
def deterministic(monkeypatch):
    """cuDNN picks deterministic kernels (some convolution backward kernels add with atomics), for resume checks."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


# ------------------------------------------------------------------------------------------------------- helpers
def note(what: str, value) -> None:
    print(f"[{DEV}] {what}: {value}")


def on_dev(t: torch.Tensor) -> bool:
    return t.device.type == DEV_TYPE


def module_on(module: nn.Module, kind: str) -> bool:
    ts = [*module.parameters(), *module.buffers()]
    return bool(ts) and all(t.device.type == kind for t in ts)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float, what: str, atol_frac: float | None = None) -> None:
    """``a`` ≈ ``b`` (both moved to the CPU) with ``atol = atol_frac · max|b|`` (default: rtol)."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    scale = float(b.abs().max()) if b.numel() else 1.0
    atol = (rtol if atol_frac is None else atol_frac) * max(scale, 1e-12)
    note(f"{what} max |diff| / max |ref|", f"{float((a - b).abs().max()) / max(scale, 1e-12):.3g}")
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


class Interrupt(Exception):
    pass


def interrupting_bar(after: int):
    """A progress bar whose ``after``-th update raises: what a killed run leaves behind."""

    @contextmanager
    def bar(*args, **kwargs):
        class Bar:
            calls = 0

            def update(self, *a, **k):
                Bar.calls += 1
                if Bar.calls == after:
                    raise Interrupt

        yield Bar()

    return bar


def storage_locations(path: Path) -> set[str]:
    """Where the tensors of a ``torch.save`` file lived when saved (e.g. ``cpu``, ``cuda:0``), read on the CPU."""
    locs: list[str] = []

    def where(storage, loc):
        locs.append(loc)
        return storage

    torch.load(path, map_location=where, weights_only=True)
    return set(locs)


def safetensors_on_cpu(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(path), device="cpu")
    assert state and all(t.device.type == "cpu" for t in state.values()), path
    return state


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def parity():
    """30 members (15 per class), 80 non-members."""
    return make_task(load_data("digits"), "parity", n_per_class=15, heldout_per_class=40, seed=0)


@pytest.fixture(scope="module")
def mlp_dev(parity, tmp_path_factory):
    """A bias-free 64-64-1 MLP (mean-subtracted inputs) trained on the device with full-batch GD: (model, ckpt)."""
    out = tmp_path_factory.mktemp("mlp_dev") / "ckpt"
    model = train(parity, "mlp:64", TrainConfig(lr=1.0, epochs=2000, target_loss=1e-2, mean_subtract=True), out=out,
                  bias="none", device=DEV, show_progress=False)
    return model, out


@pytest.fixture(scope="module")
def mlp_pair(mlp_dev):
    """The same checkpoint loaded on the device and on the CPU."""
    _, ckpt = mlp_dev
    return load_model(ckpt, device=DEV), load_model(ckpt, device="cpu")


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A 4-class digits task (0-3) and a CNN (BatchNorm, dropout) trained on the device: (split, dev, cpu, ckpt)."""
    split = make_task(load_data("digits"), "classes:0,1,2,3", n_per_class=50, heldout_per_class=20, seed=0)
    out = tmp_path_factory.mktemp("cnn_dev") / "ckpt"
    trained = train(split, "cnn:8,16", TrainConfig(optimizer="adam", loss="ce", lr=3e-3, batch_size=32, epochs=15),
                    out=out, device=DEV, show_progress=False, hidden=32)
    assert module_on(trained.module, DEV_TYPE)
    return split, load_model(out, device=DEV), load_model(out, device="cpu"), out


@pytest.fixture(scope="module")
def kkt_short(mlp_pair):
    """50 KKT iterations on the device and on the CPU, same checkpoint and seed (per-candidate agreement holds)."""
    dev, cpu = mlp_pair
    cfg = KKTConfig(iterations=50, show_progress=False)
    return KKTReconstruction(dev, cfg).invert(seed=0), KKTReconstruction(cpu, cfg).invert(seed=0)


# ---------------------------------------------------------------------------------------------- 1. training
def test_device_selection():
    from netinv._utils.device import resolve_device

    assert resolve_device(DEV).type == DEV_TYPE
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_train_on_device_reaches_zero_error_and_its_checkpoint_loads_on_cpu(parity, mlp_dev):
    model, ckpt = mlp_dev
    tr, ho = parity.train, parity.heldout
    assert model.meta["train_accuracy"] == 1.0 and model.accuracy(tr.x, tr.y) == 1.0  # CPU inputs are moved
    assert module_on(model.module, DEV_TYPE) and model.device.type == DEV_TYPE
    assert model.mean is not None and on_dev(model.mean)
    pred = model.predict(ho.x)
    assert pred.device.type == "cpu" and pred.dtype == torch.int64
    assert model.meta["environment"]["cuda"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)

    cpu = load_model(ckpt, device="cpu")  # the checkpoint written from the device model
    assert module_on(cpu.module, "cpu") and cpu.mean.device.type == "cpu"
    torch.testing.assert_close(cpu.mean, tr.x.mean(0))
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        close(model.logits(x.to(DEV)), cpu.logits(x), 1e-4, "train: device model vs its checkpoint on the CPU")
    assert torch.equal(cpu.predict(ho.x), pred)
    assert cpu.meta["train_accuracy"] == 1.0 and cpu.meta["test_accuracy"] == model.meta["test_accuracy"]

    # the same run on the CPU (same seed, same initialisation drawn on the CPU): the same victim up to round-off
    ref = train(parity, "mlp:64", TrainConfig(lr=1.0, epochs=2000, target_loss=1e-2, mean_subtract=True), bias="none",
                device="cpu", show_progress=False)
    assert ref.meta["train_accuracy"] == 1.0 and ref.meta["epochs_run"] == model.meta["epochs_run"]
    with torch.no_grad():
        close(model.logits(x.to(DEV)), ref.logits(x), 1e-3, "train: device run vs CPU run")
    assert float((ref.predict(ho.x) == pred).float().mean()) >= 0.95
    assert model.meta["final_loss"] == pytest.approx(ref.meta["final_loss"], rel=1e-3)


def _interrupt_train_at(monkeypatch, epoch: int):
    real = TRAIN_MODULE.save_state

    def save_then_stop(path, state):
        real(path, state)
        if state["epoch"] == epoch:
            raise Interrupt

    monkeypatch.setattr(TRAIN_MODULE, "save_state", save_then_stop)
    return real


def _full_and_resumed(parity, arch: str, cfg: TrainConfig, stop_at: int, tmp_path: Path, monkeypatch,
                      before_resume=None):
    """An uninterrupted device run in ``tmp_path/full`` and one interrupted after epoch ``stop_at`` in
    ``tmp_path/resumed``, then resumed on the device (``before_resume(run_dir)`` runs in between)."""
    full = train(parity, arch, cfg, out=tmp_path / "full", device=DEV, show_progress=False)
    real = _interrupt_train_at(monkeypatch, stop_at)
    with pytest.raises(Interrupt):
        train(parity, arch, cfg, out=tmp_path / "resumed", device=DEV, show_progress=False)
    monkeypatch.setattr(TRAIN_MODULE, "save_state", real)
    if before_resume is not None:
        before_resume(tmp_path / "resumed")
    resumed = train(parity, arch, cfg, out=tmp_path / "resumed", resume=True, device=DEV, show_progress=False)
    return full, resumed


def test_train_resume_on_device_equals_uninterrupted_and_resumes_on_cpu(parity, tmp_path, monkeypatch):
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=40, batch_size=10, checkpoint_every=10, log_every=10,
                      target_loss=0.0)
    state = tmp_path / "resumed" / ".train_state.pt"

    def keep_a_copy(run_dir: Path) -> None:
        note("train state: storage locations", storage_locations(state))
        shutil.copytree(run_dir, tmp_path / "on_cpu")

    full, resumed = _full_and_resumed(parity, "mlp:32", cfg, 20, tmp_path, monkeypatch, keep_a_copy)
    assert not state.exists() and module_on(resumed.module, DEV_TYPE)
    x = parity.heldout.x
    with torch.no_grad():
        close(resumed.logits(x.to(DEV)), full.logits(x.to(DEV)), 1e-5, "train resume on the device")
    assert [p["loss"] for p in resumed.meta["loss_curve"]] == pytest.approx(
        [p["loss"] for p in full.meta["loss_curve"]], rel=1e-5)

    # the state a device run left behind resumes on the CPU (optimiser state and all)
    on_cpu = train(parity, "mlp:32", cfg, out=tmp_path / "on_cpu", resume=True, device="cpu", show_progress=False)
    assert module_on(on_cpu.module, "cpu") and on_cpu.meta["epochs_run"] == full.meta["epochs_run"]
    with torch.no_grad():
        close(on_cpu.logits(x), full.logits(x.to(DEV)), 1e-3, "train: device state resumed on the CPU")


def test_cnn_train_resume_on_device_replays_the_dropout_draws(parity, tmp_path, monkeypatch, deterministic):
    """A CNN with dropout: the resumed run must draw the dropout masks the uninterrupted run drew. On a GPU those
    come from the CUDA generator, so the resumable state must carry its state as well as the CPU generator's (the
    generator attacks' states do: ``cuda_rng`` in attacks/_generator_training.py)."""
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=20, batch_size=16, checkpoint_every=10, log_every=10,
                      target_loss=0.0)
    full, resumed = _full_and_resumed(parity, "cnn:4", cfg, 10, tmp_path, monkeypatch)
    x = parity.heldout.x
    with torch.no_grad():
        close(resumed.logits(x.to(DEV)), full.logits(x.to(DEV)), 1e-4,
              "train resume of a dropout CNN on the device (CUDA random state restored?)")


# ---------------------------------------------------------------------------------------------- 2. KKT
def test_kkt_on_device_matches_cpu_per_candidate(mlp_pair, kkt_short):
    dev, cpu = mlp_pair
    a, b = kkt_short
    m = len(b)
    assert m == 60 and len(a) == m  # 2× the recorded training set
    for t in (a.x, a.y, a.score, *a.arrays.values()):
        assert t.device.type == "cpu"
    assert a.x.dtype == torch.float32 and a.x.shape == (m, 1, 8, 8) and torch.equal(a.y, b.y)
    # candidates are in DATA space: the module sees x − mean and gives the recorded margins
    with torch.no_grad():
        marg = candidate_margins(cpu.module(a.x - cpu.mean), a.y)
    close(marg, a.arrays["margin"], 1e-4, "kkt: margins of the returned (data-space) candidates")
    note("kkt 50 it: criterion device / cpu", (a.info["criterion"], b.info["criterion"]))
    assert rel(a.info["criterion"], b.info["criterion"]) < 1e-3
    assert rel(a.info["lam_unit"], b.info["lam_unit"]) < 1e-5
    close(a.score, b.score, 1e-2, "kkt 50 it: scores", atol_frac=2e-3)  # CPU float32 vs float64: 2.4e-4
    close(a.arrays["lam"], b.arrays["lam"], 1e-2, "kkt 50 it: multipliers", atol_frac=2e-3)
    close(a.x, b.x, 0.0, "kkt 50 it: candidates", atol_frac=0.05)  # CPU float32 vs float64: 6e-3 (Adam's noise)
    curve_a, curve_b = a.info["loss_curve"], b.info["loss_curve"]
    assert [p["iteration"] for p in curve_a] == [p["iteration"] for p in curve_b]
    assert curve_a[0]["loss"] == pytest.approx(curve_b[0]["loss"], rel=1e-4)
    assert curve_a[-1]["stationarity"] < 0.5 * curve_a[0]["stationarity"]  # it optimises
    hom, hom_cpu = a.info["homogeneity"], b.info["homogeneity"]  # checked on the device in float64
    assert hom["homogeneous"] and hom_cpu["homogeneous"] and hom["degree"] == pytest.approx(hom_cpu["degree"]) == 2.0


def test_kkt_longer_run_on_device_matches_cpu_in_its_criterion(mlp_pair):
    dev, cpu = mlp_pair
    cfg = KKTConfig(iterations=300, show_progress=False)
    a, b = KKTReconstruction(dev, cfg).invert(seed=0), KKTReconstruction(cpu, cfg).invert(seed=0)
    note("kkt 300 it: criterion device / cpu", (a.info["criterion"], b.info["criterion"]))
    note("kkt 300 it: mean score device / cpu", (float(a.score.mean()), float(b.score.mean())))
    assert a.x.device.type == "cpu" and torch.isfinite(a.x).all() and torch.isfinite(a.score).all()
    assert rel(a.info["criterion"], b.info["criterion"]) < 0.05  # CPU float32 vs float64: 0.5%
    assert rel(float(a.score.sum()), float(b.score.sum())) < 0.25  # CPU float32 vs float64: up to 6%
    assert a.info["criterion"] < 0.5 * a.info["loss_curve"][0]["stationarity"]
    assert a.info["iterations_per_s"] > 0


def test_kkt_float64_on_device_matches_cpu_tightly(mlp_pair):
    dev, cpu = mlp_pair
    cfg = KKTConfig(iterations=50, dtype="float64", show_progress=False)
    a, b = KKTReconstruction(dev, cfg).invert(seed=0), KKTReconstruction(cpu, cfg).invert(seed=0)
    assert a.x.dtype == torch.float32 and a.x.device.type == "cpu"  # returned as float32 on the CPU
    note("kkt float64: criterion device / cpu", (a.info["criterion"], b.info["criterion"]))
    assert rel(a.info["criterion"], b.info["criterion"]) < 1e-7
    close(a.x, b.x, 0.0, "kkt float64: candidates", atol_frac=1e-5)  # CPU, 1e-13 perturbation: 6e-9
    close(a.score, b.score, 1e-5, "kkt float64: scores", atol_frac=1e-6)
    close(a.arrays["lam"], b.arrays["lam"], 1e-5, "kkt float64: multipliers", atol_frac=1e-6)


def test_kkt_resume_on_device_equals_uninterrupted_and_resumes_on_cpu(mlp_pair, tmp_path):
    dev, cpu = mlp_pair
    cfg = KKTConfig(iterations=40, checkpoint_every=20, log_every=5, show_progress=False)
    whole = KKTReconstruction(dev, cfg).invert(20, seed=2, out=tmp_path / "a")
    with patch.object(kkt_mod, "progress_bar", interrupting_bar(30)), pytest.raises(Interrupt):
        KKTReconstruction(dev, cfg).invert(20, seed=2, out=tmp_path / "b")
    state = tmp_path / "b" / ".kkt_state.pt"
    assert torch.load(state, map_location="cpu", weights_only=True)["iteration"] == 20
    note("kkt state: storage locations", storage_locations(state))
    shutil.copytree(tmp_path / "b", tmp_path / "c")

    resumed = KKTReconstruction(dev, cfg).invert(20, seed=2, out=tmp_path / "b", resume=True)
    assert not state.exists()
    close(resumed.x, whole.x, 0.0, "kkt resume on the device: candidates", atol_frac=1e-6)
    close(resumed.arrays["lam"], whole.arrays["lam"], 0.0, "kkt resume on the device: multipliers", atol_frac=1e-6)
    assert [p["loss"] for p in resumed.info["loss_curve"]] == pytest.approx(
        [p["loss"] for p in whole.info["loss_curve"]], rel=1e-6)

    # a device run's state resumes on the CPU (x, λ and Adam's moments come back on the CPU)
    on_cpu = KKTReconstruction(cpu, cfg).invert(20, seed=2, out=tmp_path / "c", resume=True)
    note("kkt device state resumed on the CPU: criterion / uninterrupted", (on_cpu.info["criterion"],
                                                                             whole.info["criterion"]))
    assert rel(on_cpu.info["criterion"], whole.info["criterion"]) < 1e-2
    assert (tmp_path / "c" / "candidates.npz").is_file()


# ---------------------------------------------------------------------------------------------- 3. evaluate
def test_evaluate_with_a_device_model_matches_the_cpu_model(parity, mlp_pair, kkt_short):
    dev, cpu = mlp_pair
    a, _ = kkt_short
    kw = dict(candidate_labels=a.y, seed=0)
    ev_dev = evaluate(a.x, parity.train, parity.heldout, model=dev, **kw)
    ev_cpu = evaluate(a.x, parity.train, parity.heldout, model=cpu, **kw)
    for f_dev, f_cpu in zip(ev_dev.sets, ev_cpu.sets, strict=True):
        assert f_dev.summary() == f_cpu.summary()  # scored on the CPU: the model only gives margins and labels
    assert ev_dev.train_margin.device.type == "cpu"
    close(ev_dev.train_margin, ev_cpu.train_margin, 1e-4, "evaluate: training margins")
    c_dev, c_cpu = ev_dev.conditioning, ev_cpu.conditioning
    assert abs(c_dev["assigned_fraction"] - c_cpu["assigned_fraction"]) <= 1 / len(a) + 1e-9
    assert c_dev["mean_confidence"] == pytest.approx(c_cpu["mean_confidence"], rel=1e-4)
    assert c_dev["diversity_features"]["layer"] == c_cpu["diversity_features"]["layer"]
    for who in ("candidates", "real"):
        d_dev, d_cpu = c_dev["diversity_features"][who], c_cpu["diversity_features"][who]
        assert d_dev.keys() == d_cpu.keys()
        assert [d_dev[k] for k in d_dev] == pytest.approx([d_cpu[k] for k in d_cpu], rel=1e-4)
    # candidates handed over on the device are scored the same
    ev_moved = evaluate(a.x.to(DEV), parity.train, parity.heldout, model=dev, **kw)
    assert ev_moved.attack.summary() == ev_dev.attack.summary()


# ---------------------------------------------------------------------------------------------- 4. generators
FAST_GEN = dict(steps=150, batch_size=48, monitor_every=25, lr=2e-3, width=16, latent_dim=16)
FAST_TLDR = dict(steps=120, batch_size=40, monitor_every=40, lr=2e-3, width=16, latent_dim=16, score_perturbations=4)


def test_cnn_trained_on_device_matches_its_cpu_copy(four):
    split, dev, cpu, _ = four
    assert module_on(dev.module, DEV_TYPE) and module_on(cpu.module, "cpu")
    assert cpu.meta["test_accuracy"] > 0.9
    x = split.heldout.x
    with torch.no_grad():
        close(dev.logits(x.to(DEV)), cpu.logits(x), CONV_RTOL, "cnn: device vs CPU logits")
    assert float((dev.predict(x) == cpu.predict(x)).float().mean()) >= 0.98


def test_generator_inversion_on_device(four, tmp_path):
    split, dev, cpu, _ = four
    cfg = GeneratorConfig(**FAST_GEN, conditioning="hot+matrix")
    c_dev = GeneratorInversion(dev, cfg).invert(80, seed=0, out=tmp_path / "inv")
    c_cpu = GeneratorInversion(cpu, cfg).invert(80, seed=0)
    assert c_dev.x.device.type == "cpu" and c_dev.y.device.type == "cpu" and c_dev.score.device.type == "cpu"
    assert c_dev.x.shape == (80, 1, 8, 8) and 0 <= float(c_dev.x.min()) and float(c_dev.x.max()) <= 1
    assert torch.equal(torch.bincount(c_dev.y), torch.full((4,), 20))
    rate_dev, rate_cpu = cpu.accuracy(c_dev.x, c_dev.y), cpu.accuracy(c_cpu.x, c_cpu.y)  # judged by the CPU victim
    note("generator: assigned by the CPU victim, device run / CPU run", (rate_dev, rate_cpu))
    assert rate_dev >= 0.9 and rate_cpu >= 0.9 and abs(rate_dev - rate_cpu) <= 0.1
    assert abs(c_dev.info["assigned_fraction"] - rate_dev) <= 2 / 80  # the device's own verdict
    assert float(c_dev.score.min()) > 0 and c_dev.info["mean_confidence"] > 0.7
    # outputs: CPU tensors in the files, the generator reloads on the CPU and still makes its classes
    safetensors_on_cpu(tmp_path / "inv" / "generator.safetensors")
    npz = np.load(tmp_path / "inv" / "samples.npz")
    np.testing.assert_array_equal(npz["x"], c_dev.x.numpy())
    g = load_generator(tmp_path / "inv")
    assert module_on(g, "cpu")
    labels = torch.arange(4).repeat(20)
    assert cpu.accuracy(g.generate(labels, torch.Generator().manual_seed(0)), labels) >= 0.85


def test_generator_resume_on_device_equals_uninterrupted(four, tmp_path, deterministic):
    """The generator's dropout draws from the device's generator: its state is saved and restored with the rest."""
    _, dev, _, _ = four
    cfg = GeneratorConfig(**{**FAST_GEN, "steps": 40, "checkpoint_every": 20, "monitor_every": 10})
    full = GeneratorInversion(dev, cfg).invert(30, seed=3)
    out = tmp_path / "r"
    with patch("netinv.attacks._generator_training.progress_bar", interrupting_bar(30)), pytest.raises(Interrupt):
        GeneratorInversion(dev, cfg).invert(30, seed=3, out=out)
    note("generator state: storage locations", storage_locations(out / ".generator_state.pt"))
    again = GeneratorInversion(dev, cfg).invert(30, seed=3, out=out, resume=True)
    close(again.x, full.x, 1e-4, "generator resume on the device")
    assert [p["loss"] for p in again.info["curve"]] == pytest.approx([p["loss"] for p in full.info["curve"]],
                                                                     rel=1e-4)


def test_tldr_on_device(four):
    split, dev, cpu, _ = four
    cfg = TLDRConfig(**FAST_TLDR)
    att = TLDR(dev, cfg)
    c_dev = att.invert(80, seed=0)
    c_cpu = TLDR(cpu, cfg).invert(80, seed=0)
    for t in (c_dev.x, c_dev.y, c_dev.score, *c_dev.arrays.values()):
        assert t.device.type == "cpu" and torch.isfinite(t.float()).all()
    rate_dev, rate_cpu = cpu.accuracy(c_dev.x, c_dev.y), cpu.accuracy(c_cpu.x, c_cpu.y)
    note("tldr: assigned by the CPU victim, device run / CPU run", (rate_dev, rate_cpu))
    assert rate_dev >= 0.85 and rate_cpu >= 0.85 and abs(rate_dev - rate_cpu) <= 0.1
    for cls in range(4):  # best-ranked first within each class
        s = c_dev.score[c_dev.y == cls]
        assert torch.all(s[:-1] >= s[1:])
    # the attacker-side scores of the same candidates: the same perturbation draws (CPU generator) on both devices
    figs_dev = att.rank_scores(c_cpu.x, c_cpu.y, seed=0)
    figs_cpu = TLDR(cpu, cfg).rank_scores(c_cpu.x, c_cpu.y, seed=0)
    for k in ("confidence", "robustness", "grad_norm"):
        assert figs_dev[k].device.type == "cpu"
        close(figs_dev[k], figs_cpu[k], CONV_RTOL, f"tldr rank_scores {k}", atol_frac=CONV_RTOL)


# ---------------------------------------------------------------------------------------------- 5. apps
def test_adversarial_on_device_matches_cpu(four, tmp_path):
    split, dev, cpu, _ = four
    x = split.heldout.x[:40]
    t = random_targets(cpu, x, seed=0)
    assert float((random_targets(dev, x, seed=0) == t).float().mean()) >= 0.95
    cfg = AdversarialConfig(norm="linf", eps=0.3, pgd_steps=20, gen_steps=150)
    r_dev = compare_adversarial(dev, x, t, cfg, train_x=split.train.x, seed=0, out=tmp_path)
    r_cpu = compare_adversarial(cpu, x, t, cfg, train_x=split.train.x, seed=0)
    for name, r in r_dev.items():
        assert r.x_adv.device.type == "cpu" and r.success.device.type == "cpu"
        d = r.x_adv - x
        assert float(perturbation_norms(d, "linf").max()) <= cfg.eps + 1e-5  # measured independently
        assert 0 <= float(r.x_adv.min()) and float(r.x_adv.max()) <= 1
        verdict = cpu.predict(r.x_adv) == t  # the CPU victim's own verdict on the device's samples
        assert float((verdict == r.success).float().mean()) >= 0.95, name
        s_dev, s_cpu = r.summary()["success_rate"], r_cpu[name].summary()["success_rate"]
        note(f"adversarial {name}: success device / CPU", (s_dev, s_cpu))
        assert abs(s_dev - s_cpu) <= (0.1 if name == "PGD" else 0.2), name
    assert r_dev["PGD"].summary()["success_rate"] >= 0.8
    assert r_dev["generator"].summary()["success_rate"] >= 0.3
    data = json.loads((tmp_path / "adversarial.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["PGD", "generator"]
    assert set(np.load(tmp_path / "adversarial.npz").files) == {"x", "target", "x_adv_PGD", "x_adv_generator",
                                                                       "meta"}


def test_ood_on_device_matches_cpu(four, tmp_path):
    split, dev, cpu, _ = four
    # measured on the CPU over seeds 0-3: garbage-score AUROC 0.93-1.0 (noise), ≥ 0.999 (inverted); accuracy 0.65-0.9
    cfg = OODConfig(epochs=6, gen_steps=20, per_epoch=40, noise_init=40)
    r_dev = garbage_ood(dev, cfg, seed=0, out=tmp_path / "dev", show_progress=False)
    r_cpu = garbage_ood(cpu, cfg, seed=0, show_progress=False)
    assert module_on(r_dev.model.module, DEV_TYPE)  # retrained on the baseline's device
    auroc_dev = {(r["ood_set"], r["score"]): r["auroc"] for r in r_dev.rows}
    auroc_cpu = {(r["ood_set"], r["score"]): r["auroc"] for r in r_cpu.rows}
    note("ood AUROC device", auroc_dev)
    note("ood AUROC cpu", auroc_cpu)
    assert auroc_dev.keys() == auroc_cpu.keys() and len(auroc_dev) == 9
    for key, v in auroc_dev.items():
        if key[1] == "MSP (baseline)":  # the same baseline model on the same sets
            assert v == pytest.approx(auroc_cpu[key], abs=5e-3), key
        elif key[1] == "garbage" and key[0] in ("uniform noise", "inverted intensity"):
            assert v >= 0.9 and auroc_cpu[key] >= 0.9, key
            assert abs(v - auroc_cpu[key]) <= 0.1, key
    assert r_dev.accuracy["baseline"] == pytest.approx(r_cpu.accuracy["baseline"], abs=1 / len(split.heldout) + 1e-9)
    note("ood accuracy device / cpu", (r_dev.accuracy, r_cpu.accuracy))
    assert r_dev.accuracy["garbage_model"] >= 0.5 and r_cpu.accuracy["garbage_model"] >= 0.5
    # outputs: the garbage model's checkpoint loads on the CPU and gives the device model's logits
    assert json.loads((tmp_path / "dev" / "ood.json").read_text())["seed"] == 0
    safetensors_on_cpu(tmp_path / "dev" / "garbage_model" / "model.safetensors")
    again = load_model(tmp_path / "dev" / "garbage_model", device="cpu")
    x = split.heldout.x
    with torch.no_grad():
        close(r_dev.model.logits(x.to(DEV)), again.logits(x), CONV_RTOL, "ood: garbage model vs its CPU checkpoint")


# ---------------------------------------------------------------------------------------------- 6. torch.export
B = torch.export.Dim("batch")


def _flat_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.ReLU(), nn.Linear(32, 1, bias=False)).eval()


def _export(net: nn.Module, path: Path, batch: int = 4, dynamic: bool = True, device: str = "cpu") -> Path:
    ep = torch.export.export(net, (torch.rand(batch, 1, 8, 8, device=device),),
                             dynamic_shapes=({0: B},) if dynamic else None)
    torch.export.save(ep, path)
    return path


@pytest.mark.parametrize("dynamic", [True, False])
def test_export_archive_on_device_runs_kkt_like_cpu(tmp_path, dynamic):
    f = _export(_flat_mlp(), tmp_path / "m.pt2", dynamic=dynamic)
    dev, cpu = load_model(f, device=DEV), load_model(f, device="cpu")
    assert module_on(dev.module, DEV_TYPE) and dev.num_outputs == 1
    x = torch.rand(9, 1, 8, 8)
    with torch.no_grad():
        close(dev.logits(x.to(DEV)), cpu.logits(x), 1e-5, "export: logits")
    cfg = KKTConfig(iterations=30, show_progress=False)
    a, b = KKTReconstruction(dev, cfg).invert(12, seed=1), KKTReconstruction(cpu, cfg).invert(12, seed=1)
    assert a.x.device.type == "cpu" and a.info["homogeneity"]["homogeneous"]
    assert rel(a.info["criterion"], b.info["criterion"]) < 1e-3
    close(a.score, b.score, 1e-2, "export kkt: scores", atol_frac=2e-3)


@pytest.mark.parametrize("baked", [False, True])
def test_export_features_on_device_match_cpu(tmp_path, baked, fixed_batch_cnn):
    torch.manual_seed(0)
    net = fixed_batch_cnn().eval() if baked else nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 32), nn.ReLU(),
        nn.Linear(32, 10)).eval()
    f = _export(net, tmp_path / "m.pt2", batch=3, dynamic=False)
    dev, cpu = load_model(f, device=DEV), load_model(f, device="cpu")
    assert dev.module.b == cpu.module.b == (3 if baked else None)
    fd, fc = Features(dev), Features(cpu)
    assert fd.layer == fc.layer == "linear_1:input"
    for n in (1, 3, 7):  # short, exact and padded-chunk batches
        x = torch.rand(n, 1, 8, 8)
        feats, logits = fd(x.to(DEV))
        assert on_dev(feats) and feats.shape == (n, 32)
        ref_f, ref_z = fc(x)
        close(feats, ref_f, CONV_RTOL, f"export features (n={n})")
        close(logits, ref_z, CONV_RTOL, f"export feature logits (n={n})")
        with torch.no_grad():
            close(logits, net(x), CONV_RTOL, f"export feature logits vs the module (n={n})")


@pytest.mark.parametrize("dynamic", [True, False])
def test_archive_exported_from_a_device_module_loads_on_cpu_and_device(tmp_path, dynamic):
    """A user who trains and exports on a GPU hands netinv an archive whose weights live on the GPU. Static batch:
    the loader probes whether the graph runs on other batch sizes, and that probe must run where the weights are."""
    net = _flat_mlp().to(DEV)
    f = _export(net, tmp_path / "m.pt2", dynamic=dynamic, device=DEV)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        ref = net(x.to(DEV)).cpu()
    for where in ("cpu", DEV):
        lm = load_model(f, device=where)
        assert module_on(lm.module, torch.device(where).type), where
        with torch.no_grad():
            close(lm.logits(x.to(where)), ref, 1e-5, f"export from the device, loaded on {where}")


def test_archive_with_tensor_constants_runs_on_device(tmp_path):
    """A graph that normalises its input with tensors created in ``forward`` keeps them as lifted graph constants
    (plain tensor attributes, not parameters or buffers), which ``module.to(device)`` does not move."""

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - torch.tensor([0.25])) / torch.tensor([0.5])
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    net = Normalised().eval()
    f = _export(net, tmp_path / "m.pt2")
    lm = load_model(f, device=DEV)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        close(lm.logits(x.to(DEV)), net(x), 1e-5, "export with tensor constants on the device")


# ---------------------------------------------------------------------------------------------- 7. BNN
def test_bnn_trained_on_device_evaluates_exactly_like_its_cpu_copy(tmp_path):
    split = make_task(load_data("digits"), "all", n_per_class=30, heldout_per_class=20, seed=0)
    cfg = TrainConfig(optimizer="adam", loss="ce", batch_size=64, lr=2e-2, epochs=10, log_every=5)
    model = train(split, "bnn:32", cfg, out=tmp_path / "bnn", device=DEV, show_progress=False)
    assert module_on(model.module, DEV_TYPE) and model.meta["test_accuracy"] > 0.5  # chance: 0.1
    cpu = load_model(tmp_path / "bnn", device="cpu")
    x = torch.cat([split.heldout.x, torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        z_dev = model.logits(x.to(DEV)).cpu()
        z_cpu = cpu.logits(x)
    assert torch.equal(z_dev, z_cpu)  # an integer network: no rounding anywhere
    assert torch.equal(model.predict(x), cpu.predict(x))
    assert torch.equal(z_dev / model.module.scale, (z_dev / model.module.scale * 256).round() / 256)
    assert cpu.meta["test_accuracy"] == model.meta["test_accuracy"]
    if importlib.util.find_spec("pysat") is not None:  # the CNF's source: the folded integer net of the device model
        from netinv.sat import from_model

        p_dev, p_cpu = from_model(model), from_model(cpu)
        for u, v in zip(p_dev.weights + p_dev.thresholds, p_cpu.weights + p_cpu.thresholds, strict=True):
            assert np.array_equal(u, v)
        assert np.array_equal(p_dev.out_weight, p_cpu.out_weight) and np.array_equal(p_dev.out_bias, p_cpu.out_bias)
        assert np.array_equal(p_dev.predict(p_dev.binarize(x)), cpu.predict(x).numpy())


# ---------------------------------------------------------------------------------------------- 8. CLI
def _cli_app():
    """``netinv.cli.app``; where python-sat is missing (its import fails), the same commands registered the way
    cli/app.py registers them."""
    try:
        from netinv.cli.app import app

        return app
    except ModuleNotFoundError as e:
        note("netinv.cli.app does not import", repr(e))
        import typer

        from netinv.cli import audit as audit_cmd
        from netinv.cli import evaluate as evaluate_cmd
        from netinv.cli import reconstruct as reconstruct_cmd

        app = typer.Typer(name="netinv", no_args_is_help=True, add_completion=False)
        app.command("audit")(audit_cmd.audit)
        app.command("evaluate")(evaluate_cmd.evaluate)
        app.add_typer(reconstruct_cmd.app, name="reconstruct")
        return app


def test_cli_reconstruct_evaluate_audit_on_device(mlp_dev, mlp_pair, tmp_path):
    _, ckpt = mlp_dev
    dev, _ = mlp_pair
    app, runner = _cli_app(), CliRunner()
    out = tmp_path / "kkt"
    r = runner.invoke(app, ["reconstruct", "kkt", str(ckpt), "--out", str(out), "--iterations", "50", "--seed", "0",
                            "--device", DEV])
    assert r.exit_code == 0, (r.output, r.exception)
    assert (out / "candidates.npz").is_file() and not (out / ".kkt_state.pt").exists()
    run = json.loads((out / "run.json").read_text())
    note("run.json keys", sorted(run))
    note("run.json environment", run["environment"])
    assert run["seed"] == 0 and run["config"]["iterations"] == 50 and run["model"]["path"] == str(ckpt)
    # what run.json records about the hardware: the GPU's name whenever one is present (not the --device used)
    assert run["environment"]["cuda"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    api = KKTReconstruction(dev, KKTConfig(iterations=50, show_progress=False)).invert(seed=0)
    npz = np.load(out / "candidates.npz")
    close(torch.from_numpy(npz["x"]), api.x, 0.0, "cli kkt vs the API on the device", atol_frac=1e-5)
    assert run["criterion"] == pytest.approx(api.info["criterion"], rel=1e-5)

    shutil.copytree(out, tmp_path / "kkt_cpu")
    r = runner.invoke(app, ["evaluate", str(out), "--device", DEV])
    assert r.exit_code == 0, (r.output, r.exception)
    r = runner.invoke(app, ["evaluate", str(tmp_path / "kkt_cpu"), "--device", "cpu"])
    assert r.exit_code == 0, (r.output, r.exception)
    e_dev = json.loads((out / "evaluation.json").read_text())
    e_cpu = json.loads((tmp_path / "kkt_cpu" / "evaluation.json").read_text())
    assert e_dev["summary"] == e_cpu["summary"]
    close(torch.tensor(e_dev["train_margin"]), torch.tensor(e_cpu["train_margin"]), 1e-4, "cli evaluate margins")
    assert (out / "best_pairs.png").is_file() and (out / "ssim_vs_margin.png").is_file()

    r = runner.invoke(app, ["audit", str(ckpt), "--out", str(tmp_path / "audit"), "--iterations", "30",
                            "--device", DEV])
    assert r.exit_code == 0, (r.output, r.exception)
    for f in ("report.html", "evaluation.json", "kkt/candidates.npz", "kkt/run.json"):
        assert (tmp_path / "audit" / f).is_file(), f


# ---------------------------------------------------------------------------------------------- 9. files
_CPU_ONLY_SCRIPT = r"""
import json, sys
import torch
torch.set_num_threads(1)
assert not torch.cuda.is_available()
from netinv._utils.checkpoint import load_state
from netinv.attacks.generator import load_generator
from netinv.attacks.kkt import KKTConfig, KKTReconstruction
from netinv.data import load_data, make_task
from netinv.models.loading import load_model
from netinv.train import TrainConfig, train

a = json.loads(sys.argv[1])
out = {}
lm = load_model(a["ckpt"], device="cpu")
x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
with torch.no_grad():
    out["logits"] = lm.logits(x).tolist()
out["train_state_epoch"] = int(load_state(a["train_state"])["epoch"])
out["kkt_state_iteration"] = int(load_state(a["kkt_state"])["iteration"])
g = load_generator(a["gen_dir"])
out["generated"] = list(g.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0)).shape)
split = make_task(load_data("digits"), "parity", n_per_class=15, heldout_per_class=40, seed=0)
m = train(split, "mlp:32", TrainConfig(**a["train_cfg"]), out=a["train_dir"], resume=True, device="cpu",
          show_progress=False)
out["resumed_train_epochs"] = m.meta["epochs_run"]
c = KKTReconstruction(lm, KKTConfig(**a["kkt_cfg"])).invert(20, seed=2, out=a["kkt_dir"], resume=True)
out["resumed_kkt_criterion"] = c.info["criterion"]
print("RESULT" + json.dumps(out))
"""


def _cpu_only(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python that sees no GPU (``CUDA_VISIBLE_DEVICES=""``), netinv importable."""
    import netinv

    src = str(Path(netinv.__file__).resolve().parents[1])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "NETINV_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300)


_CPU_ONLY_EXPORT_SCRIPT = r"""
import json, sys
import torch
assert not torch.cuda.is_available()
from netinv import ModelError
from netinv.models.loading import load_model
try:
    lm = load_model(sys.argv[1], device="cpu")
except ModelError as e:
    print("REFUSED" + json.dumps([e.problem, e.fix]))
    raise SystemExit(0)
x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    print("RESULT" + json.dumps(lm.logits(x).tolist()))
"""


def test_archive_exported_on_device_loads_in_a_cpu_only_process(tmp_path):
    """Exported on a GPU box, audited on a laptop: the archive's tensors were saved on the GPU. ``torch.export.load``
    has no ``map_location``, so netinv either loads the archive onto the CPU anyway, or refuses it in one line that
    names the cause (tensors saved on a GPU) rather than a generic deserialisation error."""
    net = _flat_mlp().to(DEV)
    f = _export(net, tmp_path / "m.pt2", dynamic=True, device=DEV)
    p = _cpu_only(_CPU_ONLY_EXPORT_SCRIPT, str(f))
    assert p.returncode == 0, p.stderr[-3000:]
    if "REFUSED" in p.stdout:
        problem, fix = json.loads(p.stdout.split("REFUSED", 1)[1])
        note("device-exported archive in a CPU-only process: refused", (problem, fix))
        assert any(w in f"{problem} {fix}".lower() for w in ("cuda", "gpu")), (problem, fix)
        return
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        close(torch.tensor(json.loads(p.stdout.split("RESULT", 1)[1])), net(x.to(DEV)), 1e-5,
              "device-exported archive in a CPU-only process")


def test_files_written_by_a_device_run_load_in_a_cpu_only_process(parity, mlp_dev, tmp_path, monkeypatch):
    model, ckpt = mlp_dev
    # the checkpoint directory: safetensors, JSON and .npy only, no pickled tensors that remember a device
    assert sorted(p.name for p in ckpt.iterdir()) == ["mean.npy", "meta.json", "model.safetensors"]
    state = safetensors_on_cpu(ckpt / "model.safetensors")
    assert state.keys() == model.module.state_dict().keys()
    assert json.loads((ckpt / "meta.json").read_text())["mean_subtracted"] is True

    # resumable states left by interrupted device runs
    train_cfg = dict(optimizer="adam", lr=1e-2, epochs=20, batch_size=10, checkpoint_every=10, log_every=10,
                     target_loss=0.0)
    real = _interrupt_train_at(monkeypatch, 10)
    with pytest.raises(Interrupt):
        train(parity, "mlp:32", TrainConfig(**train_cfg), out=tmp_path / "train", device=DEV, show_progress=False)
    monkeypatch.setattr(TRAIN_MODULE, "save_state", real)
    kkt_cfg = dict(iterations=30, checkpoint_every=10, show_progress=False)
    with patch.object(kkt_mod, "progress_bar", interrupting_bar(15)), pytest.raises(Interrupt):
        KKTReconstruction(model, KKTConfig(**kkt_cfg)).invert(20, seed=2, out=tmp_path / "kkt")
    GeneratorInversion(model, GeneratorConfig(**{**FAST_GEN, "steps": 5})).invert(8, seed=0, out=tmp_path / "gen")
    safetensors_on_cpu(tmp_path / "gen" / "generator.safetensors")
    for f in (tmp_path / "train" / ".train_state.pt", tmp_path / "kkt" / ".kkt_state.pt"):
        note(f"{f.name}: storage locations", storage_locations(f))

    args = {"ckpt": str(ckpt), "train_state": str(tmp_path / "train" / ".train_state.pt"),
            "kkt_state": str(tmp_path / "kkt" / ".kkt_state.pt"), "gen_dir": str(tmp_path / "gen"),
            "train_dir": str(tmp_path / "train"), "train_cfg": train_cfg, "kkt_dir": str(tmp_path / "kkt"),
            "kkt_cfg": kkt_cfg}
    p = _cpu_only(_CPU_ONLY_SCRIPT, json.dumps(args))
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.split("RESULT", 1)[1])
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        close(torch.tensor(res["logits"]), model.logits(x.to(DEV)), 1e-4, "CPU-only process: checkpoint logits")
    assert res["train_state_epoch"] == 10 and res["kkt_state_iteration"] == 10
    assert res["generated"] == [2, 1, 8, 8]
    assert res["resumed_train_epochs"] == 20 and np.isfinite(res["resumed_kkt_criterion"])
