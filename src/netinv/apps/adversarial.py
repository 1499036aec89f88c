"""Targeted adversarial samples from a conditioned perturbation generator, against projected gradient descent.

Generator inversion (Suhail & Sethi 2024, arXiv 2407.18002) lists adversarial samples among its uses. Here a
generator G(x, t) conditioned on the target class t (one-hot planes, ``PerturbationGenerator`` here)
outputs a perturbation bounded BY CONSTRUCTION (L∞: a sigmoid into the feasible box; L2: scaling onto the ε-ball),
trained once on real inputs with random targets; at test time one forward pass per input. The baseline is targeted
PGD (Madry et al. 2018: sign steps for L∞, normalised gradient steps for L2, projection after each step, step
2.5·ε/steps).

Both keep x + δ in the model's input range (clipping only shrinks every coordinate of δ), so ‖δ‖ ≤ ε always holds;
success = the model predicts the target AND the measured ‖δ‖ ≤ ε (+1e-6). Reported: success rate, mean and max
perturbation norm, time (PGD: all inputs; generator: its training once plus inference).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import ConfigError, check_finite_loss
from .._utils.checkpoint import resume_state, save_state, tensor_sha256, write_json
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict, environment
from .._utils.seed import keeps_global_rng, seed_everything
from ..data import Dataset, split_from_record
from ..losses.inversion import as_class_logits
from ..models.loaded import LoadedModel

__all__ = ["AdversarialConfig", "AdversarialResult", "compare_adversarial", "generator_attack", "run_adversarial",
           "perturbation_norms", "pgd_attack", "random_targets", "table"]


STATE = ".adversarial_state.pt"


@dataclass(frozen=True)
class AdversarialConfig:
    """Budgets and the two attacks' settings."""

    norm: Literal["linf", "l2"] = "linf"
    eps: float = 0.3  # Madry et al. 2018's MNIST L∞ budget (data range [0, 1])
    pgd_steps: int = 40  # Madry et al. 2018
    pgd_step_size: float | None = None  # None: 2.5·ε/steps (Madry et al. 2018)
    gen_steps: int = 600  # ours, measured in benchmarks/invert_digits.py
    gen_batch_size: int = 128  # ours
    gen_lr: float = 1e-3  # ours (Adam)
    gen_width: int = 32  # ours
    kappa: float = 5.0  # ours: the generator's margin loss is capped at this margin (CW-style), so it spreads effort
    checkpoint_every: int = 100  # generator steps between resumable states (with an output folder)


@dataclass
class AdversarialResult:
    """Per-input outcome of one attack."""

    method: str
    x_adv: torch.Tensor = field(repr=False)
    target: torch.Tensor = field(repr=False)
    success: torch.Tensor = field(repr=False)  # N bool
    norms: torch.Tensor = field(repr=False)  # N, in the budget's norm
    time_s: float
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"AdversarialResult({s['method']}: {s['n']} inputs, success {100 * s['success_rate']:.1f}%, mean norm "
                f"{s['mean_norm']:.4g}, {s['time_s']:.2f} s)")

    def summary(self) -> dict[str, Any]:
        """One table row: method, success rate, mean and max ‖δ‖, time (the JSON record of the result)."""
        return {"method": self.method, "n": len(self.target), "success_rate": float(self.success.double().mean()),
                "mean_norm": float(self.norms.mean()), "max_norm": float(self.norms.max()), "time_s": self.time_s,
                **{k: v for k, v in self.info.items() if isinstance(v, int | float | str)}}


def bound_perturbation(raw: torch.Tensor, norm: str, eps: float, x: torch.Tensor | None = None,
                       input_range: tuple[float, float] = (-math.inf, math.inf)) -> torch.Tensor:
    """Map unconstrained N×... outputs to perturbations δ with ‖δ‖ ≤ ε and x + δ inside ``input_range``.

    L∞: the feasible set {x + δ : ‖δ‖∞ ≤ ε, lo ≤ x + δ ≤ hi} is a box [l, u], and x + δ = l + (u − l)·σ(raw) lies
    in it for any raw. (Clipping x + δ to the range instead leaves dead zones with zero gradient, e.g. a negative
    δ on a 0 background pixel; measured on the digits CNN, a generator trained through them stalls at chance-level
    targeted success.) L2: raw scaled onto the ε-ball when outside, δ = raw·min(1, ε/‖raw‖₂); the range is then
    enforced by clipping (which only shrinks |δ|).
    """
    if norm == "linf":
        if x is None:
            return eps * torch.tanh(raw)
        lo, hi = input_range
        low, up = torch.clamp(x - eps, min=lo), torch.clamp(x + eps, max=hi)
        return low + (up - low) * torch.sigmoid(raw) - x
    if norm == "l2":
        n = raw.flatten(1).norm(dim=1).clamp_min(1e-12)
        return raw * torch.clamp(eps / n, max=1.0).view(-1, *([1] * (raw.dim() - 1)))
    raise ConfigError(f"unknown norm {norm!r}", "use linf or l2")


class PerturbationGenerator(nn.Module):
    """δ = bound(g(x ⊕ one-hot target planes)): a small conv net for images, an MLP for flat inputs."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, norm: str, eps: float,
                 width: int = 32, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        self.input_shape, self.num_classes, self.norm, self.eps = tuple(input_shape), num_classes, norm, eps
        self.input_range = input_range
        bound_perturbation(torch.zeros(1, 1), norm, eps)  # validates norm now, not at the first batch
        if len(input_shape) == 3:
            c = input_shape[0]
            self.net: nn.Module = nn.Sequential(
                nn.Conv2d(c + num_classes, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, c, 3, padding=1))
        else:
            d = math.prod(input_shape)
            self.net = nn.Sequential(nn.Linear(d + num_classes, 8 * width), nn.LeakyReLU(0.2),
                                     nn.Linear(8 * width, d))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hot = F.one_hot(target, self.num_classes).to(x.dtype)  # (N, K)
        if x.dim() == 4:
            planes = hot[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (N, K, H, W)
            raw = self.net(torch.cat([x, planes], 1))
        else:
            raw = self.net(torch.cat([x.flatten(1), hot], 1)).view_as(x)
        return bound_perturbation(raw, self.norm, self.eps, x, self.input_range)


def perturbation_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ‖δ‖∞ or ‖δ‖₂ (N)."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().max(1).values
    if norm == "l2":
        return flat.norm(dim=1)
    raise ConfigError(f"unknown norm {norm!r}", "use linf or l2")


def random_targets(model: LoadedModel, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A target ≠ the model's current prediction for each input, uniform over the other classes."""
    k = model.num_classes
    pred = model.predict(x)
    shift = torch.randint(1, k, (len(x),), generator=torch.Generator().manual_seed(seed))
    return (pred + shift) % k


def _check(model: LoadedModel, x: torch.Tensor, target: torch.Tensor, cfg: AdversarialConfig) -> None:
    if cfg.eps <= 0:
        raise ConfigError(f"eps must be positive, got {cfg.eps}", "give a budget, e.g. --eps 0.1")
    if cfg.checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every={cfg.checkpoint_every}", "give checkpoint_every >= 1 (default 100)")
    perturbation_norms(torch.zeros(1, 1), cfg.norm)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ConfigError(f"inputs shaped {tuple(x.shape[1:])}, the model takes {tuple(model.input_shape)}",
                          "use the model's data")
    if len(target) != len(x) or (len(target) and (int(target.min()) < 0 or int(target.max()) >= model.num_classes)):
        raise ConfigError("targets must be one class index per input, within the model's classes",
                          f"give targets in 0..{model.num_classes - 1}")


def _finish(method: str, model: LoadedModel, x: torch.Tensor, x_adv: torch.Tensor, target: torch.Tensor,
            norm: str, eps: float, t: float, info: dict[str, Any]) -> AdversarialResult:
    x_adv = x_adv.detach().cpu()
    norms = perturbation_norms(x_adv - x.cpu(), norm)
    success = (model.predict(x_adv) == target.cpu()) & (norms <= eps + 1e-6)
    return AdversarialResult(method, x_adv, target.cpu(), success, norms, t, info)


def _margin_loss(model: LoadedModel, x: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """max(max_{k≠t} z_k − z_t, −κ) per sample: minimised until the target wins by κ (Carlini & Wagner 2017)."""
    z = as_class_logits(model.logits(x))
    own = z.gather(1, target[:, None])[:, 0]
    other = z.scatter(1, target[:, None], float("-inf")).max(1).values
    return torch.clamp(other - own, min=-kappa)


def pgd_attack(model: LoadedModel, x: torch.Tensor, target: torch.Tensor,
               config: AdversarialConfig = AdversarialConfig()) -> AdversarialResult:
    """Targeted PGD from ``x`` (data space) towards ``target`` within the budget; all inputs in one batch."""
    _check(model, x, target, config)
    lo, hi = model.input_range
    eps, steps = config.eps, config.pgd_steps
    alpha = config.pgd_step_size if config.pgd_step_size is not None else 2.5 * eps / steps
    dev = model.device
    x0, t = x.to(dev), target.to(dev)
    t0 = time.perf_counter()
    delta = torch.zeros_like(x0, requires_grad=True)
    for _ in range(steps):
        loss = F.cross_entropy(as_class_logits(model.logits((x0 + delta).clamp(lo, hi))), t)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if config.norm == "linf":
                delta -= alpha * g.sign()
                delta.clamp_(-eps, eps)
            else:
                gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))
                delta -= alpha * g / gn
                dn = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(gn)
                delta *= torch.clamp(eps / dn, max=1.0)
    x_adv = (x0 + delta.detach()).clamp(lo, hi)
    return _finish("PGD", model, x, x_adv, target, config.norm, eps, time.perf_counter() - t0,
                   {"steps": steps, "step_size": alpha})


@keeps_global_rng
def generator_attack(model: LoadedModel, x: torch.Tensor, target: torch.Tensor,
                     config: AdversarialConfig = AdversarialConfig(), *, train_x: torch.Tensor | None = None,
                     seed: int = 0, show_progress: bool | None = None, out: str | Path | None = None,
                     resume: bool = False) -> AdversarialResult:
    """Train a target-conditioned perturbation generator on ``train_x`` (default: ``x``) with random targets, then
    perturb ``x`` towards ``target`` in one forward pass.

    With ``out``, a resumable state ``out/.adversarial_state.pt`` is written every ``config.checkpoint_every`` steps
    (removed when training ends); ``resume`` continues from it to the uninterrupted result.

    Returns:
        The result; ``time_s`` = training + inference, ``info`` splits them.
    """
    _check(model, x, target, config)
    seed_everything(seed)
    lo, hi = model.input_range
    dev = model.device
    train_x = (x if train_x is None else train_x).to(dev)
    k = model.num_classes
    g = PerturbationGenerator(model.input_shape, k, config.norm, config.eps, config.gen_width, (lo, hi)).to(dev)
    opt = torch.optim.Adam(g.parameters(), lr=config.gen_lr)
    gen = torch.Generator().manual_seed(seed)
    params = list(g.parameters())
    state_path = Path(out) / STATE if out is not None else None
    settings = {"config": config_dict(config), "seed": seed, "model_sha256": model.digest(),
                "inputs": tensor_sha256(x), "targets": tensor_sha256(target),
                "train_inputs": tensor_sha256(train_x)} if state_path is not None else {}
    start, elapsed = 0, 0.0
    st = resume_state(out, STATE, "adversarial.json", settings, resume)
    if st is not None:
        g.load_state_dict(st["generator"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        start, elapsed = int(st["step"]), float(st["elapsed"])
    t0 = time.perf_counter() - elapsed
    with progress_bar(config.gen_steps, "perturbation generator", completed=start, show=show_progress) as bar:
        for step in range(start, config.gen_steps):
            idx = torch.randint(0, len(train_x), (config.gen_batch_size,), generator=gen).to(dev)
            xb = train_x[idx]
            tb = torch.randint(0, k, (len(idx),), generator=gen).to(dev)
            loss = _margin_loss(model, (xb + g(xb, tb)).clamp(lo, hi), tb, config.kappa).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            opt.step()
            loss_v = float(loss.detach())
            check_finite_loss(loss_v, "the perturbation generator", "lower gen_lr in the --config file (e.g. a tenth "
                              "of it)", setting=f"gen_lr {config.gen_lr:g}")
            bar.update(1, loss=loss_v)
            done = step + 1
            if state_path is not None and done % config.checkpoint_every == 0 and done < config.gen_steps:
                save_state(state_path, {"settings": settings, "generator": g.state_dict(), "opt": opt.state_dict(),
                                        "gen": gen.get_state(), "step": done, "elapsed": time.perf_counter() - t0})
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    with torch.no_grad():
        x0 = x.to(dev)
        x_adv = (x0 + g(x0, target.to(dev))).clamp(lo, hi)
    t_inf = time.perf_counter() - t1
    return _finish("generator", model, x, x_adv, target, config.norm, config.eps, t_train + t_inf,
                   {"train_time_s": t_train, "inference_time_s": t_inf, "train_inputs": len(train_x),
                    "steps": config.gen_steps})


def compare_adversarial(model: LoadedModel, x: torch.Tensor, target: torch.Tensor | None = None,
                        config: AdversarialConfig = AdversarialConfig(), *, train_x: torch.Tensor | None = None,
                        seed: int = 0, out: str | Path | None = None, show_progress: bool | None = None,
                        source: dict[str, Any] | None = None, resume: bool = False) -> dict[str, AdversarialResult]:
    """Run PGD and the generator on the same inputs and targets; with ``out`` write ``adversarial.json`` (settings,
    seed, the model's record, the inputs' count, SHA-256 and ``source``) and ``adversarial.npz`` (inputs, targets,
    both adversarial sets).

    Args:
        model: the classifier.
        x: N inputs (data space) to perturb.
        target: N target classes (default: :func:`random_targets`, never the current prediction).
        config: :class:`AdversarialConfig`.
        train_x: inputs the generator is trained on (default: ``x``; pass disjoint data to measure generalisation).
        seed: seeds targets and the generator.
        out: output directory (also holds the generator's resumable state while it trains).
        resume: continue an interrupted generator from ``out`` (PGD is short and simply reruns).

    Returns:
        ``{"PGD": result, "generator": result}``.
    """
    target = random_targets(model, x, seed) if target is None else target.long().cpu()
    res = {"PGD": pgd_attack(model, x, target, config),
           "generator": generator_attack(model, x, target, config, train_x=train_x, seed=seed,
                                         show_progress=show_progress, out=out, resume=resume)}
    if out is not None:
        import io

        import numpy as np

        from .._utils.checkpoint import atomic_write_bytes

        outp = Path(out)
        inputs = {"n": len(x), "sha256": tensor_sha256(x),
                  **(source or {})}
        write_json(outp / "adversarial.json", {"config": config_dict(config), "seed": seed,
                                               "model": model.record(), "inputs": inputs,
                                               "rows": [r.summary() for r in res.values()],
                                               "environment": environment(model.device)})
        buf = io.BytesIO()
        np.savez_compressed(buf, x=x.cpu().numpy(), target=target.numpy(),
                            meta=np.array(json.dumps({"seed": seed, "record": "adversarial.json"})),
                            **{f"x_adv_{k}": r.x_adv.numpy() for k, r in res.items()})
        atomic_write_bytes(outp / "adversarial.npz", buf.getvalue())
        (outp / STATE).unlink(missing_ok=True)  # the run is complete on disk: nothing left to resume
    return res


def table(results: dict[str, AdversarialResult], config: AdversarialConfig) -> str:
    """Markdown table of :meth:`AdversarialResult.summary` rows."""
    lines = [f"| method ({config.norm}, ε = {config.eps:g}) | success | mean ‖δ‖ | max ‖δ‖ | time (s) |",
             "|---|---|---|---|---|"]
    for r in results.values():
        s = r.summary()
        extra = f" (train {s['train_time_s']:.2f} + infer {s['inference_time_s']:.3f})" if "train_time_s" in s else ""
        lines.append(f"| {s['method']} | {100 * s['success_rate']:.1f}% | {s['mean_norm']:.4f} | "
                     f"{s['max_norm']:.4f} | {s['time_s']:.2f}{extra} |")
    return "\n".join(lines)


def run_adversarial(model: LoadedModel | str | Path, config: AdversarialConfig = AdversarialConfig(), *,
                    data: Dataset | str | Path | None = None, n: int = 200, seed: int = 0,
                    out: str | Path | None = None, show_progress: bool | None = None,
                    resume: bool = False) -> dict[str, AdversarialResult]:
    """:func:`compare_adversarial` on real inputs: ``n`` attacked inputs and disjoint generator-training inputs.

    Without ``data`` the model must be a netinv checkpoint: ``n`` of its held-out inputs are attacked and the
    generator trains on its training set. With ``data`` (a data set, or an npz file / class folder read with the
    model's own class indices, :func:`netinv.data.load_model_data`), a seeded shuffle gives ``n`` attacked inputs and
    the rest train the generator (all of them when nothing is left). Data-set images ([0, 1]) are reshaped to the
    model's input shape and mapped onto its ``input_range`` (:meth:`LoadedModel.from_unit`).

    Raises:
        ConfigError: no data and no recorded training data, or ``n`` < 1.
    """
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}", "attack at least one input")
    if isinstance(model, str | Path):
        from ..models.loading import load_model

        model = load_model(model)
    if data is not None:
        from ..data import load_model_data
        from ..models.loading import check_compatible

        data = load_model_data(data)  # npz / class folders: the model's own class indices, never renumbered
        check_compatible(model, data, reshape=True)
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        if "data" not in (model.meta or {}):
            raise ConfigError("this model records no data to attack", "pass --data (and --path) with its inputs")
        split = split_from_record(model.meta["data"])
        pool, train_x = split.heldout, split.train.x
        pick = torch.randperm(len(pool), generator=gen)[:n]
        x, y = pool.x[pick], pool.y[pick]
        if n > len(pool):
            warnings.warn(f"the held-out set holds {len(pool)} inputs, fewer than n={n}: all {len(pool)} are attacked",
                          UserWarning, stacklevel=2)
    else:
        order = torch.randperm(len(data), generator=gen)
        x, y, rest = data.x[order[:n]], data.y[order[:n]], data.x[order[n:]]
        train_x = rest if len(rest) else x
        if not len(rest):
            warnings.warn(f"the data holds {len(data)} inputs and n={n} attacks all of them, so the generator trains "
                          "on the attacked inputs themselves and its success is measured on its own training inputs: "
                          "give more inputs than --n, or a smaller --n, to keep them apart", UserWarning, stacklevel=2)
    trains_on = ("the model's training set" if data is None else
                 "the attacked inputs" if train_x is x else f"the other {len(train_x)} inputs of the data")
    # data sets hold [0, 1] images: into the model's input shape and range
    x, train_x = model.from_unit(x), model.from_unit(train_x)
    clean = round(model.accuracy(x, y), 4)
    if clean < 0.5 and data is not None:  # a wrong --input-range or --mean, or labels that are not the model's
        # classes: PGD "succeeds" by correcting misclassified inputs, and the table reads as if the model were
        # attacked (a checkpoint's own held-out set cannot be misread: there it is only a weak model, recorded)
        warnings.warn(f"the model classifies only {clean:.0%} of the attacked inputs correctly: are --input-range "
                      "and --mean those it was trained with, and the labels its own class indices?", UserWarning,
                      stacklevel=2)
    source = ({"data": "the model's held-out set", "load_args": model.meta["data"].get("load_args")} if data is None
              else {"data": data.source.get("load_args") or data.source.get("name")})
    source = {**source, "shuffle_seed": seed, "clean_accuracy": clean, "generator_trains_on": trains_on}
    return compare_adversarial(model, x, None, config, train_x=train_x, seed=seed, out=out,
                               show_progress=show_progress, source=source, resume=resume)
