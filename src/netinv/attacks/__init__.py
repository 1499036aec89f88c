"""Attacks: one class per method, each with a frozen config and the common verb ``invert``."""

from .base import Attack, Candidates

__all__ = ["Attack", "Candidates"]
