"""Nearest-candidate matching by normalised cross-correlation (NCC), as in Haim et al. 2022's evaluation code
(``ncc_dist``): standardise every image per channel to zero mean and unit (unbiased) standard deviation, then take
the candidate at the smallest L2 distance. For 32×32 colour images the authors first downsample ×2 (bicubic).

Standardising makes the match invariant to a per-channel affine change of intensities, so an un-normalised
reconstruction (data space, any scale) is matched by its pattern, not its brightness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._errors import DataError


def standardise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image, per-channel zero mean and unit standard deviation: N×C×H×W -> N×C×H×W.

    A constant channel (std < ``eps``) becomes all zeros instead of NaN.
    """
    flat = x.flatten(2)  # (N, C, H·W)
    mean = flat.mean(2, keepdim=True)
    std = flat.std(2, keepdim=True) if flat.shape[2] > 1 else torch.ones_like(mean)  # unbiased, as the authors
    return ((flat - mean) / std.clamp_min(eps)).view_as(x)


def _auto_downsample(shape: torch.Size) -> bool:
    """The authors' rule: ×2 bicubic downsampling for 32×32 colour images."""
    return shape[1] == 3 and shape[2] == 32 and shape[3] == 32


def _prepare(x: torch.Tensor, downsample: bool, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(dtype)
    if downsample:
        # PyTorch's bicubic (a = −0.75, align_corners=False, no antialiasing): name it when comparing elsewhere
        x = F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False, antialias=False)
    return standardise(x).flatten(1)  # (N, D)


def nearest_ncc(references: torch.Tensor, candidates: torch.Tensor, *, downsample: bool | None = None,
                chunk_size: int = 2048, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """For each reference image, the nearest candidate under NCC.

    Args:
        references: N×C×H×W (e.g. training images).
        candidates: M×C×H×W (e.g. reconstructions in data space; scale does not matter).
        downsample: ×2 bicubic before matching. Default None: only for 32×32 colour images (Haim et al.).
        chunk_size: references per ``torch.cdist`` call (memory is chunk_size × M distances).
        dtype: computation dtype. Default: float64, so near-ties resolve the same on every machine.

    Returns:
        (index, distance): N int64 indices into ``candidates`` (the first on ties) and the N L2 distances between
        the standardised images.

    Raises:
        DataError: shapes that are not N×C×H×W or that differ past the batch axis, no candidates.

    Example:
        >>> x = torch.rand(5, 1, 8, 8)
        >>> nearest_ncc(x[[1, 3]], 2 * x[[3, 1]] + 1)[0].tolist()  # NCC ignores the affine change
        [1, 0]
    """
    if references.ndim != 4 or candidates.ndim != 4 or references.shape[1:] != candidates.shape[1:]:
        raise DataError(f"cannot match references {tuple(references.shape)} with candidates "
                        f"{tuple(candidates.shape)}", "give both as N×C×H×W images of the same C×H×W")
    if candidates.shape[0] == 0:
        raise DataError("there are no candidates to match", "pass at least one candidate image")
    ds = _auto_downsample(references.shape) if downsample is None else downsample
    cand = _prepare(candidates, ds, dtype)  # (M, D)
    idx, dist = [], []
    for i in range(0, references.shape[0], chunk_size):  # chunks of references, not a loop over samples
        ref = _prepare(references[i:i + chunk_size], ds, dtype)
        d = torch.cdist(ref, cand)  # (chunk, M)
        v, j = d.min(1)
        idx.append(j)
        dist.append(v)
    if not idx:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=dtype)
    return torch.cat(idx), torch.cat(dist)


def minmax_scale(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each image (all channels together) to [0, 1], as ``transform_vmin_vmax_batch`` of Haim et al.

    A constant image becomes all zeros.
    """
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(x)
