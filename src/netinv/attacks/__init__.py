"""Attacks: one class per method, each with a frozen config and the common verb ``invert``.

>>> from netinv.attacks import KKTReconstruction, GeneratorInversion, TLDR
"""

from .base import Attack, Candidates
from .generator import GeneratorConfig, GeneratorInversion
from .kkt import KKTConfig, KKTReconstruction
from .tldr import TLDR, TLDRConfig

__all__ = ["TLDR", "Attack", "Candidates", "GeneratorConfig", "GeneratorInversion", "KKTConfig", "KKTReconstruction",
           "TLDRConfig"]


def __getattr__(name: str) -> object:
    """``netinv.attacks.sweep`` loads on first use (it needs Optuna, which the attacks themselves do not)."""
    if name == "sweep":
        import importlib

        return importlib.import_module(f"{__name__}.sweep")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
