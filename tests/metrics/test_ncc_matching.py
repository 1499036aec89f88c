"""NCC nearest-candidate matching against a brute-force loop, and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netinv._errors import DataError
from netinv.metrics.functional import minmax_scale, nearest_ncc, standardise


def brute_force(refs: torch.Tensor, cands: torch.Tensor) -> tuple[list[int], list[float]]:
    def std(img: np.ndarray) -> np.ndarray:  # per channel, unbiased std (as Haim et al.'s normalize_batch)
        return np.stack([(ch - ch.mean()) / ch.std(ddof=1) for ch in img])

    idx, dist = [], []
    for r in refs.double().numpy():
        d = [float(np.sqrt(((std(r) - std(c)) ** 2).sum())) for c in cands.double().numpy()]
        idx.append(int(np.argmin(d)))
        dist.append(min(d))
    return idx, dist


@pytest.mark.parametrize("chunk", [2, 2048])
def test_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(1)
    refs, cands = torch.rand(9, 3, 6, 5, generator=g), torch.rand(13, 3, 6, 5, generator=g)
    idx, dist = nearest_ncc(refs, cands, chunk_size=chunk)
    b_idx, b_dist = brute_force(refs, cands)
    assert idx.tolist() == b_idx
    assert dist.tolist() == pytest.approx(b_dist, abs=1e-9)


def test_invariant_to_per_channel_affine_changes():
    g = torch.Generator().manual_seed(2)
    refs = torch.rand(6, 3, 8, 8, generator=g)
    perm = torch.tensor([4, 0, 5, 1, 3, 2])
    scale = torch.tensor([2.0, 0.5, 7.0]).view(1, 3, 1, 1)
    cands = torch.cat([refs[perm] * scale - 3.0, torch.rand(20, 3, 8, 8, generator=g)])
    idx, dist = nearest_ncc(refs, cands)
    assert idx.tolist() == torch.argsort(perm).tolist()
    assert float(dist.max()) < 1e-5


def test_downsamples_32x32_colour_like_the_authors():
    g = torch.Generator().manual_seed(3)
    refs, cands = torch.rand(5, 3, 32, 32, generator=g), torch.rand(7, 3, 32, 32, generator=g)
    idx, dist = nearest_ncc(refs, cands)  # auto: 32×32 colour -> ×2 bicubic first
    small = lambda t: F.interpolate(t.double(), scale_factor=0.5, mode="bicubic")  # noqa: E731
    b_idx, b_dist = brute_force(small(refs), small(cands))
    assert idx.tolist() == b_idx and dist.tolist() == pytest.approx(b_dist, abs=1e-9)
    _, d_full = nearest_ncc(refs, cands, downsample=False)
    assert not torch.allclose(d_full, dist)
    _, d_grey = nearest_ncc(refs[:, :1], cands[:, :1])  # one channel: no downsampling
    assert d_grey.tolist() == pytest.approx(brute_force(refs[:, :1], cands[:, :1])[1], abs=1e-9)


def test_constant_images_and_minmax():
    x = torch.ones(2, 1, 4, 4)
    assert torch.equal(standardise(x), torch.zeros_like(x))
    idx, dist = nearest_ncc(torch.rand(3, 1, 4, 4), torch.cat([x, torch.rand(1, 1, 4, 4)]))
    assert torch.isfinite(dist).all() and idx.min() >= 0
    m = minmax_scale(torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]]], [[[3.0, 3.0], [3.0, 3.0]]]]))
    assert m[0].flatten().tolist() == [0.0, 0.25, 0.5, 1.0] and m[1].flatten().tolist() == [0.0] * 4


def test_errors():
    with pytest.raises(DataError, match="same C×H×W"):
        nearest_ncc(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 7))
    with pytest.raises(DataError, match="no candidates"):
        nearest_ncc(torch.rand(2, 1, 8, 8), torch.rand(0, 1, 8, 8))


def test_a_constant_candidate_is_never_the_match():
    """A constant image standardises to zeros, at correlation 0.5 from everything: it used to win most matches."""
    g = torch.Generator().manual_seed(4)
    refs, noise = torch.rand(60, 1, 8, 8, generator=g), torch.rand(30, 1, 8, 8, generator=g)
    for value in (0.0, 0.37, 5.0):
        cands = torch.cat([noise[:10], torch.full((1, 1, 8, 8), value), noise[10:]])
        idx, _ = nearest_ncc(refs, cands)
        assert 10 not in idx.tolist()
        assert idx.tolist() == [i + (i >= 10) for i in nearest_ncc(refs, noise)[0].tolist()]
    idx, dist = nearest_ncc(refs, torch.full((3, 1, 8, 8), 2.0))  # all constant: matched anyway, the first
    assert idx.tolist() == [0] * 60 and torch.isfinite(dist).all()


def test_a_constant_reference_matches_the_first_candidate():
    cands = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    idx, dist = nearest_ncc(torch.full((2, 1, 8, 8), 0.5), cands)
    assert idx.tolist() == [0, 0]
    assert dist.tolist() == pytest.approx([float(torch.linalg.vector_norm(standardise(cands[:1].double())))] * 2)


def test_identical_candidates_resolve_to_the_first_copy():
    """torch.cdist's matrix-product path gives two identical candidates distances that differ in the last bits."""
    from sklearn.datasets import load_digits

    d = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16
    refs, base = d[:300], d[300:350]
    idx, _ = nearest_ncc(refs, torch.cat([base, base]))
    assert int(idx.max()) < 50
    assert idx.tolist() == nearest_ncc(refs, base)[0].tolist()
    idx, _ = nearest_ncc(refs, torch.cat([base[:5], base, base]))  # duplicates at any position: the first copy
    assert all(i < 5 or 5 <= i < 55 for i in idx.tolist())


@pytest.mark.parametrize("scale", [1e-13, 1e-9, 1e6])
def test_matching_and_minmax_do_not_depend_on_the_scale(scale):
    """No absolute thresholds: tiny or huge data-space values score as their pattern does."""
    g = torch.Generator().manual_seed(6)
    refs, cands = torch.rand(20, 1, 8, 8, generator=g), torch.rand(40, 1, 8, 8, generator=g).double()
    idx, dist = nearest_ncc(refs, cands)
    idx_s, dist_s = nearest_ncc(refs, cands * scale + 3 * scale)
    assert idx_s.tolist() == idx.tolist() and dist_s.tolist() == pytest.approx(dist.tolist(), abs=1e-9)
    assert torch.allclose(minmax_scale(cands * scale), minmax_scale(cands), atol=1e-12)
