"""The training skeleton every conditioned-generator attack shares (generator inversion, arXiv 2407.18002; TLDR,
arXiv 2410.16884): one generator G(z, c) trained against a frozen classifier f, with seeding, a resumable state,
the step loop (weighted sum of the attack's loss terms, live loss, monitor curve, periodic checkpoint), the
attacker-side monitor, balanced sampling, and the output helpers (generator weights, PNG grids).

An attack mixes :class:`GeneratorTrainer` into its :class:`~netinv.attacks.base.Attack` class, calls
:meth:`GeneratorTrainer.init_training` from ``__init__`` and defines :meth:`GeneratorTrainer.loss_terms` and
:meth:`GeneratorTrainer.loss_weights`. The config must carry the fields read here (``conditioning``, ``latent_dim``,
``width``, ``dropout``, ``embed_dim``, ``temperature``, ``feature_layer``, ``classes``, ``steps``, ``batch_size``,
``lr``, ``beta1``, ``schedule``, ``samples_per_class``, ``stop_at``, ``monitor_every``, ``checkpoint_every``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .._errors import ConfigError, check_finite_loss
from .._utils.checkpoint import atomic_write_bytes, finished_run, resume_state, safetensors_bytes, save_state
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict, environment
from .._utils.seed import cuda_rng_state, keeps_global_rng, seed_everything, set_cuda_rng_state
from ..models.features import Features
from ..models.loaded import LoadedModel
from ._conditioning import Condition, Conditioning
from ._generators import GeneratorSpec
from .base import Candidates, load_candidates

__all__ = ["GeneratorTrainer", "save_generator_weights", "save_grids", "spec_dict"]


class GeneratorTrainer:
    """Mixin: the state and step loop of a conditioned generator trained against ``self.model``."""

    model: LoadedModel
    config: Any
    state_file: str = ".generator_state.pt"  # resumable state inside ``out`` while training

    def init_training(self, input_range: tuple[float, float] | None = None) -> None:
        """Check the config, build the generator spec, conditioning and feature extractor (no weights yet).

        Args:
            input_range: the generator's output range (default: the model's ``input_range``; ``(-inf, inf)`` for
                an unbounded output).

        Raises:
            ConfigError: an invalid class subset, size, dropout, step size, loss weight, conditioning or feature
                layer.
        """
        cfg, model = self.config, self.model
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
        if not (math.isfinite(cfg.lr) and cfg.lr > 0):
            raise ConfigError(f"lr must be finite and > 0, got {cfg.lr}", "give e.g. --lr 0.001")
        for name, v in self.loss_weights().items():
            if v < 0 or not math.isfinite(v):
                raise ConfigError(f"loss weight {name} must be finite and ≥ 0, got {v}", "give a weight ≥ 0")
        rng = tuple(model.input_range) if input_range is None else tuple(input_range)
        self.spec = GeneratorSpec(tuple(model.input_shape), k, cfg.conditioning, cfg.latent_dim, cfg.width,
                                  cfg.dropout, cfg.embed_dim, rng, cfg.temperature, cfg.mlp_batch_norm)
        self.cond = Conditioning(cfg.conditioning, k, cfg.temperature)
        self.features = Features(model, cfg.feature_layer)
        self.generator: torch.nn.Module | None = None
        self.step = 0
        self.curve: list[dict[str, float]] = []

    # --- what an attack defines ---------------------------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor, cond: Condition) -> dict[str, torch.Tensor]:
        """Unweighted loss terms (names as in :meth:`loss_weights`) for generated inputs ``x`` made for ``cond``."""
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float]:
        """Term name -> weight; the step minimises Σ weight·term and records each term in the curve."""
        raise NotImplementedError

    # --- state --------------------------------------------------------------------------------------------------
    def setup(self, seed: int = 0) -> None:
        """Build a fresh generator, optimiser and samplers, seeded (``invert`` calls it)."""
        cfg = self.config
        seed_everything(seed)
        self.generator = self.spec.build().to(self.model.device)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        total = cfg.steps

        def factor(t: int) -> float:  # cosine decay to 0 at `steps`, then flat (fit() may be called again)
            return 1.0 if cfg.schedule == "constant" else 0.5 * (1 + math.cos(math.pi * min(t / total, 1.0)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.rng = torch.Generator().manual_seed(seed)  # conditions and latents (CPU, device independent)
        self.step, self.curve, self.elapsed = 0, [], 0.0
        # what a resume must match: the attack, every training setting, the seed and the model (with its range)
        self.settings = {"attack": type(self).__name__, "config": config_dict(cfg), "seed": seed,
                         "model": self.model.record(), "model_sha256": self.model.digest()}

    def state_dict(self) -> dict[str, Any]:
        state = {"settings": self.settings, "generator": self.generator.state_dict(), "opt": self.opt.state_dict(),
                 "sched": self.sched.state_dict(), "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
                 "step": self.step, "curve": self.curve, "elapsed": self.elapsed}
        if self.model.device.type == "cuda":  # the generator's dropout draws from the model device's generator
            state["cuda_rng"] = cuda_rng_state(self.model.device)
        return state

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.generator.load_state_dict(st["generator"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.rng.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        set_cuda_rng_state(st.get("cuda_rng"), self.model.device)  # older states hold every GPU's: a list
        self.step, self.curve, self.elapsed = int(st["step"]), list(st["curve"]), float(st["elapsed"])

    def stopped(self) -> bool:
        """Whether the recorded curve already reached ``stop_at`` (a resumed run that had stopped)."""
        stop = self.config.stop_at
        return any(stop is not None and p["assigned"] >= stop for p in self.curve)

    # --- training -----------------------------------------------------------------------------------------------
    def fit(self, steps: int, *, bar: Any = None, out: Path | None = None) -> bool:
        """Run ``steps`` optimisation steps from the current state. Returns True when ``stop_at`` was reached."""
        cfg = self.config
        if self.generator is None:
            self.setup(0)
        dev, g = self.model.device, self.generator
        params = list(g.parameters())
        w = self.loss_weights()
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
            monitor = self.step % cfg.monitor_every == 0
            save = out is not None and self.step % cfg.checkpoint_every == 0
            loss_v = float(loss.detach()) if bar is not None or monitor or save else math.nan  # a sync: only if used
            if bar is not None:
                bar.update(1, loss=loss_v)
            if monitor or save:  # never train on, or save, a NaN generator
                check_finite_loss(loss_v, "generator training", "lower --lr (e.g. a tenth of it)",
                                  at=f"step {self.step}", setting=f"lr {cfg.lr:g}")
            if monitor:
                point = {"step": self.step, "time_s": self.elapsed, "loss": loss_v,
                         **{k: float(terms[k].detach()) for k in w}, "assigned": self.monitor()}
                self.curve.append(point)
                if cfg.stop_at is not None and point["assigned"] >= cfg.stop_at:
                    return True
            if save:
                save_state(out / self.state_file, self.state_dict())
        return False

    #: progress-bar label and the file the samples go to (set by each attack)
    run_label: str = "invert"
    samples_file: str = "samples.npz"

    @keeps_global_rng
    def run(self, n: int | None, *, seed: int, out: str | Path | None, resume: bool) -> Candidates:
        """The body of every generator attack's ``invert``: train (resuming from ``out``), sample, save."""
        outp = Path(out) if out is not None else None
        self.setup(seed)
        k = len(self.classes)
        if n is not None and n > 0 and n % k:  # the samples go round the classes: some get one fewer, or none
            def classes(c: int) -> str:
                return "1 class gets" if c == 1 else f"{c} classes get"
            share = f"{classes(k - n)} none" if n < k else f"{classes(n % k)} {n // k + 1} samples, the others {n // k}"
            warnings.warn(f"n={n} samples for {k} classes: {share}; use a multiple of {k} for a balanced set",
                          UserWarning, stacklevel=4)  # run <- keeps_global_rng <- invert <- the caller
        if resume and finished_run(outp, self.state_file, self.samples_file, {**self.settings, "n": n}):
            return load_candidates(outp, self.samples_file)  # nothing left to continue: the finished run's result
        st = resume_state(outp, self.state_file, self.samples_file, self.settings, resume)
        if st is not None:
            self.load_state_dict(st)
        with progress_bar(self.config.steps, self.run_label, completed=self.step) as bar:
            if not self.stopped():
                self.fit(self.config.steps - self.step, bar=bar, out=outp)
        cands = self.sample(n, seed=seed)
        cands.info.update({**self.settings, "n": n, "environment": environment(self.model.device)})
        if outp is not None:
            self.save(outp, cands)
        return cands

    def save(self, out: Path, cands: Candidates) -> None:
        """Write generator.safetensors, the samples + run.json and the PNG grids to ``out``."""
        save_generator_weights(out, self.generator, self.settings["seed"])
        cands.save(out, self.samples_file)
        save_grids(out, cands, self.model, self.config.grid_per_class)
        (out / self.state_file).unlink(missing_ok=True)

    @torch.no_grad()
    def monitor(self, n: int | None = None) -> float:
        """Fraction of a fresh eval-mode batch the classifier assigns to its conditioning class (attacker-side)."""
        n = n or max(2048, 64 * len(self.classes))  # large: a lucky small batch must not trigger stop_at
        gen = torch.Generator().manual_seed(10_007 + self.step)  # independent of the training stream
        cand = self._generate(n, gen)
        return self.model.accuracy(cand[0], cand[1])

    @torch.no_grad()
    def _generate(self, n: int, gen: torch.Generator, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` eval-mode samples balanced over the classes, grouped by class: (x N×shape on the model's device,
        labels N on CPU)."""
        cfg = self.config
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


def spec_dict(spec: GeneratorSpec) -> dict[str, Any]:
    """A :class:`GeneratorSpec` as JSON-ready data (run.json's ``generator``)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def save_generator_weights(out: Path, generator: torch.nn.Module, seed: int | None = None) -> None:
    """``out/generator.safetensors``, written atomically (with the seed in its metadata)."""
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    atomic_write_bytes(out / "generator.safetensors", safetensors_bytes(state, {"format": "netinv-generator",
                                                                                "seed": str(seed)}))


def save_grids(out: Path, cands: Candidates, model: LoadedModel, per_class: int) -> None:
    """grid.png (one row per class) and grid_class{c}.png (rows of 8), scaled from input_range to [0, 1]."""
    from ..report.figures import save_image_grid

    if len(model.input_shape) != 3 or model.input_shape[0] not in (1, 3):
        return  # flat inputs have no picture
    lo, hi = model.input_range
    x = ((cands.x - lo) / (hi - lo)) if math.isfinite(lo) and math.isfinite(hi) else cands.x
    names = model.classes or [str(i) for i in range(model.num_classes)]
    meta = {"seed": cands.info.get("seed"), "record": "run.json"}
    rows, labels = [], []
    for c in torch.unique(cands.y).tolist():
        xc, sc = x[cands.y == c][:per_class], cands.score[cands.y == c][:per_class]
        rows.append(xc[:8])
        labels.append(str(names[c]) if c < len(names) else str(c))
        save_image_grid(list(xc.split(8)), out / f"grid_class{c}.png", title=f"class {labels[-1]}",
                        col_labels=[f"{float(s):.2f}" for s in sc[:8]], meta=meta)
    save_image_grid(rows, out / "grid.png", row_labels=labels, title="generated samples per class", meta=meta)
