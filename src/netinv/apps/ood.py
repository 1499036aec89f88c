"""Out-of-distribution detection with a garbage class filled by network inversion (Suhail, Afroz & Sethi 2025,
"Network Inversion for Uncertainty-Aware Out-of-Distribution Detection", arXiv 2505.23448).

An n-class task becomes an (n+1)-class one. The garbage class starts with random Gaussian noise; after every
training epoch a conditioned generator (``attacks.generator``, warm-started across epochs) inverts the current
classifier for all n+1 classes, and its samples join the garbage class for the next epoch; training uses a
class-weighted cross-entropy against the growing imbalance (paper). At test time an input is scored by

- ``garbage``: the garbage-class probability (paper: rejected inputs are those classified as garbage);
- ``uncertainty``: 1 − max over the n in-distribution classes of the (n+1)-way softmax (our reading of the paper's
  "confidence scores associated with each prediction": an input is certain only when one real class holds the
  mass, so mass moved to the garbage class raises it);

against the maximum-softmax-probability (MSP) baseline of the original n-class classifier (Hendrycks & Gimpel
2017). The paper specifies neither the amount of noise, the samples per epoch, nor the inversion's settings: our
defaults are measured in ``benchmarks/invert_digits.py``. Metrics: ``metrics.functional.ood_metrics``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._errors import ConfigError, check_finite_loss
from .._utils.checkpoint import (
    atomic_write_bytes,
    resume_state,
    save_state,
    write_json,
)
from .._utils.device import resolve_device
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict, environment
from .._utils.seed import keeps_global_rng, seed_everything
from ..attacks.generator import GeneratorConfig, GeneratorInversion
from ..data import TaskSplit, load_data, parse_task, split_from_record
from ..metrics.functional import ood_metrics
from ..models.checkpoint import save_checkpoint
from ..models.loaded import LoadedModel
from ..models.registry import parse_arch, spec_from_dict, spec_to_dict

__all__ = ["OODConfig", "OODResult", "SCORES", "default_ood_sets", "evaluate_ood", "garbage_class_training",
           "garbage_ood", "msp", "ood_scores", "score_sets"]

STATE = ".ood_state.pt"


@dataclass(frozen=True)
class OODConfig:
    """Garbage-class retraining settings (paper: none given beyond the scheme; ours = measured)."""

    epochs: int = 15  # ours, measured
    lr: float = 1e-3  # ours (Adam), the digits CNN recipe
    batch_size: int = 64  # ours
    weight_decay: float = 0.0  # ours
    weighted_ce: bool = True  # paper: weighted cross-entropy against the garbage-class imbalance
    noise_init: int | None = None  # initial Gaussian-noise garbage images; None: the mean class size (ours)
    noise_std: float = 0.25  # ours: N(mid-range, (noise_std·range)²), clipped to the input range
    per_epoch: int | None = None  # inverted samples joining the garbage class per epoch; None: mean class size / 2
    gen_steps: int = 100  # ours: generator steps per epoch (the generator is warm-started across epochs)
    conditioning: str = "vector+matrix"  # ours, measured: soft targets beat one-hot ones here (docs/generator.md)
    temperature: float = 1.0  # paper's soft vector softmax(v): ambiguous samples make useful garbage
    checkpoint_every: int = 1  # epochs between resumable states (with out=...)


def _spec_for(arch: Any, input_shape: tuple[int, ...], num_outputs: int) -> Any:
    if isinstance(arch, str):
        return parse_arch(arch, input_shape, num_outputs)
    return dataclasses.replace(arch, num_outputs=num_outputs)


@keeps_global_rng
def garbage_class_training(split: TaskSplit, arch: Any, config: OODConfig = OODConfig(), *, seed: int = 0,
                           input_range: tuple[float, float] = (0.0, 1.0), device: str = "auto",
                           out: str | Path | None = None, resume: bool = False,
                           show_progress: bool | None = None) -> LoadedModel:
    """Train an (n+1)-class classifier whose last class is the garbage class, filled epoch by epoch by inversion.

    Args:
        split: the in-distribution task (its ``train`` set is used).
        arch: architecture string (``cnn:32,64``) or spec of the n-class model; it is rebuilt with n+1 outputs.
        config: :class:`OODConfig`.
        seed: seeds initialisation, noise, inversion and batches (recorded in ``meta``).
        input_range: the data range (noise and generated samples are kept in it).
        device: ``auto``, ``cpu`` or ``cuda``.
        out: directory for the resumable state (``.ood_state.pt``) while training.
        resume: continue from ``out``'s state.

    Returns:
        The trained model (eval mode), classes = the task's + ``["garbage"]``, ``meta['ood_curve']`` per epoch.
    """
    dev = resolve_device(device)
    seed_everything(seed)
    tr = split.train
    n = tr.num_classes
    lo, hi = map(float, input_range)
    spec = _spec_for(arch, tr.input_shape, n + 1)
    module = spec.build().to(dev)
    lm = LoadedModel(module, tuple(tr.input_shape), n + 1, (lo, hi), None, [*tr.classes, "garbage"])
    mean_size = len(tr) // n
    n_noise = config.noise_init if config.noise_init is not None else mean_size
    per_epoch = config.per_epoch if config.per_epoch is not None else max(mean_size // 2, n + 1)
    gen = torch.Generator().manual_seed(seed)
    noise = (lo + hi) / 2 + config.noise_std * (hi - lo) * torch.randn(n_noise, *tr.input_shape, generator=gen)
    pool = noise.clamp(lo, hi)  # (P, *shape) garbage-class inputs
    opt = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    inverter = GeneratorInversion(lm, GeneratorConfig(conditioning=config.conditioning, schedule="constant",
                                                      temperature=config.temperature,
                                                      steps=max(config.gen_steps * config.epochs, 1)))
    inverter.setup(seed)
    curve: list[dict[str, float]] = []
    start, elapsed = 0, 0.0
    state_path = Path(out) / STATE if out is not None else None
    settings = {"config": config_dict(config), "seed": seed, "arch": spec_to_dict(spec), "input_range": [lo, hi],
                "members": len(tr)}
    st = resume_state(out, STATE, "ood.json", settings, resume)
    if st is not None:
        module.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        inverter.load_state_dict(st["inverter"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        pool, start, curve, elapsed = st["pool"], int(st["epoch"]), list(st["curve"]), float(st["elapsed"])
    t0 = time.perf_counter() - elapsed
    with progress_bar(config.epochs, "garbage-class training", completed=start, show=show_progress) as bar:
        for epoch in range(start, config.epochs):
            x = torch.cat([tr.x, pool])
            y = torch.cat([tr.y, torch.full((len(pool),), n, dtype=torch.long)])
            counts = torch.bincount(y, minlength=n + 1).float()
            weight = (len(y) / ((n + 1) * counts.clamp_min(1))).to(dev) if config.weighted_ce else None
            module.train()
            order = torch.randperm(len(y), generator=gen)
            tot = 0.0
            for i in range(0, len(y), config.batch_size):
                idx = order[i:i + config.batch_size]
                loss = F.cross_entropy(module(x[idx].to(dev)), y[idx].to(dev), weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(idx)
            check_finite_loss(tot, "garbage-class training", "lower lr in the --config file (e.g. a tenth of it)",
                              at=f"epoch {epoch + 1}", setting=f"lr {config.lr:g}")  # no NaN weights go on or saved
            module.eval()
            inverter.fit(config.gen_steps)  # invert the current classifier for all n+1 classes
            cands = inverter.sample(per_epoch, seed=seed * 10_000 + epoch + 1)
            pool = torch.cat([pool, cands.x.clamp(lo, hi)])
            curve.append({"epoch": epoch + 1, "loss": tot / len(y), "garbage_pool": len(pool),
                          "inverted_assigned": cands.info["assigned_fraction"],
                          "time_s": time.perf_counter() - t0})
            bar.update(1, loss=tot / len(y), pool=len(pool))
            if state_path is not None and (epoch + 1) % config.checkpoint_every == 0:
                save_state(state_path, {"settings": settings, "model": module.state_dict(), "opt": opt.state_dict(),
                                        "inverter": inverter.state_dict(), "gen": gen.get_state(),
                                        "torch_rng": torch.get_rng_state(), "pool": pool, "epoch": epoch + 1,
                                        "curve": curve, "elapsed": time.perf_counter() - t0})
    inverter.features.close()
    module.eval()
    lm.meta = {"arch": spec_to_dict(spec), "classes": lm.classes, "input_range": [lo, hi], "seed": seed,
               "ood_config": config_dict(config), "ood_curve": curve, "wall_time_s": time.perf_counter() - t0,
               "garbage_class": n,
               "data": {"load_args": tr.source.get("load_args"), "task": split.task, "train_indices": tr.indices,
                        "heldout_indices": split.heldout.indices}}
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return lm


@torch.no_grad()
def msp(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (higher = in-distribution); binary one-logit models: max(σ, 1 − σ)."""
    z = model.logits(x.to(model.device)).cpu()
    if z.shape[1] == 1:
        p = torch.sigmoid(z[:, 0])
        return torch.maximum(p, 1 - p)
    return torch.softmax(z, 1).max(1).values


@torch.no_grad()
def ood_scores(garbage_model: LoadedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``garbage`` = p(garbage) and ``uncertainty`` = 1 − max_{k<n} p_k of an (n+1)-class model (higher = OOD)."""
    p = torch.softmax(garbage_model.logits(x.to(garbage_model.device)).cpu(), 1)  # (N, n+1)
    return {"garbage": p[:, -1], "uncertainty": 1 - p[:, :-1].max(1).values, "predicted": p.argmax(1)}


def default_ood_sets(split: TaskSplit, input_range: tuple[float, float] = (0.0, 1.0), *,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """OOD inputs for a task: the source's classes outside the task, uniform noise and intensity-inverted held-out
    inputs (``lo + hi − x``), each in data space; noise and inverted sets have the held-out set's size."""
    lo, hi = map(float, input_range)
    x_in = split.heldout.x
    sets: dict[str, torch.Tensor] = {}
    load_args = split.train.source.get("load_args")
    if load_args is not None:
        src = load_data(**load_args)
        _, groups = parse_task(split.task.get("task"), src.classes)
        used = torch.tensor(sorted({c for g in groups for c in g}))
        other = ~torch.isin(src.y, used)
        if other.any():
            names = [src.classes[c] for c in torch.unique(src.y[other]).tolist()]
            sets[f"classes {','.join(names)}"] = src.x[other]
    gen = torch.Generator().manual_seed(seed)
    sets["uniform noise"] = lo + (hi - lo) * torch.rand(x_in.shape, generator=gen)
    sets["inverted intensity"] = lo + hi - x_in
    return sets


SCORES = ("MSP (baseline)", "garbage", "uncertainty")


def score_sets(baseline: LoadedModel, garbage_model: LoadedModel, x_in: torch.Tensor,
               sets: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Per-input scores of the in-distribution inputs (key ``in-distribution``) and of each OOD set: the baseline's
    MSP and the garbage model's :func:`ood_scores` (with its ``predicted`` class)."""
    return {name: {"MSP (baseline)": msp(baseline, x), **ood_scores(garbage_model, x)}
            for name, x in {"in-distribution": x_in, **sets}.items()}


def evaluate_ood(baseline: LoadedModel, garbage_model: LoadedModel, x_in: torch.Tensor,
                 sets: dict[str, torch.Tensor], scores: dict[str, dict[str, torch.Tensor]] | None = None
                 ) -> list[dict[str, Any]]:
    """One row per (OOD set, score): AUROC, AUPR-in, AUPR-out, FPR@95%TPR (in-distribution = positives) and the
    fraction of the set the garbage model puts in its garbage class (``rejected``). ``scores``: :func:`score_sets`
    of the same inputs, when already computed."""
    scores = scores if scores is not None else score_sets(baseline, garbage_model, x_in, sets)
    s_in = scores["in-distribution"]
    g = garbage_model.num_outputs - 1
    rows = []
    for name in sets:
        s_out = scores[name]
        rejected = float((s_out["predicted"] == g).float().mean())
        for score in SCORES:
            higher = "in" if score.startswith("MSP") else "out"
            m = ood_metrics(s_in[score], s_out[score], higher_means=higher)
            rows.append({"ood_set": name, "score": score, **m,
                         "rejected": rejected if score != "MSP (baseline)" else None})
    return rows


@dataclass
class OODResult:
    """Rows of the OOD table, in-distribution accuracies and the garbage-class model."""

    rows: list[dict[str, Any]]
    accuracy: dict[str, float]
    model: LoadedModel
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def table(self) -> str:
        """The rows as a markdown table."""
        lines = ["| OOD set | score | AUROC | AUPR-in | AUPR-out | FPR@95 | rejected to garbage |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            rej = f"{100 * r['rejected']:.1f}%" if r["rejected"] is not None else "–"
            lines.append(f"| {r['ood_set']} | {r['score']} | {r['auroc']:.3f} | {r['aupr_in']:.3f} | "
                         f"{r['aupr_out']:.3f} | {r['fpr95']:.3f} | {rej} |")
        return "\n".join(lines)


def garbage_ood(model: LoadedModel, config: OODConfig = OODConfig(), *, seed: int = 0,
                out: str | Path | None = None, resume: bool = False,
                show_progress: bool | None = None) -> OODResult:
    """Retrain a netinv checkpoint's architecture on its data with a garbage class and compare OOD detection with
    the checkpoint's MSP.

    Args:
        model: an n-class netinv checkpoint (its ``meta`` records the architecture and the data).
        config: :class:`OODConfig`.
        seed: recorded in the outputs.
        out: writes ``ood.json`` (rows, accuracies, curve), ``ood.md`` (the table), ``ood_scores.npz`` (every
            input's scores, so the table can be recomputed: :func:`_write_scores`) and ``garbage_model/`` (a netinv
            checkpoint with n+1 outputs); holds the resumable state while training.
        resume: continue an interrupted run in ``out``.

    Raises:
        ConfigError: the model is not a netinv checkpoint with data provenance, or is binary with one logit.
    """
    meta = model.meta or {}
    if "arch" not in meta or "data" not in meta:
        raise ConfigError("garbage-class OOD needs a netinv checkpoint (architecture and training data recorded)",
                          "train the victim with netinv train, or call garbage_class_training(split, arch)")
    split = split_from_record(meta["data"])
    arch = spec_from_dict(meta["arch"])
    dev = str(model.device)
    gm = garbage_class_training(split, arch, config, seed=seed, input_range=model.input_range, device=dev, out=out,
                                resume=resume, show_progress=show_progress)
    sets = default_ood_sets(split, model.input_range, seed=seed)
    x_in, y_in = split.heldout.x, split.heldout.y
    scores = score_sets(model, gm, x_in, sets)
    rows = evaluate_ood(model, gm, x_in, sets, scores)
    acc = {"baseline": model.accuracy(x_in, y_in), "garbage_model": gm.accuracy(x_in, y_in),
           "in_rejected": float((scores["in-distribution"]["predicted"] == split.train.num_classes).float().mean())}
    info = {"seed": seed, "config": config_dict(config), "model": model.record(), "sets": {k: len(v) for k, v in
            sets.items()}, "n_in": len(x_in), "curve": gm.meta["ood_curve"], "environment": environment(model.device)}
    res = OODResult(rows, acc, gm, info)
    if out is not None:
        outp = Path(out)
        gm.source = {"format": "netinv", "path": str(outp / "garbage_model")}
        save_checkpoint(outp / "garbage_model", gm.module.cpu(), spec_from_dict(gm.meta["arch"]), gm.meta)
        gm.module.to(dev)
        write_json(outp / "ood.json", {"rows": rows, "accuracy": acc, **info})
        _write_scores(outp / "ood_scores.npz", scores, seed)
        atomic_write_bytes(outp / "ood.md", (res.table() + f"\n\nseed {seed} (ood.json holds the settings)\n").encode())
    return res


def _write_scores(path: Path, scores: dict[str, dict[str, torch.Tensor]], seed: int) -> None:
    """``ood_scores.npz``: ``set_names`` (index 0 = in-distribution, then the OOD sets in the table's order) and, for
    set j, ``s{j}_msp`` (the baseline's MSP, higher = in), ``s{j}_garbage`` and ``s{j}_uncertainty`` (higher = OOD),
    ``s{j}_predicted`` (the garbage model's class; n = garbage), and ``meta`` (seed, record)."""
    import io

    import numpy as np

    keys = {"MSP (baseline)": "msp", "garbage": "garbage", "uncertainty": "uncertainty", "predicted": "predicted"}
    arrays = {f"s{j}_{keys[k]}": v.cpu().numpy() for j, per in enumerate(scores.values()) for k, v in per.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, set_names=np.array(list(scores)), **arrays,
                        meta=np.array(json.dumps({"seed": seed, "record": "ood.json"})))
    atomic_write_bytes(path, buf.getvalue())
