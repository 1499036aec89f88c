"""Training victims: full-batch gradient descent with logistic loss to zero training error (KKT victims, Haim et
al. 2022), or minibatch SGD/Adam with cross-entropy and weight decay (CNNs, BNNs). Resumable from the last state."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ._errors import ConfigError, check_finite_loss
from ._utils.checkpoint import finished_run, resume_state, save_state
from ._utils.device import resolve_device
from ._utils.progress import progress_bar
from ._utils.runinfo import config_dict, environment
from ._utils.seed import cuda_rng_state, keeps_global_rng, seed_everything, set_cuda_rng_state
from .data import Dataset, TaskSplit, load_data, make_task
from .models.checkpoint import FORMAT, save_checkpoint
from .models.loaded import LoadedModel, predicted_class
from .models.registry import parse_arch, spec_to_dict


@dataclass(frozen=True)
class TrainConfig:
    """How a victim is trained. Defaults: a plain starting point (lr = Haim et al.'s full-batch GD step). The KKT
    reference victim (``netinv.demo.REFERENCE_TRAIN``, used by ``benchmarks/kkt_digits.py``) overrides them:
    lr 0.01 -> 3.0, target_loss 1e-3 -> 1e-5, mean_subtract False -> True (and log_every 50 -> 100)."""

    loss: Literal["auto", "logistic", "ce"] = "auto"  # auto: logistic for one output, cross-entropy otherwise
    optimizer: Literal["gd", "sgd", "adam"] = "gd"  # gd = full-batch gradient descent (Haim et al.)
    lr: float = 0.01  # Haim et al.'s full-batch GD step
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 20_000  # an upper bound: training stops at target_loss with zero training error
    batch_size: int | None = None  # None = full batch
    target_loss: float = 1e-3  # stop once the mean training loss is below this and training error is 0
    mean_subtract: bool = False  # subtract the training-set mean image (Haim et al.); recorded in the checkpoint
    seed: int = 0
    checkpoint_every: int = 1000  # epochs between resumable states
    log_every: int = 50  # epochs between loss-curve points; the target_loss stop is checked at these epochs

    def validate(self) -> None:
        """One ConfigError naming the settings no training can use (before anything is loaded or written).

        Raises:
            ConfigError: epochs, batch size or intervals below 1, a step size that is not positive, negative weight
                decay or target loss, momentum outside [0, 1).
        """
        bad = [f"{k}={v}" for k, v in (("epochs", self.epochs), ("checkpoint_every", self.checkpoint_every),
                                        ("log_every", self.log_every)) if v < 1]
        bad += [f"batch_size={self.batch_size}"] if self.batch_size is not None and self.batch_size < 1 else []
        bad += [f"lr={self.lr}"] if not (math.isfinite(self.lr) and self.lr > 0) else []
        bad += [f"{k}={v}" for k, v in (("weight_decay", self.weight_decay), ("target_loss", self.target_loss))
                if not (math.isfinite(v) and v >= 0)]
        bad += [f"momentum={self.momentum}"] if not 0 <= self.momentum < 1 else []
        if bad:
            raise ConfigError(f"{', '.join(bad)}: epochs, batch size and intervals must be >= 1, lr > 0, weight decay "
                              "and target loss >= 0, momentum in [0, 1)",
                              "give e.g. --epochs 1000 --lr 0.01 (see netinv train --help)")


def _loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "logistic":  # y in {0,1} -> ±1; log(1 + exp(-y f))
        return F.softplus(-(2 * y.to(logits.dtype) - 1) * logits[:, 0]).mean()
    return F.cross_entropy(logits, y)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pred = predicted_class(logits)
    return (pred == y).sum()


@keeps_global_rng
def train(data: TaskSplit | Dataset | str = "digits", arch: str | Any = "mlp:1000,1000",
          config: TrainConfig = TrainConfig(), *, task: str | None = None, n_per_class: int | None = None,
          heldout_per_class: int | None = None, root: str | Path | None = None, path: str | Path | None = None,
          download: bool = False, check_md5: bool = False, out: str | Path | None = None, resume: bool = False,
          device: str = "auto", show_progress: bool | None = None, **arch_options: Any) -> LoadedModel:
    """Train a classifier on ``split.train`` and (with ``out``) write a checkpoint directory.

    One call does what ``netinv train`` does: given a source name (or a :class:`Dataset`) instead of a split, the
    data are loaded with :func:`~netinv.data.load_data` (``root``, ``path``, ``download``, ``check_md5``) and split
    with :func:`~netinv.data.make_task` (``task``, ``n_per_class``, ``heldout_per_class``, seeded by
    ``config.seed``).

    Args:
        data: a :class:`TaskSplit` of members (trained on) and non-members (held out; their accuracy is recorded as
            test accuracy), or a source name / :class:`Dataset` to load and split first.
        arch: an architecture string (``mlp:1000,1000``, ``cnn:32,64``, ``bnn:100``) or a spec object.
        config: see :class:`TrainConfig`.
        out: checkpoint directory; a resumable state is kept in ``out/.train_state.pt`` while training.
        resume: continue from ``out/.train_state.pt`` (same result as an uninterrupted run); on a finished
            checkpoint of the same settings, return it without training again (other settings are refused).
        device: ``auto``, ``cpu`` or ``cuda``.
        arch_options: architecture fields (``bias="none"``, ``init_scale=1e-3`` …).

    Returns:
        The trained model (eval mode) with its metadata.

    Example:
        >>> from netinv.data import load_data, make_task
        >>> split = make_task(load_data("digits"), "parity", n_per_class=10, heldout_per_class=10)
        >>> m = train(split, "mlp:32", TrainConfig(lr=0.5, epochs=2000), show_progress=False)
        >>> m.accuracy(split.train.x, split.train.y)
        1.0
        >>> m = train("digits", "mlp:32", TrainConfig(lr=0.5, epochs=2000), task="parity", n_per_class=10,
        ...           heldout_per_class=10, show_progress=False)  # the same split and model in one call
        >>> m.accuracy(split.train.x, split.train.y)
        1.0
    """
    config.validate()
    split = _as_split(data, task=task, n_per_class=n_per_class, heldout_per_class=heldout_per_class, root=root,
                      path=path, download=download, check_md5=check_md5, seed=config.seed)
    dev = resolve_device(device)
    seed_everything(config.seed)
    tr = split.train
    num_outputs = 1 if tr.num_classes == 2 and config.loss != "ce" else tr.num_classes
    loss_kind = config.loss if config.loss != "auto" else ("logistic" if num_outputs == 1 else "ce")
    if loss_kind == "logistic" and num_outputs != 1:
        raise ConfigError(f"logistic loss needs a binary task, this one has {tr.num_classes} classes",
                          "use --loss ce or a binary --task such as parity")
    spec = arch if not isinstance(arch, str) else parse_arch(arch, tr.input_shape, num_outputs, **arch_options)
    if tuple(spec.input_shape) != tuple(tr.input_shape):
        raise ConfigError(f"architecture expects inputs {tuple(spec.input_shape)}, data has {tr.input_shape}",
                          "build the architecture for this data set")
    module = spec.build().to(dev)
    mean = tr.x.mean(0) if config.mean_subtract else None
    x = (tr.x - mean if mean is not None else tr.x).to(dev)
    y = tr.y.to(dev)
    params = list(module.parameters())
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    bs = len(tr) if config.batch_size is None or config.optimizer == "gd" else config.batch_size
    gen = torch.Generator().manual_seed(config.seed)
    curve: list[dict[str, float]] = []
    start, elapsed = 0, 0.0
    state_path = Path(out) / ".train_state.pt" if out is not None else None
    settings = {"config": config_dict(config), "arch": spec_to_dict(spec), "task": split.task,
                "train_indices": [int(i) for i in tr.indices]}
    if resume and finished_run(out, ".train_state.pt", "model.safetensors", settings, record_file="meta.json",
                               view=_recorded_settings):
        from .models.loading import load_model

        return load_model(out, device=str(dev))  # nothing left to continue: the finished checkpoint, not a rerun
    st = resume_state(out, ".train_state.pt", "meta.json", settings, resume)
    if st is not None:
        module.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        set_cuda_rng_state(st.get("cuda_rng"), dev)  # dropout on a GPU draws from the device's generator
        start, curve, elapsed = int(st["epoch"]), list(st["curve"]), float(st["elapsed"])

    t0 = time.perf_counter() - elapsed
    loss_v, acc = float("nan"), 0.0
    epoch = start
    with progress_bar(config.epochs, "train", completed=start, show=show_progress) as bar:
        for epoch in range(start, config.epochs):
            module.train()
            order = torch.randperm(len(tr), generator=gen).to(dev) if bs < len(tr) else None
            tot, correct = torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.long)
            for i in range(0, len(tr), bs):
                idx = order[i:i + bs] if order is not None else slice(None)
                logits = module(x[idx])
                loss = _loss(logits, y[idx], loss_kind)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.detach() * logits.shape[0]
                correct += _correct(logits.detach(), y[idx])
            done = epoch + 1
            if done % config.log_every == 0 or done == config.epochs:
                loss_v, acc = float(tot) / len(tr), float(correct) / len(tr)
                _check_finite_loss(loss_v, done, config)
                curve.append({"epoch": done, "loss": loss_v, "train_acc": acc})
                bar.update(config.log_every, loss=loss_v, acc=acc)
                if acc == 1.0 and loss_v < config.target_loss:
                    break
            if state_path is not None and done % config.checkpoint_every == 0:
                _check_finite_loss(float(tot), done, config)  # never save a diverged state to resume from
                state = {"settings": settings, "model": module.state_dict(), "optim": opt.state_dict(), "epoch": done,
                         "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "curve": curve,
                         "elapsed": time.perf_counter() - t0}
                if dev.type == "cuda":
                    state["cuda_rng"] = cuda_rng_state(dev)
                save_state(state_path, state)
    module.eval()
    model = LoadedModel(module, tuple(spec.input_shape), num_outputs, (0.0, 1.0),
                        mean.to(dev) if mean is not None else None, list(tr.classes))
    train_acc = model.accuracy(tr.x, tr.y)
    test_acc = model.accuracy(split.heldout.x, split.heldout.y)
    with torch.no_grad():
        final_logits = model.logits(tr.x.to(dev))
        final_loss = float(_loss(final_logits, tr.y.to(dev), loss_kind))
    if len(tr) and not bool(final_logits.any()):  # every ReLU dead: a constant network, saved as "trained"
        warnings.warn(f"the trained network outputs 0 on every training input (train accuracy {train_acc:.2f}, "
                      "loss stuck at its starting value): its ReLUs died; lower --lr or change --init-scale",
                      UserWarning, stacklevel=2)
    model.meta = {  # what the checkpoint's meta.json holds, so the returned model equals the one loaded from it
        "format": FORMAT, "arch": spec_to_dict(spec), "mean_subtracted": mean is not None,
        "classes": list(tr.classes), "input_range": [0.0, 1.0], "loss": loss_kind, "seed": config.seed,
        "train_config": config_dict(config), "epochs_run": epoch + 1 if curve else start,
        "train_accuracy": train_acc, "test_accuracy": test_acc, "final_loss": final_loss,
        "wall_time_s": time.perf_counter() - t0, "loss_curve": curve, "environment": environment(model.device),
        "data": {"load_args": tr.source.get("load_args"), "task": split.task,
                 "train_indices": tr.indices, "heldout_indices": split.heldout.indices},
    }
    if out is not None:
        model.source = {"format": "netinv", "path": str(Path(out).resolve())}
        save_checkpoint(out, module.cpu(), spec, model.meta, mean)
        module.to(dev)
        if state_path is not None:
            state_path.unlink(missing_ok=True)
    return model


def _recorded_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's meta.json seen as the settings ``train`` checks a resume against."""
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {"config": meta.get("train_config"), "arch": meta.get("arch"), "task": data.get("task"),
            "train_indices": data.get("train_indices")}


def _as_split(data: TaskSplit | Dataset | str, *, task: str | None, n_per_class: int | None,
              heldout_per_class: int | None, root: str | Path | None, path: str | Path | None, download: bool,
              check_md5: bool, seed: int) -> TaskSplit:
    if isinstance(data, TaskSplit):
        given = {k: v for k, v in {"task": task, "n_per_class": n_per_class, "heldout_per_class": heldout_per_class,
                                   "root": root, "path": path, "download": download or None,
                                   "check_md5": check_md5 or None}.items() if v is not None}
        if given:
            raise ConfigError(f"{', '.join(given)} apply to a data source, but a TaskSplit was given",
                              "pass the source name (e.g. train('digits', task='parity', ...)) or drop them")
        return data
    if isinstance(data, str):
        data = load_data(data, root=root, path=path, download=download, check_md5=check_md5)
    elif root is not None or path is not None or download or check_md5:
        raise ConfigError("root, path, download and check_md5 apply to a source name, but a Dataset was given",
                          "drop them, or pass the source name")
    if not isinstance(data, Dataset):
        raise ConfigError(f"train() takes a TaskSplit, a Dataset or a source name, not {type(data).__name__}",
                          "build one with netinv.load_data / netinv.make_task, or pass e.g. 'digits'")
    return make_task(data, task, n_per_class=n_per_class, heldout_per_class=heldout_per_class, seed=seed)


def _check_finite_loss(loss: float, epoch: int, config: TrainConfig) -> None:
    check_finite_loss(loss, "training", "lower --lr (e.g. a third of it), or use --optimizer adam", at=f"epoch {epoch}",
                      setting=f"{config.optimizer} lr {config.lr:g}")
