"""scikit-learn's bundled 8×8 digits (1 797 images, values 0..16 scaled to [0, 1]); works offline."""

from __future__ import annotations

import torch

from ._dataset import Dataset


def load_digits() -> Dataset:
    """All 1 797 digits as 1×8×8 images in [0, 1] with labels 0..9."""
    from sklearn.datasets import load_digits as _sk

    d = _sk()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    return Dataset(x, y, [str(i) for i in range(10)], {"name": "digits", "origin": "sklearn.datasets.load_digits"})
