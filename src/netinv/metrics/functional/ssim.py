"""SSIM exactly as kornia computes it (``kornia.metrics.ssim(img1, img2, window_size=3)``), the image score of
Haim et al. 2022, "Reconstructing Training Data from Trained Neural Networks" (their evaluation code calls kornia and
averages the map per image). scikit-image's default SSIM (7×7 uniform window, no padding) is a different number.

The formula, per pixel, with local statistics taken by a Gaussian window (σ = 1.5; for 3×3 the 1-D weights are
0.307801, 0.384397, 0.307801) over reflect-padded images:

    SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2) + eps),  C1 = (k1 L)², C2 = (k2 L)²

with σx² = E[x²] − μx² (biased local variance, as kornia). The per-image score is the mean of the map over channels
and pixels. DSSIM = (1 − SSIM) / 2. Computed in float64 whatever the input dtype (returned in it): in float32 the
variance E[x²] − μx² loses up to ~1e-4, in kornia's float32 as well; in float64 netinv and kornia 0.9 agree to 1e-13.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..._errors import DataError

Reduction = Literal["none", "mean", "sum"]


def gaussian_window_1d(window_size: int = 3, sigma: float = 1.5, *, dtype: torch.dtype = torch.float64,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian weights at offsets −k..k (kornia's ``get_gaussian_kernel1d`` for odd sizes).

    Example:
        >>> [round(float(w), 6) for w in gaussian_window_1d(3, 1.5)]
        [0.307801, 0.384397, 0.307801]
    """
    offsets = torch.arange(window_size, dtype=dtype, device=device) - window_size // 2
    w = torch.exp(-offsets.pow(2) / (2.0 * sigma**2))
    return w / w.sum()


def _ssim_check_inputs(preds: torch.Tensor, target: torch.Tensor, window_size: int, sigma: float,
                       data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes, dtypes and parameters; returns both images in one common floating dtype."""
    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise DataError("ssim needs two torch tensors", "pass N×C×H×W float tensors")
    if preds.ndim != 4 or preds.shape != target.shape:
        raise DataError(f"ssim needs two N×C×H×W tensors of the same shape, got {tuple(preds.shape)} and "
                        f"{tuple(target.shape)}", "reshape both to N×C×H×W")
    if window_size < 1 or window_size % 2 == 0:
        raise DataError(f"SSIM window size {window_size} is not a positive odd number", "use an odd size such as 3")
    if sigma <= 0 or data_range <= 0:
        raise DataError(f"SSIM sigma ({sigma}) and data range ({data_range}) must be positive",
                        "use sigma=1.5 and data_range=1.0 for images in [0, 1]")
    pad = window_size // 2
    if min(preds.shape[-2:]) <= pad:
        raise DataError(f"images of {tuple(preds.shape[-2:])} are too small for reflect padding by {pad}",
                        "use a smaller window_size or larger images")
    dtype = torch.promote_types(preds.dtype, target.dtype)
    if not dtype.is_floating_point:  # uint8 images scored with data_range 1 would be meaningless, not an error
        raise DataError(f"ssim got {str(dtype).removeprefix('torch.')} images",
                        "convert them to float in [0, data_range] first, e.g. x.float() / 255 with data_range=1")
    preds, target = preds.to(dtype), target.to(dtype)
    if not (torch.isfinite(preds).all() and torch.isfinite(target).all()):
        raise DataError("ssim inputs contain NaN or inf", "score finite images only")
    return preds, target


def _filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Depthwise Gaussian filter with reflect padding: N×C×H×W -> N×C×H×W (kornia ``filter2d``, border reflect)."""
    n, c, h, wd = x.shape
    k = w.numel()
    kernel = torch.outer(w, w).to(x.dtype).view(1, 1, k, k)
    xp = F.pad(x.reshape(n * c, 1, h, wd), (k // 2,) * 4, mode="reflect")  # (N·C, 1, H+2p, W+2p)
    return F.conv2d(xp, kernel).view(n, c, h, wd)


def ssim_map(preds: torch.Tensor, target: torch.Tensor, *, window_size: int = 3, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """The SSIM index map, N×C×H×W (see the module docstring for the formula and defaults' source: kornia)."""
    preds, target = _ssim_check_inputs(preds, target, window_size, sigma, data_range)
    dtype = preds.dtype  # computed in float64: E[x²] − μ² loses ~1e-4 in float32 (kornia's float32 as well)
    preds, target = preds.double(), target.double()
    w = gaussian_window_1d(window_size, sigma, dtype=preds.dtype, device=preds.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # the five local moments in one filtering pass: (5·N, C, H, W) -> five N×C×H×W maps
    stats = _filter(torch.cat([preds, target, preds * preds, target * target, preds * target]), w)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.chunk(5)
    sigma_x = e_xx - mu_x * mu_x  # biased local variances, as kornia
    sigma_y = e_yy - mu_y * mu_y
    sigma_xy = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
    return (num / (den + eps)).to(dtype)


def _ssim_per_image(preds: torch.Tensor, target: torch.Tensor, **params: float) -> torch.Tensor:
    """Per-image SSIM, N: the map averaged over channels and pixels."""
    return ssim_map(preds, target, **params).flatten(1).mean(1)


def _ssim_reduce(scores: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return scores
    if reduction == "mean":
        return scores.mean()
    if reduction == "sum":
        return scores.sum()
    raise DataError(f"unknown reduction {reduction!r}", "use 'none', 'mean' or 'sum'")


def ssim(preds: torch.Tensor, target: torch.Tensor, *, window_size: int = 3, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, data_range: float = 1.0, eps: float = 1e-12, reduction: Reduction = "none") -> torch.Tensor:
    """Structural similarity per image (kornia's formula; defaults are Haim et al.'s ``window_size=3``).

    Args:
        preds: N×C×H×W images (e.g. reconstructions scaled to [0, data_range]).
        target: N×C×H×W reference images, same shape.
        window_size: side of the Gaussian window (odd). Default: 3 (Haim et al.).
        sigma: Gaussian σ. Default: 1.5 (kornia, fixed there).
        k1, k2: stabilisers, C1 = (k1·data_range)², C2 = (k2·data_range)². Default: 0.01, 0.03.
        data_range: the images' value range L. Default: 1.0.
        eps: added to the denominator (kornia). Default: 1e-12. So two identical constant images score just below 1
            (0.99998889 for two all-zero images in float64, whose C1·C2 is of the order of eps), as in kornia.
        reduction: ``none`` (N scores), ``mean`` or ``sum``.

    Returns:
        N per-image scores (or their mean/sum), in the inputs' floating dtype.

    Raises:
        DataError: not N×C×H×W, shapes differ, integer images, non-finite values, images too small, bad
            parameters.

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> ssim(x, x).tolist() == [1.0, 1.0]
        True
    """
    scores = _ssim_per_image(preds, target, window_size=window_size, sigma=sigma, k1=k1, k2=k2,
                             data_range=data_range, eps=eps)
    return _ssim_reduce(scores, reduction)


def dssim(preds: torch.Tensor, target: torch.Tensor, **kwargs: float | str) -> torch.Tensor:
    """Structural dissimilarity (1 − SSIM) / 2 per image; keyword arguments as :func:`ssim`."""
    return (1 - ssim(preds, target, **kwargs)) / 2  # type: ignore[arg-type]
