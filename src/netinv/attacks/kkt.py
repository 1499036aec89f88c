"""KKT training-data reconstruction: Haim, Vardi, Yehudai, Shamir, Irani, "Reconstructing Training Data from
Trained Neural Networks", NeurIPS 2022 (arXiv 2206.07758, code nivha/dataset_reconstruction); multiclass, weight
decay and general losses from Buzaglo et al., "Deconstructing Data Reconstruction", NeurIPS 2023 (arXiv
2307.01827).

A positively homogeneous network trained to zero error converges in direction to a KKT point of the max-margin
problem, so its parameters are a non-negative combination of the margin gradients of its training samples,
``θ = Σ λ_i ∇θ margin_i(x_i)``. The attack optimises m candidate inputs and multipliers to satisfy that equation
(losses in :mod:`netinv.losses.kkt`) and ranks the candidates by how much of θ each explains — no ground truth.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from .._errors import ConfigError, ModelError, check_finite_loss
from .._utils.checkpoint import finished_run, resume_state, save_state, tensor_sha256
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict, environment
from .._utils.seed import keeps_global_rng, seed_everything
from .._utils.shapes import same_layout
from ..losses.kkt import box_prior, candidate_margins, dual_feasibility, kkt_stationarity, relu_surrogate
from ..models.inspect import homogeneity_report
from ..models.loaded import LoadedModel
from .base import Attack, Candidates, load_candidates


@dataclass(frozen=True)
class KKTConfig:
    """Settings of :class:`KKTReconstruction`. Sources: [H] Haim et al. 2022 / their code, [B] Buzaglo et al. 2023,
    [ours] chosen by measurement in ``benchmarks/kkt_digits.py`` (see docs/kkt.md)."""

    iterations: int = 1500  # [ours] 400 -> 1500 -> 3000: 15-17% -> 21-26% -> 22-26% above τ ([H] run 50 000 SGD steps)
    optimizer: Literal["adam", "sgd"] = "adam"  # [ours] SGD (momentum 0.9, [H]) leaked less or diverged
    lr_x: float = 0.01  # [ours] step on the inputs ([H] sweep log-U[1e-5, 1] for SGD)
    lr_lam: float = 0.01  # [ours] step on the multipliers ([H] 1e-4 for SGD)
    init_scale: float = 1e-3  # [ours] x0 = randn·init_scale in the model's input space ([H] sweep log-U[1e-6, 0.1])
    lam_min: float = 0.1  # [ours] floor of the dual-feasibility penalty, in units of lam_unit ([H] U[0.01, 0.5])
    alpha: float | None = 100.0  # [ours] ReLU backward -> sigmoid(α·z); None = exact ReLU ([H] U[10, 500])
    w_dual: float = 5.0  # [H] weight of Σ relu(λ_min − λ)²
    w_prior: float = 1.0  # [H] weight of the input-box prior
    lam_sign: Literal["nonneg", "any"] = "nonneg"  # [B] "any": regression / general losses (λ of either sign)
    lam_unit: Literal["auto", "one"] = "auto"  # [ours] auto: λ in units of ‖θ‖²/(L·mean|Φ|) on box-uniform inputs
    dtype: Literal["float32", "float64"] = "float32"  # [ours] float64 ([H]) gave the same figures at 2× the time
    checkpoint_every: int = 250  # iterations between resumable states (with ``out``)
    log_every: int = 25  # iterations between loss-curve points
    show_progress: bool | None = None  # None: a bar when attached to a terminal

    def validate(self) -> None:
        """One ConfigError naming the settings no run can use (a sweep checks its base settings before any trial).

        Raises:
            ConfigError: a negative iteration count, non-positive step sizes, init scale or α, a negative λ_min.
        """
        if self.iterations < 0 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("iterations must be >= 0, checkpoint_every and log_every >= 1", "fix the settings")
        bad = [f"{k}={v}" for k, v in (("lr_x", self.lr_x), ("lr_lam", self.lr_lam), ("init_scale", self.init_scale))
               if not (math.isfinite(v) and v > 0)]
        bad += [f"alpha={self.alpha}"] if self.alpha is not None and not (math.isfinite(self.alpha) and
                                                                          self.alpha > 0) else []
        bad += [f"lam_min={self.lam_min}"] if not (math.isfinite(self.lam_min) and self.lam_min >= 0) else []
        if bad:
            raise ConfigError(f"{', '.join(bad)}: step sizes, the init scale and α must be positive and λ_min "
                              "non-negative", "give e.g. --lr-x 0.01 --alpha 100 --lam-min 0.1 (the defaults)")


class KKTReconstruction(Attack):
    """Reconstruct training samples of a (positively homogeneous) classifier from its weights alone.

    Binary models (one logit) use ``y·Φ(x)``; multiclass models the margin ``Φ_y − max_{k≠y} Φ_k`` per candidate
    (Buzaglo et al.), with candidates spread evenly over the classes. A model that is not homogeneous in its
    parameters (biases, BatchNorm) gets a warning and the attack still runs (the theory then holds only roughly).
    The module is never modified, but ``torch.func.functional_call`` swaps tensors into it during a call: run
    concurrent attacks on copies of the module (``netinv.attacks.sweep`` does).

    Example:
        >>> from netinv.data import load_data, make_task
        >>> from netinv.train import train, TrainConfig
        >>> split = make_task(load_data("digits"), "parity", n_per_class=5, heldout_per_class=5)
        >>> victim = train(split, "mlp:64", TrainConfig(lr=0.5, epochs=500), bias="none", show_progress=False)
        >>> cands = KKTReconstruction(victim, KKTConfig(iterations=5)).invert(20)
        >>> tuple(cands.x.shape), tuple(cands.arrays["lam"].shape)
        ((20, 1, 8, 8), (20,))
    """

    #: Optuna search space (name -> (kind, low, high)), after Haim et al.'s random sweep, centred on our defaults.
    search_space: ClassVar[dict[str, tuple[str, float, float]]] = {
        "init_scale": ("log", 1e-4, 1e-2),
        "lr_x": ("log", 3e-3, 3e-2),
        "lam_min": ("log", 0.02, 0.5),
        "alpha": ("log", 50.0, 300.0),
    }

    def __init__(self, model: LoadedModel | str | Path, config: KKTConfig | None = None) -> None:
        super().__init__(model, config or KKTConfig())
        self.config: KKTConfig = self.config
        self.homogeneity = homogeneity_report(self.model)
        if not self.homogeneity["homogeneous"]:
            warnings.warn("the model is not positively homogeneous in its parameters ("
                          + "; ".join(self.homogeneity["issues"][:3]) + "): the KKT conditions the attack solves "
                          "hold only approximately, expect weaker reconstructions", UserWarning, stacklevel=2)

    def default_n(self) -> int:
        """2× the training-set size when the checkpoint records it ([H]: m = 2n), else 100 per class."""
        idx = self.model.meta.get("data", {}).get("train_indices") if isinstance(self.model.meta, dict) else None
        return 2 * len(idx) if idx else 100 * self.model.num_classes

    @keeps_global_rng
    def invert(self, n: int | None = None, *, seed: int = 0, out: str | Path | None = None,
               resume: bool = False, x0: torch.Tensor | None = None, y0: torch.Tensor | None = None) -> Candidates:
        """Optimise ``n`` candidates and multipliers on the KKT conditions.

        Args:
            n: number of candidates m. Default: :meth:`default_n` (``len(x0)`` with ``x0``).
            seed: draws x0 and λ0; recorded in run.json.
            x0: a warm start instead of the random one: m×(input shape) candidates in DATA space (e.g. the
                candidates of an earlier run, or — for an oracle experiment — real images). Recorded in run.json
                as given, not stored.
            y0: the classes of ``x0`` (m int64); default: spread evenly over the classes like a cold start.
            out: folder for ``candidates.npz`` (x in DATA space, y, lam, margin, score), ``run.json`` and the
                resumable state ``.kkt_state.pt``. Default: nothing written.
            resume: continue from ``out/.kkt_state.pt`` (same result as an uninterrupted run).

        Returns:
            :class:`Candidates` with ``score`` = each candidate's share of θ (leave-one-out increase of the relative
            stationarity residual; higher = more trustworthy) and ``info['criterion']`` = the final relative
            residual with the exact ReLU (lower = better run), both attacker-side.

        Raises:
            ConfigError: bad n or settings, or a state in ``out`` made with other settings.
            ModelError: a model the attack cannot differentiate (e.g. TorchScript).
        """
        cfg = self.config
        if x0 is not None:
            x0 = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0)
            if not x0.is_floating_point():  # uint8 images would start the attack on a 0..255 scale
                raise ConfigError(f"x0 is {str(x0.dtype).removeprefix('torch.')}, not float data-space inputs",
                                  "give float inputs in the model's data space (its input_range, mean not "
                                  "subtracted); images stored as uint8: x / 255 mapped onto that range")
        if y0 is not None:
            y0 = torch.as_tensor(np.asarray(y0) if not isinstance(y0, torch.Tensor) else y0).to(torch.int64)
        m = (len(x0) if x0 is not None else self.default_n()) if n is None else int(n)
        shape = tuple(self.model.input_shape)
        if x0 is not None and x0.ndim >= 2 and tuple(x0.shape[1:]) != shape \
                and math.prod(x0.shape[1:]) == math.prod(shape) and same_layout(x0.shape[1:], shape):
            x0 = x0.reshape(len(x0), *shape)  # flat rows, images for a flat model, a singleton channel elsewhere
        if x0 is not None and (len(x0) != m or tuple(x0.shape[1:]) != shape):
            raise ConfigError(f"x0 has shape {tuple(x0.shape)}, the attack needs ({m}, "
                              f"{', '.join(map(str, shape))})", "give one start per candidate, "
                              "shaped like the model's input")
        if y0 is not None and (x0 is None or len(y0) != m):
            raise ConfigError("y0 needs x0 and one class per candidate", "pass x0 and y0 of the same length")
        k = self.model.num_classes
        if m < k:
            raise ConfigError(f"n={m} candidates for {k} classes",
                              f"use at least {k} candidates (CLI: --m; default: 2× the training set)")
        cfg.validate()
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        dev = self.model.device
        prob = _Problem(self.model, dtype, cfg,
                        self.homogeneity.get("degree") or self.homogeneity.get("fitted_degree"))

        gen = seed_everything(seed)
        y = (torch.arange(m) * k // m).to(dev)  # classes spread evenly; binary: first half 0 (−1), second half 1
        if y0 is not None:
            y = y0.to(dev, torch.int64)
            if int(y.min()) < 0 or int(y.max()) >= k:
                raise ConfigError(f"y0 holds classes outside 0..{k - 1}", "give class indices of the model's outputs")
        x = (torch.randn((m, *self.model.input_shape), generator=gen, dtype=torch.float64) * cfg.init_scale)
        if x0 is not None:  # data space -> the module's (mean-subtracted) input space
            mean0 = self.model.mean.detach().cpu().double() if self.model.mean is not None else 0.0
            x = x0.detach().cpu().double() - mean0
        lam = torch.rand(m, generator=gen, dtype=torch.float64)
        x, lam = x.to(dev, dtype).requires_grad_(), lam.to(dev, dtype).requires_grad_()
        unit = prob.lam_unit(x.detach(), y) if cfg.lam_unit == "auto" else 1.0
        opt_x, opt_l = _optimizer(cfg, x, cfg.lr_x), _optimizer(cfg, lam, cfg.lr_lam)

        start, curve, elapsed = 0, [], 0.0
        state_path = Path(out) / ".kkt_state.pt" if out is not None else None
        keep = state_path is not None  # the digests only matter to a resume, which needs a saved state
        settings = {"config": config_dict(cfg), "n": m, "seed": seed, "x0": "given" if x0 is not None else "random",
                    "start_sha256": _digest(x0, y0) if keep else None, "model": self.model.record(),
                    "model_sha256": self.model.digest() if keep else None}
        if resume and finished_run(out, ".kkt_state.pt", "candidates.npz", settings):
            return load_candidates(out)  # nothing left to continue: the finished run's result, not a rerun
        st = resume_state(out, ".kkt_state.pt", "candidates.npz", settings, resume)
        if st is not None:
            with torch.no_grad():
                x.copy_(st["x"]), lam.copy_(st["lam"])
            opt_x.load_state_dict(st["opt_x"]), opt_l.load_state_dict(st["opt_lam"])
            start, curve, elapsed, unit = int(st["iteration"]), list(st["curve"]), float(st["elapsed"]), st["unit"]

        t0 = time.perf_counter() - elapsed
        t_loop, it_done = time.perf_counter(), 0
        with progress_bar(cfg.iterations, "kkt", completed=start, show=cfg.show_progress) as bar:
            for it in range(start, cfg.iterations):
                terms = prob.step(x, lam, y, unit, opt_x, opt_l)
                it_done += 1
                done = it + 1
                if done % cfg.log_every == 0 or done == cfg.iterations or done == 1:
                    curve.append({"iteration": done, **terms})
                check_finite_loss(terms["loss"], "the attack", "lower lr_x / init_scale, or use dtype float64",
                                  at=f"iteration {done}")
                bar.update(1, smooth_stationarity=terms["stationarity"], loss=terms["loss"])  # surrogate ReLU
                if state_path is not None and done % cfg.checkpoint_every == 0 and done < cfg.iterations:
                    save_state(state_path, {"x": x.detach().cpu(), "lam": lam.detach().cpu(), "unit": unit,
                                            "opt_x": opt_x.state_dict(), "opt_lam": opt_l.state_dict(),
                                            "iteration": done, "curve": curve, "settings": settings,
                                            "elapsed": time.perf_counter() - t0})
        loop_s = time.perf_counter() - t_loop

        score, criterion, marg = prob.rank(x.detach(), lam.detach() * unit, y)
        wall = time.perf_counter() - t0
        mean = self.model.mean
        x_data = x.detach() + (mean.to(dev, dtype) if mean is not None else 0.0)  # data space, not clipped
        info = {"attack": "kkt", **settings, "lam_unit": unit, "num_classes": k, "binary": self.model.binary,
                "criterion": criterion, "criterion_name": "relative stationarity residual, exact ReLU (lower=better)",
                "criterion_note": criterion_note(criterion),
                "final": curve[-1] if curve else None, "loss_curve": curve, "wall_time_s": wall,
                "iterations_per_s": it_done / loop_s if loop_s > 0 and it_done else None,
                "homogeneity": self.homogeneity, "model": self.model.record(),
                "environment": environment(dev)}
        cands = Candidates(x_data.float().cpu(), y.cpu(), score.float().cpu(),
                           {"lam": (lam.detach() * unit).float().cpu(), "margin": marg.float().cpu()}, info)
        if out is not None:
            cands.save(out)
            if state_path is not None:
                state_path.unlink(missing_ok=True)
        return cands


POOR_FIT = 0.25  # criterion above which a run explains too little of θ to expect leakage (see criterion_note)


def criterion_note(criterion: float, next_step: str = "run netinv evaluate to see whether anything leaks beyond "
                   "the null baselines") -> str | None:
    """A one-line reading of a run's criterion when its candidates explain little of the weights, else None.

    Measured (docs/kkt.md): netinv's binary digits victims, trained from a small initialisation to zero loss, end at
    0.01–0.10; an MLP trained with PyTorch's default initialisation and SGD ended at 0.52 and leaked nothing (AUC
    0.48), but a 10-class victim with 20 members ended at 0.50 and leaked 35% (AUC 0.84). So a poor fit says the
    attack's premise holds only loosely, not that nothing leaks: only the evaluation against its null baselines
    tells.

    Example:
        >>> criterion_note(0.02) is None
        True
        >>> criterion_note(0.52)[:50]
        'the candidates explain only 48% of the weights (a '
        >>> criterion_note(2.9)[:62]
        'the candidates fit the weights worse than no candidates at all'
    """
    if not criterion > POOR_FIT:  # also None for NaN
        return None
    share = (f"the candidates explain only {1 - criterion:.0%} of the weights" if criterion < 1 else
             f"the candidates fit the weights worse than no candidates at all (residual {criterion:.2f} of ‖θ‖²)")
    return (f"{share} (a KKT point explains nearly all): the model is far from a KKT point of the margin problem "
            "(trained from a large initialisation, not to zero loss, or with biases or normalisation), so the "
            f"attack's premise holds only loosely; {next_step}")


def members_note(n_members: int, input_shape: Sequence[int]) -> str | None:
    """A one-line caution when the training set is large for the model's input (at least half as many members as
    input dimensions C·H·W), else None.

    Measured (benchmarks/kkt_draws.py, docs/kkt.md) on binary digits-parity MLPs of one recipe (64 input dimensions,
    five member draws, two attack seeds each): 20 members gave 30–80% above τ, 50 gave 20–38% and 100 gave 13–26%.
    The threshold d/2 is ours, between the measured 20 and 50. Why it falls: the input layer is a sum of one rank-one
    term per member, so as the members approach and pass its input dimensions it no longer pins them down and other
    candidate sets can fit the weights. Measured on MLPs only; for a convolutional first layer the argument concerns
    patches, so the note may come late there. A low figure then bounds this attack, not what the weights reveal to
    others (membership inference, attacks with data priors).

    Example:
        >>> members_note(31, (1, 8, 8)) is None, members_note(32, (64,)) is not None
        (True, True)
        >>> members_note(100, (1, 8, 8))
        "the training set (100 members) is large for the model's 64 input dimensions: ...weights are safe"
    """
    d = math.prod(input_shape)
    if 2 * n_members < d:
        return None
    return (f"the training set ({n_members} members) is large for the model's {d} input dimensions: KKT "
            "reconstruction recovers fewer members as they approach and pass the input dimensions (measured on "
            "digits MLPs with 64 inputs: 20 members 30–80% above τ, 50 members 20–38%, 100 members 13–26%; "
            "docs/kkt.md), so a low figure here is weak evidence that the weights are safe")


def _digest(x0: torch.Tensor | None, y0: torch.Tensor | None) -> str | None:
    """The warm start's SHA-256 (x0, then y0), None without one: a resume with another start file is refused."""
    if x0 is None:
        return None
    return tensor_sha256(x0.double(), *([y0.long()] if y0 is not None else []))[:16]


def _optimizer(cfg: KKTConfig, t: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam([t], lr=lr)
    return torch.optim.SGD([t], lr=lr, momentum=0.9)  # [H]


class _Problem:
    """The model as a function of its (copied) parameters, the input box and one optimisation step."""

    def __init__(self, model: LoadedModel, dtype: torch.dtype, cfg: KKTConfig, degree: float | None) -> None:
        self.model, self.cfg = model, cfg
        self.warned = False
        mod = model.module
        if isinstance(mod, torch.jit.ScriptModule):
            raise ModelError("the KKT attack needs second derivatives through the model, TorchScript hides them",
                             "give a netinv checkpoint, a .pt2 export or a package.module:factory")
        # detached copies: the user's module is never modified (thread-safe for parallel sweeps)
        self.params = {k: p.detach().to(dtype).requires_grad_() for k, p in mod.named_parameters()}
        self.buffers = {k: (b.detach().to(dtype) if b.is_floating_point() else b) for k, b in mod.named_buffers()}
        self.plist = list(self.params.values())
        self.theta_sq = float(sum((p.detach().double() ** 2).sum() for p in self.plist))
        self.degree = float(degree) if degree and degree > 0 else 1.0  # L in Euler's ⟨θ, ∇θΦ⟩ = L·Φ
        dev = model.device
        lo, hi = model.input_range
        mean = model.mean.to(dev, dtype) if model.mean is not None else torch.zeros((), device=dev, dtype=dtype)
        self.lo, self.hi = lo - mean, hi - mean  # the box in the module's (mean-subtracted) input space

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model.module, {**self.params, **self.buffers}, (x,))

    def lam_unit(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """λ scale where ``(1/m)Σ λ·margin ≈ ‖θ‖²/L`` (Euler: ⟨θ, ∇θ margin⟩ = L·margin) for unit λ at margins
        the size of the model's typical output on box-uniform inputs: keeps lam_min meaningful across models."""
        g = torch.Generator().manual_seed(0)
        u = torch.rand((256, *x.shape[1:]), generator=g, dtype=torch.float64).to(x.device, x.dtype)
        probe = self.lo + (self.hi - self.lo) * u
        with torch.no_grad():
            out = self.logits(probe)
        scale = float(out.abs().mean())
        norm2 = float(sum((p.detach() ** 2).sum() for p in self.plist))
        return norm2 / (self.degree * scale) if scale > 0 else 1.0

    def step(self, x: torch.Tensor, lam: torch.Tensor, y: torch.Tensor, unit: float, opt_x: torch.optim.Optimizer,
             opt_l: torch.optim.Optimizer) -> dict[str, float]:
        """One optimisation step on x and λ; returns the loss terms (floats)."""
        cfg = self.cfg
        with relu_surrogate(cfg.alpha) as mode:
            marg = candidate_margins(self.logits(x), y)
            if mode is not None and mode.calls == 0 and not self.warned:
                self.warned = True
                warnings.warn(f"alpha={cfg.alpha}: the model's forward called no ReLU / leaky ReLU the surrogate can "
                              "replace, so the attack runs with the exact activations (alpha=None); expect weaker "
                              "reconstructions", UserWarning, stacklevel=3)
            # (1/m)Σ λ_j ∇ margin_j by one backward
            stat = kkt_stationarity(self.plist, marg, lam * unit, theta_sq=self.theta_sq)
        dual = dual_feasibility(lam, cfg.lam_min, signed=cfg.lam_sign == "any")
        prior = box_prior(x, self.lo, self.hi)
        loss = stat + cfg.w_dual * dual + cfg.w_prior * prior
        # autograd.grad, not backward: nothing accumulates into the model's parameters
        gx, gl = torch.autograd.grad(loss, [x, lam])
        x.grad, lam.grad = gx, gl
        opt_x.step(), opt_l.step()
        terms = {"loss": loss, "stationarity": stat, "dual": dual, "prior": prior}
        return {k: float(v.detach()) for k, v in terms.items()}

    def rank(self, x: torch.Tensor, lam: torch.Tensor, y: torch.Tensor,
             chunk: int = 16) -> tuple[torch.Tensor, float, torch.Tensor]:
        """Attacker-side figures with the exact ReLU: per candidate the leave-one-out increase of the relative
        residual ``(‖r + c_j‖² − ‖r‖²)/‖θ‖² = (2⟨r, c_j⟩ + ‖c_j‖²)/‖θ‖²`` with ``c_j = λ_j ∇θ margin_j / m``; the
        run's relative residual ‖r‖²/‖θ‖²; the candidates' margins."""
        m = x.shape[0]
        with torch.enable_grad():
            marg = candidate_margins(self.logits(x), y)
            grads = torch.autograd.grad((lam * marg).sum() / m, self.plist)
        r = [p.detach() - g for p, g in zip(self.plist, grads, strict=True)]
        norm2 = float(sum((p.detach() ** 2).sum() for p in self.plist))
        criterion = float(sum((t * t).sum() for t in r)) / norm2
        score = torch.empty(m, dtype=torch.float64, device=x.device)
        for i in range(0, m, chunk):  # per-candidate gradients, a chunk at a time (memory: chunk × |θ|)
            xs, ys = x[i:i + chunk], y[i:i + chunk]
            jac = _per_sample_grads(self, xs, ys)
            # products and norms, not elementwise chunk × |θ| temporaries (3× faster on a 4 M-parameter MLP)
            dot = sum(j.flatten(1) @ t.flatten() for j, t in zip(jac, r, strict=True))
            sq = sum(torch.linalg.vector_norm(j.flatten(1), dim=1) ** 2 for j in jac)
            c = lam[i:i + chunk] / m
            score[i:i + chunk] = ((2 * c * dot + c * c * sq) / norm2).double()
        return score, criterion, marg.detach()


def _per_sample_grads(prob: _Problem, xs: torch.Tensor, ys: torch.Tensor) -> list[torch.Tensor]:
    """∇θ margin_j for each candidate of a chunk, vectorised with ``torch.func.vmap``: (chunk, *p.shape) each."""
    params = {k: p.detach() for k, p in prob.params.items()}

    def margin_one(ps: dict[str, torch.Tensor], x1: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        out = functional_call(prob.model.module, {**ps, **prob.buffers}, (x1.unsqueeze(0),))
        return candidate_margins(out, y1.unsqueeze(0))[0]

    g = vmap(grad(margin_one), in_dims=(None, 0, 0))(params, xs, ys)
    return [g[k] for k in prob.params]
