"""SSIM against hand-computed values and a literal loop implementation of kornia's formula (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from netinv._errors import DataError
from netinv.metrics.functional import dssim, gaussian_window_1d, ssim, ssim_map

C1, C2 = 0.01**2, 0.03**2


def literal_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 3, sigma: float = 1.5, k1: float = 0.01,
                 k2: float = 0.03, data_range: float = 1.0, eps: float = 1e-12) -> list[float]:
    """The formula written out pixel by pixel: Gaussian weights, reflect padding, biased local moments."""
    r = window_size // 2
    g = [math.exp(-(o * o) / (2 * sigma * sigma)) for o in range(-r, r + 1)]
    g = [v / sum(g) for v in g]
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n, ch, h, w = x.shape

    def refl(i: int, size: int) -> int:  # reflect without repeating the edge: -1 -> 1, size -> size-2
        return -i if i < 0 else (2 * (size - 1) - i if i >= size else i)

    out = []
    for b in range(n):
        total = 0.0
        for c in range(ch):
            for i in range(h):
                for j in range(w):
                    mx = my = sxx = syy = sxy = 0.0
                    for a in range(-r, r + 1):
                        for d in range(-r, r + 1):
                            wt = g[a + r] * g[d + r]
                            xv = float(x[b, c, refl(i + a, h), refl(j + d, w)])
                            yv = float(y[b, c, refl(i + a, h), refl(j + d, w)])
                            mx += wt * xv
                            my += wt * yv
                            sxx += wt * xv * xv
                            syy += wt * yv * yv
                            sxy += wt * xv * yv
                    vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
                    num = (2 * mx * my + c1) * (2 * cxy + c2)
                    den = (mx * mx + my * my + c1) * (vx + vy + c2)
                    total += num / (den + eps)
        out.append(total / (ch * h * w))
    return out


def test_window_weights_are_the_papers():
    w = gaussian_window_1d(3, 1.5)
    assert w.tolist() == pytest.approx([0.307801, 0.384397, 0.307801], abs=1e-6)
    assert float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.5, 0.25), (0.3, 0.3), (0.9, 0.1)])
def test_constant_images_by_hand(a, b):
    # σx = σy = σxy = 0 everywhere, so SSIM = (2ab + C1)·C2 / ((a² + b² + C1)·C2 + eps), eps = 1e-12 (kornia)
    x, y = torch.full((1, 2, 4, 5), a, dtype=torch.float64), torch.full((1, 2, 4, 5), b, dtype=torch.float64)
    expect = (2 * a * b + C1) * C2 / ((a * a + b * b + C1) * C2 + 1e-12)
    assert float(ssim(x, y)[0]) == pytest.approx(expect, rel=1e-12)
    assert float(ssim(x, y, eps=0.0)[0]) == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1), rel=1e-12)


def test_two_by_two_image_by_hand():
    # x = [[1, 0], [0, 0]] against zeros. Reflect padding of a 2-pixel axis gives the far pixel twice the outer
    # weight: per-axis weights own = 0.384397, other = 2·0.307801. With y = 0: μy = σy = σxy = 0 and x² = x, so
    # SSIM(pixel) = C1 / (μx² + C1) · C2 / (μx − μx² + C2), μx = the weight of the single 1 seen from that pixel.
    own, other = 0.384397, 2 * 0.307801
    mus = [own * own, own * other, other * own, other * other]  # pixels (0,0), (0,1), (1,0), (1,1)
    expect = sum(C1 / (m * m + C1) * C2 / (m - m * m + C2) for m in mus) / 4
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    got = float(ssim(x, torch.zeros_like(x))[0])
    assert got == pytest.approx(expect, rel=2e-5)  # the weights above are rounded to 6 digits


@pytest.mark.parametrize("shape,params", [
    ((2, 3, 5, 6), {}),
    ((3, 1, 8, 8), {}),
    ((1, 2, 7, 4), {"window_size": 5, "sigma": 0.8}),
    ((2, 1, 4, 4), {"k1": 0.05, "k2": 0.1, "data_range": 2.0}),
])
def test_matches_literal_formula(shape, params):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (0.6 * x + 0.4 * torch.rand(shape, generator=g, dtype=torch.float64)) * params.get("data_range", 1.0)
    got = ssim(x, y, **params)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(literal_ssim(x, y, **params), abs=1e-12)


def test_identity_dssim_and_reductions():
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    y = torch.rand(3, 1, 8, 8)
    s = ssim(x, y)
    assert torch.allclose(dssim(x, y), (1 - s) / 2)
    assert float(ssim(x, y, reduction="mean")) == pytest.approx(float(s.mean()))
    assert float(ssim(x, y, reduction="sum")) == pytest.approx(float(s.sum()))
    assert ssim_map(x, y).shape == (3, 1, 8, 8)
    assert float(ssim(x, 1 - x).max()) < 0.5  # an inverted image is dissimilar


def test_errors_name_problem_and_fix():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(DataError, match="same shape"):
        ssim(x, torch.rand(2, 1, 8, 7))
    with pytest.raises(DataError, match="odd"):
        ssim(x, x, window_size=4)
    with pytest.raises(DataError, match="NaN"):
        ssim(x, torch.full_like(x, float("nan")))
    with pytest.raises(DataError, match="too small"):
        ssim(torch.rand(1, 1, 1, 5), torch.rand(1, 1, 1, 5))
    with pytest.raises(DataError, match="reduction"):
        ssim(x, x, reduction="max")


def test_float32_inputs_are_scored_in_float64():
    """E[x²] − μ² in float32 loses ~1e-4 (kornia's float32 too); constant images have the closed form
    (2·μx·μy + C1) / (μx² + μy² + C1)."""
    a, b = torch.full((1, 1, 8, 8), 0.5), torch.full((1, 1, 8, 8), 0.7)
    want = (2 * 0.5 * 0.7 + 1e-4) / (0.25 + 0.49 + 1e-4)
    got = ssim(a, b, window_size=3)
    assert got.dtype == torch.float32 and abs(float(got) - want) < 1e-7


def test_integer_images_are_refused_and_identical_constants_score_just_below_one():
    """Audit O: uint8 images were cast to float and scored with data_range 1 (a meaningless number, no error)."""
    x = torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8)
    with pytest.raises(DataError, match="uint8 images"):
        ssim(x, x)
    z = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert ssim(z, z).item() == pytest.approx(0.99998889, abs=1e-8)  # kornia's eps in the denominator
