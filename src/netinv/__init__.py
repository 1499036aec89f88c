"""netinv: invert trained neural networks.

What a released classifier reveals about its input space and its training data: KKT training-set reconstruction
(Haim et al. 2022; Buzaglo et al. 2023), generator network inversion (Suhail & Sethi 2024) and TLDR, and exact SAT
inversion of binarised networks (Suhail, Chakraborty & Sethi 2024), with leakage measured against null baselines.
"""

from ._errors import ConfigError, DataError, DivergedError, ModelError, NetinvError, SolverError
from .audit import AuditResult, SeedsAudit, audit, audit_seeds
from .data import Dataset, TaskSplit, load_data, load_model_data, make_task
from .metrics import evaluate
from .models.loaded import LoadedModel
from .models.loading import load_model
from .train import TrainConfig, train

__all__ = ["AuditResult", "ConfigError", "DataError", "Dataset", "DivergedError", "LoadedModel", "ModelError",
           "NetinvError", "SeedsAudit", "SolverError", "TaskSplit", "TrainConfig", "audit", "audit_seeds", "evaluate",
           "load_data", "load_model", "load_model_data", "make_task", "train"]

_SUBPACKAGES = {"apps", "attacks", "data", "demo", "losses", "metrics", "models", "report", "sat"}


def __getattr__(name: str) -> object:
    """``netinv.sat.invert``, ``netinv.apps.ood.garbage_ood`` … after a plain ``import netinv``: subpackages load on
    first use (sat needs PySAT; none of them is imported up front)."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
