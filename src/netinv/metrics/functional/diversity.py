"""Diversity of a set of samples: the mean pairwise L2 distance, in pixels or in any feature space, overall or per
class. Used for generator inversion (Suhail & Sethi 2024), whose papers show grids but give no diversity number:
compare the figure of the generated samples with the same figure for real data of that class.
"""

from __future__ import annotations

import torch

from ..._errors import DataError


def mean_pairwise_distance(x: torch.Tensor, *, chunk_size: int = 2048, dtype: torch.dtype = torch.float64) -> float:
    """Mean L2 distance over all pairs i ≠ j of the rows of ``x`` (flattened past the first axis).

    Args:
        x: N×... samples (images, feature vectors).
        chunk_size: rows per ``torch.cdist`` call (memory chunk_size × N).
        dtype: computation dtype. Default: float64.

    Returns:
        The mean distance; NaN when N < 2.

    Example:
        >>> mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        5.0
    """
    flat = torch.as_tensor(x).detach().flatten(1).to(dtype)
    n = flat.shape[0]
    if n < 2:
        return float("nan")
    if not torch.isfinite(flat).all():
        raise DataError("samples contain NaN or inf", "measure finite samples only")
    total = torch.zeros((), dtype=dtype)
    for i in range(0, n, chunk_size):  # chunks of rows, not a loop over samples
        d = torch.cdist(flat[i:i + chunk_size], flat)  # (chunk, N)
        rows = torch.arange(d.shape[0])
        d[rows, rows + i] = 0.0  # the self-distances (cdist's matmul path can leave rounding noise there)
        total += d.sum()
    return float(total / (n * (n - 1)))


def per_class_mean_pairwise_distance(x: torch.Tensor, labels: torch.Tensor,
                                     num_classes: int | None = None) -> dict[int, float]:
    """:func:`mean_pairwise_distance` within each class.

    Args:
        x: N×... samples.
        labels: N int class indices.
        num_classes: report classes 0..num_classes−1 (absent ones as NaN). Default: the classes present.

    Returns:
        class index -> mean pairwise distance (NaN for classes with fewer than two samples).
    """
    labels = torch.as_tensor(labels).flatten().cpu().to(torch.int64)
    if labels.numel() != x.shape[0]:
        raise DataError(f"{x.shape[0]} samples but {labels.numel()} labels", "give one label per sample")
    classes = range(num_classes) if num_classes is not None else torch.unique(labels).tolist()
    return {int(c): mean_pairwise_distance(x[labels == c]) for c in classes}
