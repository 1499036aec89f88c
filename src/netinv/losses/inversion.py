"""Generator-inversion and TLDR loss terms (Suhail & Sethi 2024: arXiv 2407.18002, 2411.17777; TLDR 2410.16884).

Generator inversion minimises ``α·KL(P ‖ softmax f(G)) + β·CE(f(G), argmax P) + γ·Cos(F) + δ·Ortho(F)`` over the
generator G, where F are the classifier's features of the generated batch. TLDR adds total variation, a pixel-range
prior and the norm of the classifier's parameter gradient. Every term is a pure function of tensors; the attacks
weight and sum them.

Logits are N×K. A binary model with ONE logit z is read as the two logits [0, z] (softmax = [1-σ(z), σ(z)]), so
every term works for it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F

from .._errors import ConfigError

__all__ = ["as_class_logits", "ce_to_label", "feature_cosine", "feature_orthogonality", "kl_to_target",
           "param_grad_norm", "pixel_range", "total_variation"]

Reduction = Literal["mean", "sum", "none"]


def as_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """N×1 binary logits -> N×2 class logits ``[0, z]``; N×K (K ≥ 2) unchanged."""
    if logits.dim() != 2:
        raise ConfigError(f"logits must be N×K, got shape {tuple(logits.shape)}", "pass the model's raw outputs")
    return torch.cat([torch.zeros_like(logits), logits], 1) if logits.shape[1] == 1 else logits


def _reduce(v: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    if reduction == "none":
        return v
    raise ConfigError(f"unknown reduction {reduction!r}", "use mean, sum or none")


def kl_to_target(logits: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """KL(P ‖ softmax(logits)) = Σ_k P_k (log P_k − log softmax_k), per sample (0·log 0 = 0).

    Args:
        logits: N×K (or N×1 binary) classifier logits.
        target: N×K target distribution P (rows sum to 1), e.g. a soft or one-hot conditioning vector.
        reduction: ``mean`` over the batch (default), ``sum`` or ``none`` (N values).

    Returns:
        The KL divergence (≥ 0).

    Example:
        >>> round(float(kl_to_target(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))), 4)  # log 2
        0.6931
    """
    logp = F.log_softmax(as_class_logits(logits), 1)
    if target.shape != logp.shape:
        raise ConfigError(f"target shape {tuple(target.shape)} does not match logits {tuple(logp.shape)}",
                          "give one K-class distribution per sample")
    kl = torch.xlogy(target, target) - target * logp  # xlogy: 0·log 0 = 0 for one-hot targets
    return _reduce(kl.sum(1), reduction)


def ce_to_label(logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Cross-entropy of the logits to integer labels (the conditioning label argmax P).

    Args:
        logits: N×K (or N×1 binary) logits.
        labels: N int64 class indices.
        reduction: ``mean`` (default), ``sum`` or ``none``.
    """
    return F.cross_entropy(as_class_logits(logits), labels.long(), reduction=reduction)


def _cosine_matrix(features: torch.Tensor) -> torch.Tensor:
    f = F.normalize(features.flatten(1), dim=1, eps=1e-12)  # (N, D), unit rows
    return f @ f.T  # (N, N) cosine similarities, diagonal 1


def _pair_mask(n: int, groups: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(N, N) bool: pairs i ≠ j counted (all, or those in the same group)."""
    mask = ~torch.eye(n, dtype=torch.bool, device=device)
    if groups is not None:
        g = groups.to(device).flatten()
        mask &= g[:, None] == g[None, :]
    return mask


def feature_cosine(features: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean off-diagonal cosine similarity of the batch's features (low = diverse samples).

    Args:
        features: N×D (any N×... is flattened) classifier features of a batch.
        groups: optional N labels; only pairs with the same label count (diversity within each class).

    Returns:
        ``Σ_{i≠j} cos(f_i, f_j) / #pairs``; 0 when there is no pair.

    Example:
        >>> round(float(feature_cosine(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))), 4)  # cos 45°
        0.7071
    """
    n = features.shape[0]
    mask = _pair_mask(n, groups, features.device)
    if not bool(mask.any()):
        return features.sum() * 0.0
    return _cosine_matrix(features)[mask].mean()


def feature_orthogonality(features: torch.Tensor, groups: torch.Tensor | None = None,
                          reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """‖F Fᵀ − I‖²_F with L2-normalised feature rows F (the batch's features pushed towards orthogonality).

    Args:
        features: N×D classifier features.
        groups: optional N labels; only same-label entries of the Gram matrix count.
        reduction: ``sum`` is the paper's squared Frobenius norm; ``mean`` (default) divides it by the number of
            entries counted (N² without groups, including the zero diagonal) so the weight does not depend on the
            batch size.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> round(float(feature_orthogonality(f, reduction="sum")), 4)  # 2 · cos²45°
        1.0
    """
    n = features.shape[0]
    keep = _pair_mask(n, groups, features.device) | torch.eye(n, dtype=torch.bool, device=features.device)
    g = _cosine_matrix(features)
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    sq = (g - eye).pow(2)[keep]
    return sq.mean() if reduction == "mean" else sq.sum()


def total_variation(x: torch.Tensor, p: int = 1, reduction: Reduction = "mean") -> torch.Tensor:
    """Anisotropic total variation of images: mean over pixels of |Δ_h x|^p plus mean of |Δ_w x|^p, per image.

    Args:
        x: N×C×H×W images (N×D flat inputs have no neighbours: the result is 0).
        p: 1 (absolute differences, default) or 2 (squared).
        reduction: over the batch.
    """
    if x.dim() != 4:
        return _reduce(x.new_zeros(x.shape[0]), reduction)
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().pow(p).flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().pow(p).flatten(1).mean(1)
    return _reduce(dh + dw, reduction)


def pixel_range(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0, reduction: Reduction = "mean") -> torch.Tensor:
    """Squared distance of each value from the valid range [lo, hi], averaged per sample (0 inside the range).

    Example:
        >>> round(float(pixel_range(torch.tensor([[1.5, 0.5, -1.0]]))), 4)  # (0.25 + 0 + 1) / 3
        0.4167
    """
    out = F.relu(x - hi).pow(2) + F.relu(lo - x).pow(2)
    return _reduce(out.flatten(1).mean(1), reduction)


def param_grad_norm(loss: torch.Tensor, params: Iterable[torch.Tensor], squared: bool = False) -> torch.Tensor:
    """‖∇_θ loss‖₂ over ``params``, differentiable (double backward) so it can be minimised as a penalty.

    Args:
        loss: a scalar that depends on ``params`` (e.g. CE of the classifier on generated samples).
        params: the classifier's parameters θ (those with ``requires_grad``).
        squared: return ‖·‖² instead of ‖·‖.
    """
    ps = [p for p in params if p.requires_grad]
    if not ps:
        raise ConfigError("param_grad_norm got no parameters that require gradients",
                          "pass the classifier's parameters with requires_grad=True")
    grads = torch.autograd.grad(loss, ps, create_graph=True, allow_unused=True)
    sq = sum((g.pow(2).sum() for g in grads if g is not None), loss.new_zeros(()))
    return sq if squared else sq.clamp_min(1e-24).sqrt()
