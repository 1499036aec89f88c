"""TLDR: training-like data reconstruction (Suhail & Sethi 2024, "Training-like Data Reconstruction", arXiv
2410.16884). The generator inversion of arXiv 2407.18002 (``attacks.generator``), pushed towards what tells training
data apart for the classifier f:

- confidence: one-hot ("hot") conditioning vectors instead of soft ones;
- robustness: the KL and CE terms also on perturbed generated images (the paper does not say which perturbation;
  ours: Gaussian pixel noise, optionally a random integer shift; chosen by measurement, docs/tldr.md);
- gradients: a penalty on the classifier's parameter-gradient norm ‖∇θ CE(f(G(z, c)), c)‖, per sample (torch.func
  ``vmap(grad)``, differentiated again for the generator) or of the batch-mean loss (one double backward);
- priors: total variation and a pixel-range penalty.

Loss: α KL + α′ KL_pert + β CE + β′ CE_pert + γ Cos + δ Ortho + η₁ TV + η₂ Pix + η₃ Grad. The paper gives no weights,
perturbation, schedule or generator: ours are measured in ``benchmarks/tldr_digits.py`` (docs/tldr.md).

Each returned candidate carries an attacker-side ranking score (no ground truth): its classifier confidence, its
mean confidence under perturbations and its parameter-gradient norm are saved, and ``score`` is the one chosen by
``rank_by``. ``oversample > 1`` draws that many times more samples and keeps the best-ranked per class.

Output with ``out=DIR``: ``generator.safetensors``, ``candidates.npz`` (``x`` in data space, ``y``, ``score``,
``confidence``, ``robustness``, ``grad_norm``; ``netinv evaluate DIR`` scores it as a reconstruction), ``run.json``
(config, seed, generator spec, loss curve, timings) and PNG grids ``grid.png`` / ``grid_class{c}.png``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from .._errors import ConfigError, first_line
from .._utils.runinfo import config_dict
from ..losses.inversion import (
    ce_to_label,
    feature_cosine,
    feature_orthogonality,
    kl_to_target,
    param_grad_norm,
    pixel_range,
    total_variation,
)
from ..models.loaded import LoadedModel
from ._conditioning import Condition, ConditioningMode
from ._generator_training import GeneratorTrainer, spec_dict
from .base import Attack, Candidates

__all__ = ["TLDR", "TLDRConfig", "per_sample_grad_norm", "perturb"]

STATE = ".tldr_state.pt"


@dataclass(frozen=True)
class TLDRConfig:
    """Settings of :class:`TLDR`. Sources: the paper (arXiv 2410.16884) where it says; otherwise ours, measured in
    ``benchmarks/tldr_digits.py`` on digits CNNs (docs/tldr.md), or inherited from the generator inversion's measured
    defaults (docs/generator.md)."""

    conditioning: ConditioningMode = "hot"  # paper: one-hot ("hot") vectors
    latent_dim: int = 64  # generator inversion default (docs/generator.md)
    width: int = 64  # generator inversion default
    dropout: float = 0.3  # generator inversion default (paper: "heavy" dropout, rate not given)
    embed_dim: int = 16  # conditioning="embedding" only
    temperature: float = 1.0  # soft modes only (hot ignores it)
    # flat-input models (MLP generator): ours, measured on a user's 64-input MLP (docs/tldr.md): without BatchNorm the
    # gradient-norm term drives the generator to x ≈ 0 and 20–23% of samples land in their class; with it, 100%
    mlp_batch_norm: bool = True
    kl_weight: float = 1.0  # α, ours
    kl_pert_weight: float = 1.0  # α′, ours, measured
    ce_weight: float = 1.0  # β, ours
    ce_pert_weight: float = 1.0  # β′, ours, measured
    cosine_weight: float = 1.5  # γ, generator inversion default
    ortho_weight: float = 1.5  # δ, generator inversion default
    tv_weight: float = 0.5  # η₁, ours, measured (0.5 and 2 within noise of each other)
    pixel_weight: float = 1.0  # η₂, ours (only acts with bounded_output=False: a sigmoid output is always in range)
    grad_weight: float = 1.0  # η₃, ours, measured
    grad_mode: Literal["per_sample", "batch"] = "per_sample"  # ours, measured (cost in docs/tldr.md)
    noise_std: float = 0.1  # perturbation: Gaussian noise σ, fraction of the input range; ours, measured
    max_shift: int = 0  # perturbation: random shift in [-s, s] pixels per axis; ours, measured (1 hurt on 8×8)
    bounded_output: bool = True  # sigmoid into the input range, or a raw output kept in range by Pix; ours, measured
    within_class: bool = True  # diversity terms over same-class pairs (generator inversion default)
    feature_layer: str | None = None  # None: input of the last linear layer (models.features)
    steps: int = 1000  # ours (hot conditioning needs ~1000 steps for ≥ 99% assignment, docs/generator.md)
    batch_size: int = 64  # ours
    lr: float = 1e-3  # ours (Adam)
    beta1: float = 0.5  # ours (DCGAN-style)
    schedule: Literal["constant", "cosine"] = "cosine"  # ours
    classes: tuple[int, ...] | None = None  # reconstruct only these classes (None: all)
    samples_per_class: int = 32  # invert(n=None) returns this many per class
    oversample: int = 1  # draw oversample × n, keep the n best-ranked per class; ours, measured (2: no gain)
    rank_by: Literal["robustness", "confidence", "grad_norm"] = "robustness"  # attacker-side; ours (3 tie)
    score_perturbations: int = 8  # perturbed copies per candidate for the robustness score
    stop_at: float | None = None  # stop once this fraction of a monitor batch lands in its class (attacker-side)
    monitor_every: int = 50  # steps between monitor points of the curve
    checkpoint_every: int = 200  # steps between resumable states (with out=...)
    grid_per_class: int = 16  # samples per class in the PNG grids


def perturb(x: torch.Tensor, noise_std: float, max_shift: int, input_range: tuple[float, float] = (0.0, 1.0),
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly perturbed copies of ``x`` (differentiable in ``x``): a shift by an integer number of pixels in
    [-max_shift, max_shift] per axis and per sample (border values fill in; images only), then Gaussian noise of
    std ``noise_std`` × (hi − lo) (unbounded range: × 1). Not clipped: clipping would stop gradients at the bounds.

    Args:
        x: N×C×H×W images or N×D inputs (data space).
        noise_std: noise σ as a fraction of the input range (0: none).
        max_shift: largest shift in pixels (0: none).
        input_range: (lo, hi) of valid inputs.
        generator: CPU random generator (shifts and noise are drawn on the CPU, device independent).
    """
    n = x.shape[0]
    if max_shift > 0 and x.dim() == 4 and n:
        h, w = x.shape[2:]
        s = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).to(x)  # (N, 2): dy, dx pixels
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = -2 * s[:, 1] / w, -2 * s[:, 0] / h  # grid coords in [-1, 1]: 2/W per pixel
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2), exact pixel centres
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if noise_std > 0:
        lo, hi = input_range
        scale = (hi - lo) if math.isfinite(lo) and math.isfinite(hi) else 1.0
        x = x + noise_std * scale * torch.randn(x.shape, generator=generator).to(x)
    return x


def per_sample_grad_norm(model: LoadedModel, x: torch.Tensor, labels: torch.Tensor,
                         create_graph: bool = True) -> torch.Tensor:
    """‖∇θ CE(f(xᵢ), yᵢ)‖₂ for each sample: N values, differentiable in ``x`` (torch.func ``vmap(grad)``, no loop).

    The classifier runs in its current mode (eval: BatchNorm running statistics, no dropout), one sample at a time
    under vmap, with its own parameters detached (the attack never changes them).

    Raises:
        ConfigError: a model torch.func cannot run per sample (e.g. TorchScript).
    """
    from torch.func import functional_call, grad, vmap

    mod = model.module
    params = {k: p.detach() for k, p in mod.named_parameters()}
    buffers = {k: b.detach() for k, b in mod.named_buffers()}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        z = functional_call(mod, (p, buffers), (model.preprocess(xi[None]),))  # (1, K)
        return ce_to_label(z, yi[None])

    try:
        g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, labels.to(x.device))  # name -> (N, *shape)
    except torch.OutOfMemoryError:
        raise  # not the model's fault: said as it is
    except Exception as e:  # torch.func refuses some modules (scripted, exported, in-place ops)
        raise ConfigError(f"per-sample parameter gradients are not available for this model ({type(e).__name__}: "
                          f"{first_line(e, 120)})", "use grad_mode='batch' (--grad-mode batch) or grad_weight=0") \
            from None
    sq = sum(v.flatten(1).pow(2).sum(1) for v in g.values())  # (N,)
    out = sq.clamp_min(1e-24).sqrt()
    return out if create_graph else out.detach()


def _grad_norm_loop(model: LoadedModel, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`per_sample_grad_norm` (not differentiable) by one backward pass per sample, for models torch.func
    cannot run per sample; the parameters' ``requires_grad`` flags are restored afterwards."""
    params = list(model.module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        return torch.stack([param_grad_norm(ce_to_label(model.logits(x[i:i + 1]), labels[i:i + 1]), params).detach()
                            for i in range(len(x))])
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


class TLDR(GeneratorTrainer, Attack):
    """Training-like data reconstruction: a conditioned generator trained against a frozen classifier with the
    generator-inversion loss plus robustness, gradient-norm and image priors, so its samples look like training data
    to the classifier.

    Args:
        model: the classifier (multiclass, or binary with one logit: two classes).
        config: :class:`TLDRConfig`.

    Raises:
        ConfigError: an invalid class subset, conditioning, feature layer, weight or perturbation.

    Example:
        >>> from netinv.data import load_data, make_task
        >>> from netinv.train import TrainConfig, train
        >>> split = make_task(load_data("digits"), "classes:0,1", n_per_class=30, heldout_per_class=10)
        >>> victim = train(split, "mlp:32", TrainConfig(lr=0.5, epochs=300), show_progress=False)
        >>> cands = TLDR(victim, TLDRConfig(steps=150, width=16)).invert(20, seed=0)
        >>> victim.accuracy(cands.x, cands.y) > 0.9
        True
    """

    state_file = STATE
    run_label = "tldr"
    samples_file = "candidates.npz"

    def __init__(self, model: LoadedModel | str | Path, config: TLDRConfig | None = None) -> None:
        super().__init__(model, config or TLDRConfig())
        cfg: TLDRConfig = self.config
        if cfg.noise_std < 0 or cfg.max_shift < 0:
            raise ConfigError(f"perturbation noise_std={cfg.noise_std}, max_shift={cfg.max_shift} must be ≥ 0",
                              "use e.g. noise_std 0.1, max_shift 1")
        if cfg.oversample < 1 or cfg.score_perturbations < 1:
            raise ConfigError("oversample and score_perturbations must be ≥ 1", "use e.g. oversample 1")
        if cfg.grad_mode not in ("per_sample", "batch"):
            raise ConfigError(f"unknown grad_mode {cfg.grad_mode!r}", "use per_sample or batch")
        scripted = isinstance(self.model.module, torch.jit.ScriptModule)
        if cfg.grad_mode == "per_sample" and cfg.grad_weight > 0 and scripted:
            # torch.func cannot take per-sample gradients through TorchScript: the batch form, said and recorded
            warnings.warn("TorchScript model: per-sample parameter gradients are not available, so the gradient "
                          "term uses grad_mode='batch' (the norm of the batch's mean-loss gradient)", UserWarning,
                          stacklevel=2)
            self.config = cfg = dataclasses.replace(cfg, grad_mode="batch")
        if cfg.grad_mode == "batch" and cfg.grad_weight > 0 and not any(
                p.requires_grad for p in self.model.module.parameters()):
            raise ConfigError("grad_mode='batch' needs the classifier's parameters with requires_grad",
                              "use grad_mode='per_sample' or grad_weight=0")
        self.init_training(None if cfg.bounded_output else (-math.inf, math.inf))

    # --- loss ---------------------------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        """The nine weights; terms with weight 0 are not computed."""
        c: TLDRConfig = self.config
        w = {"kl": c.kl_weight, "kl_pert": c.kl_pert_weight, "ce": c.ce_weight, "ce_pert": c.ce_pert_weight,
             "cos": c.cosine_weight, "ortho": c.ortho_weight, "tv": c.tv_weight, "pix": c.pixel_weight,
             "grad": c.grad_weight}
        if c.bounded_output:
            w["pix"] = 0.0  # identically 0 for a sigmoid output
        return {k: v for k, v in w.items() if v != 0 or k in ("kl", "ce")}

    def loss_terms(self, x: torch.Tensor, cond: Condition) -> dict[str, torch.Tensor]:
        """Unweighted terms for generated inputs ``x`` (N×shape, data space) made for ``cond``."""
        cfg: TLDRConfig = self.config
        w = self.loss_weights()
        feats, logits = self.features(x)  # (N, D), (N, K)
        groups = cond.labels if cfg.within_class else None
        t = {"kl": kl_to_target(logits, cond.target), "ce": ce_to_label(logits, cond.labels)}
        if "cos" in w:
            t["cos"] = feature_cosine(feats, groups=groups)
        if "ortho" in w:
            t["ortho"] = feature_orthogonality(feats, groups=groups)
        if "kl_pert" in w or "ce_pert" in w:  # the same targets for a perturbed copy of each sample
            lp = self.model.logits(perturb(x, cfg.noise_std, cfg.max_shift, self.model.input_range, self.rng))
            t["kl_pert"], t["ce_pert"] = kl_to_target(lp, cond.target), ce_to_label(lp, cond.labels)
        if "tv" in w:
            t["tv"] = total_variation(x)
        if "pix" in w:
            t["pix"] = pixel_range(x, *self.model.input_range)
        if "grad" in w:
            if cfg.grad_mode == "per_sample":
                t["grad"] = per_sample_grad_norm(self.model, x, cond.labels).mean()
            else:  # ‖∇θ mean CE‖: one double backward through the batch
                t["grad"] = param_grad_norm(ce_to_label(logits, cond.labels), self.model.module.parameters())
        return t

    # --- candidates ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def rank_scores(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0,
                    batch: int = 256) -> dict[str, torch.Tensor]:
        """Attacker-side per-candidate figures (no ground truth): ``confidence`` p(y|x), ``robustness`` = mean
        p(y|x′) over ``score_perturbations`` perturbed copies x′, ``grad_norm`` ‖∇θ CE(f(x), y)‖ (lower = more
        training-like). All N values on the CPU."""
        from ..metrics.functional import class_probabilities

        cfg: TLDRConfig = self.config
        gen = torch.Generator().manual_seed(20_011 + seed)
        r, dev = cfg.score_perturbations, self.model.device
        out: dict[str, list[torch.Tensor]] = {"confidence": [], "robustness": [], "grad_norm": []}
        for i in range(0, len(y), batch):
            xb, yb = x[i:i + batch].to(dev), y[i:i + batch]
            out["confidence"].append(class_probabilities(self.model.logits(xb).cpu(), yb))
            xp = perturb(xb.repeat(r, *[1] * (xb.dim() - 1)), cfg.noise_std, cfg.max_shift, self.model.input_range,
                         gen)  # (r·B, ...): copy j of sample i at row j·B + i
            pp = class_probabilities(self.model.logits(xp).cpu(), yb.repeat(r))
            out["robustness"].append(pp.view(r, -1).mean(0))
            with torch.enable_grad():
                try:
                    gn = per_sample_grad_norm(self.model, xb, yb, create_graph=False)
                except ConfigError:  # torch.func cannot run this model per sample (e.g. TorchScript): one by one
                    gn = _grad_norm_loop(self.model, xb, yb.to(dev))
                out["grad_norm"].append(gn.cpu())
        return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}

    @torch.no_grad()
    def sample(self, n: int | None = None, *, seed: int = 0) -> Candidates:
        """``n`` candidates (default ``samples_per_class`` × classes), balanced over the classes, grouped by class and
        best-ranked first within each class; with ``oversample`` k the best n of k·n draws."""
        from ..metrics.functional import class_assignment

        cfg: TLDRConfig = self.config
        n = n if n is not None else cfg.samples_per_class * len(self.classes)
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}", "ask for at least one candidate")
        x, y = self._generate(n * cfg.oversample, torch.Generator().manual_seed(seed))  # grouped by class
        figs = self.rank_scores(x, y, seed)
        key = -figs["grad_norm"] if cfg.rank_by == "grad_norm" else figs[cfg.rank_by]  # higher = better
        per = (torch.arange(n) % len(self.classes)).bincount(minlength=len(self.classes))  # n balanced, as drawn
        keep = []
        for j, c in enumerate(self.classes.tolist()):  # one sort per class (K iterations, not per sample)
            idx = torch.nonzero(y == c).flatten()
            keep.append(idx[torch.argsort(key[idx], descending=True)[:int(per[j])]])  # best-ranked first
        keep_t = torch.cat(keep)
        x, y = x[keep_t.to(x.device)].detach().cpu(), y[keep_t]
        figs = {name: v[keep_t] for name, v in figs.items()}
        score = key[keep_t]
        logits = torch.cat([self.model.logits(x[i:i + 4096].to(self.model.device)) for i in range(0, n, 4096)]).cpu()
        info = {"method": "tldr", "seed": seed, "config": config_dict(cfg), "generator": spec_dict(self.spec),
                "feature_layer": self.features.layer, "steps_run": self.step, "wall_time_s": self.elapsed,
                "curve": self.curve, "rank_by": cfg.rank_by, "drawn": int(len(key)),
                **class_assignment(logits, y)}
        return Candidates(x, y, score, arrays=figs, info=info)

    def invert(self, n: int | None = None, *, seed: int = 0, out: str | Path | None = None,
               resume: bool = False) -> Candidates:
        """Train the generator (``config.steps`` steps, or until ``stop_at``), then draw and rank ``n`` candidates.

        Args:
            n: candidates to return (default ``samples_per_class`` × number of classes), balanced over the classes.
            seed: seeds the generator's initialisation, the training stream, the draws and the scores; in run.json.
            out: directory for generator.safetensors, candidates.npz, run.json and the PNG grids; holds a
                resumable state while training.
            resume: continue from ``out``'s last state (the same result as an uninterrupted run).

        Returns:
            :class:`Candidates`: x in data space, y the conditioning classes, score the attacker-side ranking score
            (``rank_by``), arrays ``confidence``, ``robustness``, ``grad_norm``, and info (config, curve, timings).
        """
        return self.run(n, seed=seed, out=out, resume=resume)
