"""Nearest-candidate matching by normalised cross-correlation (NCC), as in Haim et al. 2022's evaluation code
(``ncc_dist``): standardise every image per channel to zero mean and unit (unbiased) standard deviation, then take
the candidate at the smallest L2 distance. For 32×32 colour images the authors first downsample ×2 (bicubic).

Standardising makes the match invariant to a per-channel affine change of intensities with a positive scale, so an
un-normalised reconstruction (data space, any scale) is matched by its pattern, not its brightness.

Degenerate cases (ours; the protocol leaves them open, and Haim et al.'s code gives NaN there): a constant channel
standardises to zeros; a candidate that is constant in every channel carries no pattern and is never matched (it
would sit at correlation 0.5 from everything and win most matches) unless every candidate is constant; a constant
reference matches the first candidate; exact duplicate candidates resolve to the first copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._errors import DataError


def constant_channels(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W -> N×C bool: channels whose pixels are all equal (exactly; no scale-dependent threshold)."""
    flat = x.flatten(2)
    return flat.amax(2) == flat.amin(2)


def standardise(x: torch.Tensor, constant: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image, per-channel zero mean and unit standard deviation: N×C×H×W -> N×C×H×W.

    A constant channel (all pixels equal, or flagged in ``constant``, N×C) becomes all zeros instead of NaN.
    """
    flat = x.flatten(2)  # (N, C, H·W)
    const = (constant_channels(x) if constant is None else constant)[..., None]
    mean = flat.mean(2, keepdim=True)
    std = flat.std(2, keepdim=True) if flat.shape[2] > 1 else torch.ones_like(mean)  # unbiased, as the authors
    return ((flat - mean) / torch.where(const, torch.ones_like(std), std)).masked_fill(const, 0.0).view_as(x)


def auto_downsample(image_shape: tuple[int, ...]) -> bool:
    """The authors' rule for images shaped C×H×W: ×2 bicubic downsampling before matching for 32×32 colour."""
    return tuple(image_shape) == (3, 32, 32)


def _prepare(x: torch.Tensor, downsample: bool, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(dtype)
    const = constant_channels(x)  # before resampling, whose rounding would give a constant image a faint pattern
    if downsample:
        # PyTorch's bicubic (a = −0.75, align_corners=False, no antialiasing): name it when comparing elsewhere
        x = F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False, antialias=False)
    return standardise(x, const).flatten(1)  # (N, D)


_DISTANCE_BUDGET = 1 << 28  # bytes of float64 distances held at once (256 MiB: 640 references × 50 000 candidates)


def nearest_ncc(references: torch.Tensor, candidates: torch.Tensor, *, downsample: bool | None = None,
                chunk_size: int = 2048, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """For each reference image, the nearest candidate under NCC.

    Args:
        references: N×C×H×W (e.g. training images).
        candidates: M×C×H×W (e.g. reconstructions in data space; scale does not matter).
        downsample: ×2 bicubic before matching. Default None: only for 32×32 colour images (Haim et al.).
        chunk_size: at most this many references per ``torch.cdist`` call (fewer when M is so large that the
            chunk × M distances would pass 256 MiB).
        dtype: computation dtype. Default: float64.

    Returns:
        (index, distance): N int64 indices into ``candidates`` and the N L2 distances between the standardised
        images. Exact duplicates among the candidates resolve to the first copy (the matrix-product distances of
        two identical candidates can differ in the last bits); a candidate constant in every channel is never the
        match unless all are; a constant reference matches the first candidate that can be matched.

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
    ds = auto_downsample(tuple(references.shape[1:])) if downsample is None else downsample
    flat = constant_channels(candidates.to(dtype)).all(1)  # (M,) no pattern at all
    usable = (~flat).nonzero()[:, 0] if not bool(flat.all()) else torch.arange(candidates.shape[0])
    cand = _prepare(candidates[usable], ds, dtype)  # (M', D)
    # one row per distinct candidate, in order of first appearance, so exact ties go to the first copy
    uniq, inverse = torch.unique(cand, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), cand.shape[0], dtype=torch.int64).scatter_reduce(
        0, inverse, torch.arange(cand.shape[0]), "amin")
    order = torch.argsort(first)
    uniq, owner = uniq[order], usable[first[order]]
    idx, dist = [], []
    rows = max(1, min(chunk_size, _DISTANCE_BUDGET // (8 * uniq.shape[0])))  # memory bounded for any M as well
    for i in range(0, references.shape[0], rows):  # chunks of references, not a loop over samples
        chunk = references[i:i + rows].to(dtype)
        ref = _prepare(chunk, ds, dtype)
        d = torch.cdist(ref, uniq)  # (chunk, M'')
        blank = constant_channels(chunk).all(1)  # a constant reference: equidistant in exact arithmetic
        d[blank] = torch.where(torch.arange(d.shape[1]) == 0, 0.0, torch.inf).to(d.dtype)
        v, j = d.min(1)
        v[blank] = torch.linalg.vector_norm(uniq[0])  # its true distance to the first candidate
        idx.append(owner[j])
        dist.append(v)
    if not idx:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=dtype)
    return torch.cat(idx), torch.cat(dist)


def minmax_scale(x: torch.Tensor) -> torch.Tensor:
    """Scale each image (all channels together) to [0, 1], as ``transform_vmin_vmax_batch`` of Haim et al.

    A constant image becomes all zeros (only an exactly constant one: the scale of the image does not matter).
    """
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - lo
    return ((flat - lo) / torch.where(span > 0, span, torch.ones_like(span))).view_as(x)
