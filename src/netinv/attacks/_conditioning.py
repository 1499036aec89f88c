"""How a conditioned generator G(z, c) is told which class to produce (Suhail & Sethi 2024, arXiv 2407.18002).

Modes (``Conditioning(mode, K)``):
- ``embedding``: a learned K×E label embedding (the table lives in the generator); target P = one-hot(label).
- ``soft``: v ~ N(0, I_K), P = softmax(v / T), label = argmax P; the generator sees P only, never the label.
- ``hot``: P = one-hot(label), the generator sees it (TLDR's "hot" vectors, arXiv 2410.16884).
- ``matrix``: a K×K conditioning matrix of the one-hot label, concatenated as an extra channel at a generator
  layer of spatial size K×K.
- ``vector+matrix`` (default, the paper's final choice): the soft vector P AND the matrix built from P.
- ``hot+matrix``: one-hot vector and its matrix (for TLDR).

Matrix fill (the paper does not specify it): ``M_ij = max(P_i, P_j)``. For a one-hot P this sets row c and column c
of the label to 1 and everything else to 0 (the fill of a published re-implementation); for a soft P it is the
same cross, graded by P, so the label still is never shown explicitly.

Labels are drawn balanced (a random permutation of an equal share of each requested class) so every batch covers
every class; a soft vector is drawn for its label by swapping the largest Gaussian draw into the label's slot,
which keeps the distribution of P symmetric while fixing argmax P.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .._errors import ConfigError

ConditioningMode = Literal["embedding", "soft", "hot", "matrix", "vector+matrix", "hot+matrix"]
MODES: tuple[str, ...] = ("embedding", "soft", "hot", "matrix", "vector+matrix", "hot+matrix")

__all__ = ["MODES", "Condition", "Conditioning", "ConditioningMode", "balanced_labels", "conditioning_matrix"]


@dataclass
class Condition:
    """One batch of conditions.

    Attributes:
        labels: N int64 classes the samples are made for (argmax of ``target``).
        target: N×K distribution P the classifier's softmax is pulled towards (KL term).
        vector: N×K vector the generator sees (soft or one-hot P), or None.
        matrix: N×1×K×K conditioning matrix, or None.
    """

    labels: torch.Tensor
    target: torch.Tensor
    vector: torch.Tensor | None = None
    matrix: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Condition:
        return Condition(*(t.to(device) if t is not None else None
                           for t in (self.labels, self.target, self.vector, self.matrix)))


def conditioning_matrix(p: torch.Tensor) -> torch.Tensor:
    """N×K distributions -> N×1×K×K matrices ``M_ij = max(P_i, P_j)`` (one-hot: the label's row and column = 1).

    Example:
        >>> conditioning_matrix(torch.tensor([[0.0, 1.0, 0.0]]))[0, 0]
        tensor([[0., 1., 0.],
                [1., 1., 1.],
                [0., 1., 0.]])
    """
    return torch.maximum(p[:, :, None], p[:, None, :]).unsqueeze(1)


def balanced_labels(n: int, classes: torch.Tensor, generator: torch.Generator | None = None,
                    shuffle: bool = True) -> torch.Tensor:
    """``n`` labels cycling through ``classes`` (equal shares, ±1), randomly permuted unless ``shuffle=False``."""
    labels = classes[torch.arange(n) % len(classes)]
    return labels[torch.randperm(n, generator=generator)] if shuffle else labels


class Conditioning:
    """Draws conditions for a K-class generator.

    Args:
        mode: one of :data:`MODES`.
        num_classes: K.
        temperature: soft vectors use softmax(v / T) (1.0: the paper's softmax of a Gaussian draw).
    """

    def __init__(self, mode: str, num_classes: int, temperature: float = 1.0) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown conditioning {mode!r}", f"use one of: {', '.join(MODES)}")
        if num_classes < 2:
            raise ConfigError(f"conditioning needs at least 2 classes, got {num_classes}", "invert a classifier")
        if temperature <= 0:
            raise ConfigError(f"soft-vector temperature must be > 0, got {temperature}", "use e.g. 1.0")
        self.mode, self.num_classes, self.temperature = mode, num_classes, temperature

    @property
    def uses_embedding(self) -> bool:
        return self.mode == "embedding"

    @property
    def uses_matrix(self) -> bool:
        return self.mode in ("matrix", "vector+matrix", "hot+matrix")

    @property
    def vector_dim(self) -> int:
        """Width of the vector the generator sees (0 for ``matrix`` and ``embedding``)."""
        return self.num_classes if self.mode in ("soft", "hot", "vector+matrix", "hot+matrix") else 0

    def sample(self, n: int, classes: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> Condition:
        """``n`` balanced conditions over ``classes`` (default: all K)."""
        classes = torch.arange(self.num_classes) if classes is None else torch.as_tensor(classes).long()
        return self.for_labels(balanced_labels(n, classes, generator), generator)

    def for_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> Condition:
        """Conditions whose label (argmax P) is ``labels`` (N int64, on CPU)."""
        labels = labels.long().cpu()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"class labels must lie in 0..{self.num_classes - 1}", "pick classes the model has")
        hot = F.one_hot(labels, self.num_classes).float()  # (N, K)
        if self.mode in ("soft", "vector+matrix"):
            v = torch.randn(len(labels), self.num_classes, generator=generator)
            top = v.argmax(1)
            rows = torch.arange(len(labels))
            v_top, v_lab = v[rows, top].clone(), v[rows, labels].clone()
            v[rows, labels], v[rows, top] = v_top, v_lab  # swap: argmax lands on the label
            target = torch.softmax(v / self.temperature, 1)
        else:
            target = hot
        vector = target if self.vector_dim else None
        matrix = conditioning_matrix(target) if self.uses_matrix else None
        return Condition(labels, target, vector, matrix)
