"""The reference victim and the demo: a bias-free MLP 64-1000-1000-1 trained on digits parity to zero training error
(the setting of Haim et al. 2022, scaled to the embedded 8×8 digits), then audited."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .audit import AuditResult, audit
from .data import load_data, make_task
from .models.checkpoint import is_checkpoint
from .models.loaded import LoadedModel
from .models.loading import load_model
from .train import TrainConfig, train

#: How the reference victim is trained (ours, measured in benchmarks/kkt_digits.py; see docs/kkt.md).
REFERENCE_ARCH = "mlp:1000,1000"
REFERENCE_OPTIONS = {"bias": "none", "init_scale": 0.03}
REFERENCE_TRAIN = TrainConfig(optimizer="gd", lr=3.0, epochs=20_000, target_loss=1e-5, mean_subtract=True,
                              log_every=100)


def reference_victim(n_per_class: int = 50, *, weight_decay: float | None = None, seed: int = 0,
                     out: str | Path | None = None, device: str = "auto",
                     show_progress: bool | None = None) -> LoadedModel:
    """Train (or, when ``out`` already holds it, load) the reference KKT victim on digits parity.

    Args:
        n_per_class: members per class (even / odd); the rest of digits are the held-out non-members.
        weight_decay: override the reference weight decay.
        seed: chooses the members and seeds training.
        out: checkpoint directory.
    """
    if out is not None and is_checkpoint(out):
        return load_model(out, device=device)
    split = make_task(load_data("digits"), "parity", n_per_class=n_per_class, seed=seed)
    cfg = dataclasses.replace(REFERENCE_TRAIN, seed=seed,
                              **({"weight_decay": weight_decay} if weight_decay is not None else {}))
    return train(split, REFERENCE_ARCH, cfg, out=out, device=device, show_progress=show_progress,
                 **REFERENCE_OPTIONS)


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, device: str = "auto") -> AuditResult:
    """Train the reference victim into ``out/victim`` (reused when present) and audit it into ``out/audit``."""
    out = Path(out)
    victim = reference_victim(seed=seed, out=out / "victim", device=device)
    return audit(victim, out=out / "audit", seed=seed, device=device)
