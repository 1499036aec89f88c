"""Attacks: one class per method, each with a frozen config and the common verb ``invert``.

>>> from netinv.attacks import KKTReconstruction, GeneratorInversion, TLDR
"""

from .base import Attack, Candidates
from .generator import GeneratorConfig, GeneratorInversion
from .kkt import KKTConfig, KKTReconstruction
from .tldr import TLDR, TLDRConfig

__all__ = ["TLDR", "Attack", "Candidates", "GeneratorConfig", "GeneratorInversion", "KKTConfig", "KKTReconstruction",
           "TLDRConfig"]
