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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .._errors import ConfigError, first_line
from .._utils.checkpoint import read_json_object
from .._utils.runinfo import config_dict
from ..losses.inversion import ce_to_label, feature_cosine, feature_orthogonality, kl_to_target
from ..models.loaded import LoadedModel
from ._conditioning import ConditioningMode
from ._generator_training import GeneratorTrainer, spec_dict
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
    # flat-input models (MLP generator) only: ours, measured on a 64-input MLP, seeds 0–2 (docs/generator.md):
    # BatchNorm lowers assignment from 98–99% to 96–97% here, so it is off (TLDR needs it on)
    mlp_batch_norm: bool = False
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


class GeneratorInversion(GeneratorTrainer, Attack):
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

    state_file = STATE
    run_label = "invert"
    samples_file = "samples.npz"

    def __init__(self, model: LoadedModel | str | Path, config: GeneratorConfig | None = None) -> None:
        super().__init__(model, config or GeneratorConfig())
        self.init_training()  # checks, generator spec, conditioning, features (shared skeleton)

    # --- training ---------------------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        cfg: GeneratorConfig = self.config
        return {"kl": cfg.kl_weight, "ce": cfg.ce_weight, "cos": cfg.cosine_weight, "ortho": cfg.ortho_weight}

    def loss_terms(self, x: torch.Tensor, cond: Any) -> dict[str, torch.Tensor]:
        """The four loss terms (unweighted) and the logits for generated inputs ``x`` made for ``cond``."""
        cfg: GeneratorConfig = self.config
        feats, logits = self.features(x)
        groups = cond.labels if cfg.within_class else None
        return {"kl": kl_to_target(logits, cond.target), "ce": ce_to_label(logits, cond.labels),
                "cos": feature_cosine(feats, groups=groups), "ortho": feature_orthogonality(feats, groups=groups),
                "logits": logits}

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
        info = {"method": "generator", "seed": seed, "config": config_dict(cfg), "generator": spec_dict(self.spec),
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
        return self.run(n, seed=seed, out=out, resume=resume)


def load_generator(out: str | Path) -> torch.nn.Module:
    """Rebuild the generator an ``invert(out=...)`` run wrote (``run.json`` spec + ``generator.safetensors``).

    The spec is built on the meta device first and its tensor shapes compared with the weights file, so a forged
    run.json cannot make netinv allocate a network larger than the weights it ships.

    Raises:
        ConfigError: no generator run in ``out``, or a spec and weights that do not match.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = Path(out)
    fix = "point at a directory written by netinv invert (run.json and generator.safetensors)"
    try:
        spec_d = read_json_object(out / "run.json")["generator"]
        spec = GeneratorSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec_d.items()})
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
        with safe_open(str(out / "generator.safetensors"), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise ConfigError(f"{out} holds no readable generator run ({type(e).__name__}: {first_line(e, 120)})",
                          fix) from None
    except Exception as e:  # safetensors' own errors (a corrupt header)
        raise ConfigError(f"cannot read {out / 'generator.safetensors'}: {first_line(e, 120)}", fix) from None
    if stored != expected:
        raise ConfigError(f"the generator spec in {out / 'run.json'} does not match generator.safetensors", fix)
    g = spec.build()
    g.load_state_dict(load_file(str(out / "generator.safetensors")))
    return g.eval()
