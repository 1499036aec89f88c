"""What a classifier says about inputs: margins y·Φ(x) (Haim et al. 2022, Figure 4: training images on the margin
are the ones a KKT attack recovers; Buzaglo et al. 2023 for the multiclass margin) and how often generated samples
land in the class they were made for, with what confidence (generator inversion, Suhail & Sethi 2024).

Binary models have ONE logit z (class 1 iff z > 0); multiclass models have one logit per class.
"""

from __future__ import annotations

import torch

from ..._errors import ConfigError, DataError
from ...models.loaded import predicted_class


def _check(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.ndim != 2 or logits.shape[0] != torch.as_tensor(labels).numel():
        raise DataError(f"logits {tuple(logits.shape)} do not fit {torch.as_tensor(labels).numel()} labels",
                        "give N×K logits (K = 1 for a binary model) and N labels")
    y = torch.as_tensor(labels, device=logits.device).flatten().to(torch.int64)
    k = max(logits.shape[1], 2)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise DataError(f"labels outside 0..{k - 1} for a model with {logits.shape[1]} output(s)",
                        "give class indices of this model")
    return logits, y


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample margin: binary (2y − 1)·z; multiclass z_y − max_{k≠y} z_k. Positive = correctly classified.

    Args:
        logits: N×1 (binary) or N×K logits.
        labels: N class indices (0/1 for binary).

    Returns:
        N margins.

    Example:
        >>> margins(torch.tensor([[2.0], [-1.0]]), torch.tensor([0, 0])).tolist()
        [-2.0, 1.0]
    """
    z, y = _check(logits, labels)
    if z.shape[1] == 1:
        return (2 * y.to(z.dtype) - 1) * z[:, 0]
    own = z.gather(1, y[:, None])[:, 0]
    others = z.scatter(1, y[:, None], float("-inf"))  # mask the own class out of the max
    return own - others.max(1).values


def on_margin(margin: torch.Tensor, rel_tol: float = 0.1) -> torch.Tensor:
    """Which samples lie on the margin: correctly classified with a margin within ``rel_tol`` of the smallest positive
    one, i.e. ``0 < margin ≤ (1 + rel_tol) · min(margin > 0)`` (Haim et al.: the samples a KKT attack can recover).
    Misclassified samples (margin ≤ 0) are never on it; with none correctly classified, none is.

    Example:
        >>> on_margin(torch.tensor([2.0, 2.1, 3.0, -1.0])).tolist()
        [True, True, False, False]
    """
    if rel_tol < 0:
        raise ConfigError(f"rel_tol={rel_tol}", "give a relative tolerance >= 0, e.g. 0.1")
    m = torch.as_tensor(margin).flatten()
    pos = m > 0
    if not bool(pos.any()):
        return torch.zeros_like(pos)
    return pos & (m <= (1 + rel_tol) * m[pos].min())


def class_probabilities(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The probability the model gives each sample's class: sigmoid for one logit, softmax otherwise (N)."""
    z, y = _check(logits, labels)
    if z.shape[1] == 1:
        p1 = torch.sigmoid(z[:, 0])
        return torch.where(y == 1, p1, 1 - p1)
    return torch.softmax(z, 1).gather(1, y[:, None])[:, 0]


def class_assignment(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Fraction of samples the model assigns to their (conditioning) class, and the mean probability of that class.

    Example:
        >>> class_assignment(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))["assigned_fraction"]
        0.5
    """
    z, y = _check(logits, labels)
    pred = predicted_class(z)
    return {"assigned_fraction": float((pred == y).to(torch.float64).mean()),
            "mean_confidence": float(class_probabilities(z, y).to(torch.float64).mean())}
