"""Generator network inversion (Suhail & Sethi 2024, "Network Inversion of Convolutional Neural Networks",
arXiv 2407.18002, and arXiv 2411.17777): one conditioned generator G(z, c) learns to produce inputs that the frozen
classifier f assigns to class c, with diversity pushed by the features of the batch.

Loss (``losses.inversion``): α·KL(P ‖ softmax f(G)) + β·CE(f(G), argmax P) + γ·Cos(F) + δ·‖FFᵀ − I‖², where P is
the conditioning distribution (soft vector, one-hot, ...; see ``_conditioning``) and F the classifier's features of
the generated batch (``models.features``). The papers give no weights, latent size, dropout rate, feature layer,
optimiser or schedule: our defaults are measured in ``benchmarks/invert_digits.py`` (docs/generator.md).

Output of :meth:`GeneratorInversion.invert` with ``out=DIR``: ``generator.safetensors`` (weights),
``samples.npz`` (``x`` in data space, ``y``, ``score`` = classifier probability of the conditioning class),
``run.json`` (config, seed, generator spec, loss/assignment curve, timings) and PNG grids ``grid.png`` (all classes)
and ``grid_class{c}.png`` per class.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .._errors import ConfigError
from .._utils.checkpoint import load_state, save_state
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict, environment
from .._utils.seed import seed_everything
from ..losses.inversion import ce_to_label, feature_cosine, feature_orthogonality, kl_to_target
from ..models.features import Features
from ..models.loaded import LoadedModel
from ._conditioning import Conditioning, ConditioningMode
from ._generators import GeneratorSpec
from .base import Attack, Candidates

__all__ = ["GeneratorConfig", "GeneratorInversion", "load_generator"]

STATE = ".generator_state.pt"


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of :class:`GeneratorInversion`; every default's source is given (ours = measured, see
    ``benchmarks/invert_digits.py`` and docs/generator.md)."""

    conditioning: ConditioningMode = "vector+matrix"  # the paper's final choice (2407.18002)
    latent_dim: int = 64  # ours, measured
    width: int = 64  # ours: channels of the last up-sampling block (doubled per block towards the base)
    dropout: float = 0.3  # ours, measured (paper: "heavy", rate not given; re-implementations use 0.1-0.4)
    embed_dim: int = 16  # ours: label-embedding width (conditioning="embedding" only)
    temperature: float = 0.1  # ours, measured (paper: softmax(v), T = 1, leaves ~10% of samples in other classes)
    kl_weight: float = 1.0  # α, ours, measured
    ce_weight: float = 1.0  # β, ours, measured
    cosine_weight: float = 1.5  # γ, ours, measured
    ortho_weight: float = 1.5  # δ, ours, measured
    within_class: bool = True  # ours, measured: diversity terms over same-class pairs only (paper: whole batch)
    feature_layer: str | None = None  # None: input of the last linear layer (models.features); ours
    steps: int = 600  # ours, measured: enough for ≥ 99% assignment on the digits CNN
    batch_size: int = 64  # ours
    lr: float = 1e-3  # ours (Adam)
    beta1: float = 0.5  # ours: Adam β₁ as in DCGAN-style generator training
    schedule: Literal["constant", "cosine"] = "cosine"  # ours
    classes: tuple[int, ...] | None = None  # invert only these classes (None: all)
    samples_per_class: int = 32  # invert(n=None) draws this many per class
    stop_at: float | None = None  # stop once this fraction of a monitor batch lands in its class (attacker-side)
    monitor_every: int = 25  # steps between monitor points of the curve
    checkpoint_every: int = 200  # steps between resumable states (with out=...)
    grid_per_class: int = 16  # samples per class in the PNG grids


class GeneratorInversion(Attack):
    """Class-conditional inversion of a frozen classifier by training one conditioned generator.

    Args:
        model: the classifier (multiclass, or binary with one logit: two classes).
        config: :class:`GeneratorConfig`.

    Raises:
        ConfigError: an invalid class subset, conditioning or feature layer.

    Example:
        >>> from netinv.data import load_data, make_task
        >>> from netinv.train import TrainConfig, train
        >>> split = make_task(load_data("digits"), "classes:0,1", n_per_class=30, heldout_per_class=10)
        >>> victim = train(split, "mlp:32", TrainConfig(lr=0.5, epochs=300), show_progress=False)
        >>> cands = GeneratorInversion(victim, GeneratorConfig(steps=150)).invert(20, seed=0)
        >>> victim.accuracy(cands.x, cands.y) > 0.9
        True
    """

    def __init__(self, model: LoadedModel, config: GeneratorConfig | None = None) -> None:
        super().__init__(model, config or GeneratorConfig())
        cfg: GeneratorConfig = self.config
        k = model.num_classes
        self.classes = torch.arange(k) if cfg.classes is None else torch.tensor(sorted(set(cfg.classes)))
        if len(self.classes) == 0 or int(self.classes.min()) < 0 or int(self.classes.max()) >= k:
            raise ConfigError(f"classes {cfg.classes} are not classes of this {k}-class model",
                              f"pick classes among 0..{k - 1}")
        for name in ("steps", "batch_size", "latent_dim", "width", "samples_per_class", "monitor_every"):
            if getattr(cfg, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}", f"give a positive {name}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}", "use e.g. 0.3")
        self.spec = GeneratorSpec(tuple(model.input_shape), k, cfg.conditioning, cfg.latent_dim, cfg.width,
                                  cfg.dropout, cfg.embed_dim, tuple(model.input_range), cfg.temperature)
        self.cond = Conditioning(cfg.conditioning, k, cfg.temperature)
        self.features = Features(model, cfg.feature_layer)
        self.generator: torch.nn.Module | None = None
        self.step = 0
        self.curve: list[dict[str, float]] = []

    # --- state ------------------------------------------------------------------------------------------------
    def setup(self, seed: int = 0) -> None:
        """Build a fresh generator, optimiser and samplers, seeded (``invert`` calls it)."""
        cfg: GeneratorConfig = self.config
        seed_everything(seed)
        self.generator = self.spec.build().to(self.model.device)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        total = cfg.steps

        def factor(t: int) -> float:  # cosine decay to 0 at `steps`, then flat (fit() may be called again)
            return 1.0 if cfg.schedule == "constant" else 0.5 * (1 + math.cos(math.pi * min(t / total, 1.0)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.rng = torch.Generator().manual_seed(seed)  # conditions and latents (CPU, device independent)
        self.step, self.curve, self.elapsed = 0, [], 0.0

    def state_dict(self) -> dict[str, Any]:
        state = {"generator": self.generator.state_dict(), "opt": self.opt.state_dict(),
                 "sched": self.sched.state_dict(), "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
                 "step": self.step, "curve": self.curve, "elapsed": self.elapsed}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.generator.load_state_dict(st["generator"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.rng.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        if "cuda_rng" in st and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda_rng"])
        self.step, self.curve, self.elapsed = int(st["step"]), list(st["curve"]), float(st["elapsed"])

    # --- training ---------------------------------------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        """The four loss terms (unweighted) and the logits for generated inputs ``x`` made for ``cond``."""
        cfg: GeneratorConfig = self.config
        feats, logits = self.features(x)
        groups = cond.labels if cfg.within_class else None
        return {"kl": kl_to_target(logits, cond.target), "ce": ce_to_label(logits, cond.labels),
                "cos": feature_cosine(feats, groups=groups), "ortho": feature_orthogonality(feats, groups=groups),
                "logits": logits}

    def fit(self, steps: int, *, bar: Any = None, out: Path | None = None) -> bool:
        """Run ``steps`` optimisation steps from the current state. Returns True when ``stop_at`` was reached."""
        cfg: GeneratorConfig = self.config
        if self.generator is None:
            self.setup(0)
        dev, g = self.model.device, self.generator
        params = list(g.parameters())
        w = {"kl": cfg.kl_weight, "ce": cfg.ce_weight, "cos": cfg.cosine_weight, "ortho": cfg.ortho_weight}
        t0 = time.perf_counter() - self.elapsed
        for _ in range(steps):
            g.train()
            cond = self.cond.sample(cfg.batch_size, self.classes, self.rng).to(dev)
            z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=self.rng).to(dev)
            terms = self.loss_terms(g(z, cond), cond)
            loss = sum(w[k] * terms[k] for k in w)
            self.opt.zero_grad(set_to_none=True)
            loss.backward(inputs=params)  # gradients for the generator only; the classifier stays untouched
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(1, loss=float(loss.detach()))
            if self.step % cfg.monitor_every == 0:
                point = {"step": self.step, "time_s": self.elapsed, "loss": float(loss.detach()),
                         **{k: float(terms[k].detach()) for k in w}, "assigned": self.monitor()}
                self.curve.append(point)
                if cfg.stop_at is not None and point["assigned"] >= cfg.stop_at:
                    return True
            if out is not None and self.step % cfg.checkpoint_every == 0:
                save_state(out / STATE, self.state_dict())
        return False

    @torch.no_grad()
    def monitor(self, n: int | None = None) -> float:
        """Fraction of a fresh eval-mode batch the classifier assigns to its conditioning class (attacker-side)."""
        n = n or max(2048, 64 * len(self.classes))  # large: a lucky small batch must not trigger stop_at
        gen = torch.Generator().manual_seed(10_007 + self.step)  # independent of the training stream
        cand = self._generate(n, gen)
        return self.model.accuracy(cand[0], cand[1])

    @torch.no_grad()
    def _generate(self, n: int, gen: torch.Generator, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        cfg: GeneratorConfig = self.config
        dev = self.model.device
        self.generator.eval()  # BatchNorm running statistics; dropout stays active (ActiveDropout)
        labels = self.classes[torch.arange(n) % len(self.classes)].sort().values  # grouped by class
        xs = []
        for i in range(0, n, batch):
            cond = self.cond.for_labels(labels[i:i + batch], gen).to(dev)
            z = torch.randn(len(cond.labels), cfg.latent_dim, generator=gen).to(dev)
            xs.append(self.generator(z, cond))
        x = torch.cat(xs) if xs else torch.zeros(0, *self.model.input_shape, device=dev)
        return x, labels

    @torch.no_grad()
    def sample(self, n: int | None = None, *, seed: int = 0) -> Candidates:
        """``n`` samples (default ``samples_per_class`` × classes), balanced over the classes and grouped by class;
        ``score`` = the classifier's probability of the conditioning class."""
        from ..metrics.functional import class_assignment, class_probabilities

        cfg: GeneratorConfig = self.config
        n = n if n is not None else cfg.samples_per_class * len(self.classes)
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}", "ask for at least one sample")
        x, y = self._generate(n, torch.Generator().manual_seed(seed))
        logits = torch.cat([self.model.logits(x[i:i + 4096]) for i in range(0, n, 4096)]).cpu()
        info = {"method": "generator", "seed": seed, "config": config_dict(cfg), "generator": _spec_dict(self.spec),
                "feature_layer": self.features.layer, "steps_run": self.step, "wall_time_s": self.elapsed,
                "curve": self.curve, **class_assignment(logits, y)}
        return Candidates(x.detach().cpu(), y, class_probabilities(logits, y), info=info)

    def invert(self, n: int | None = None, *, seed: int = 0, out: str | Path | None = None,
               resume: bool = False) -> Candidates:
        """Train the generator (``config.steps`` steps, or until ``stop_at``), then draw ``n`` samples.

        Args:
            n: samples to return (default ``samples_per_class`` × number of classes), balanced over the classes.
            seed: seeds the generator's initialisation, the training stream and the samples; in run.json.
            out: directory for generator.safetensors, samples.npz, run.json and the PNG grids; holds a resumable
                state while training.
            resume: continue from ``out``'s last state (the same result as an uninterrupted run).

        Returns:
            :class:`Candidates` with x in data space, y the conditioning classes, score the classifier's
            probability of y, and info (config, curve, assigned fraction, mean confidence, timings).
        """
        cfg: GeneratorConfig = self.config
        outp = Path(out) if out is not None else None
        self.setup(seed)
        if resume and outp is not None and (outp / STATE).exists():
            self.load_state_dict(load_state(outp / STATE))
        stopped = any(cfg.stop_at is not None and p["assigned"] >= cfg.stop_at for p in self.curve)
        with progress_bar(cfg.steps, "invert", completed=self.step) as bar:
            if not stopped:
                self.fit(cfg.steps - self.step, bar=bar, out=outp)
        cands = self.sample(n, seed=seed)
        cands.info.update({"model": self.model.source, "environment": environment()})
        if outp is not None:
            self.save(outp, cands)
        return cands

    def save(self, out: Path, cands: Candidates) -> None:
        """Write generator.safetensors, samples.npz + run.json and the PNG grids to ``out``."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()}
        tmp = out / ".generator.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(out / "generator.safetensors")
        cands.save(out, "samples.npz")
        _save_grids(out, cands, self.model, self.config.grid_per_class)
        (out / STATE).unlink(missing_ok=True)


def _spec_dict(spec: GeneratorSpec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def _save_grids(out: Path, cands: Candidates, model: LoadedModel, per_class: int) -> None:
    """grid.png (one row per class) and grid_class{c}.png (rows of 8), scaled from input_range to [0, 1]."""
    from ..report.figures import save_image_grid

    if len(model.input_shape) != 3 or model.input_shape[0] not in (1, 3):
        return  # flat inputs have no picture
    lo, hi = model.input_range
    x = ((cands.x - lo) / (hi - lo)) if math.isfinite(lo) and math.isfinite(hi) else cands.x
    names = model.classes or [str(i) for i in range(model.num_classes)]
    rows, labels = [], []
    for c in torch.unique(cands.y).tolist():
        xc, sc = x[cands.y == c][:per_class], cands.score[cands.y == c][:per_class]
        rows.append(xc[:8])
        labels.append(str(names[c]) if c < len(names) else str(c))
        save_image_grid(list(xc.split(8)), out / f"grid_class{c}.png", title=f"class {labels[-1]}",
                        col_labels=[f"{float(s):.2f}" for s in sc[:8]])
    save_image_grid(rows, out / "grid.png", row_labels=labels, title="generated samples per class")


def load_generator(out: str | Path) -> torch.nn.Module:
    """Rebuild the generator an ``invert(out=...)`` run wrote (``run.json`` spec + ``generator.safetensors``)."""
    import json

    from safetensors.torch import load_file

    out = Path(out)
    try:
        spec_d = json.loads((out / "run.json").read_text())["generator"]
    except (OSError, KeyError, json.JSONDecodeError):
        raise ConfigError(f"{out} holds no generator run", "point at a directory written by netinv invert") from None
    spec = GeneratorSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec_d.items()})
    g = spec.build()
    g.load_state_dict(load_file(str(out / "generator.safetensors")))
    return g.eval()
