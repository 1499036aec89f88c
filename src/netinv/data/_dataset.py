"""The one return type of every data source: images in [0, 1] (N×C×H×W) or tabular rows (N×D), with provenance."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError
from .._utils.checkpoint import atomic_write_bytes


@dataclass
class Dataset:
    """Inputs, labels, class names and a record of where they came from.

    Attributes:
        x: float32, N×C×H×W images with values in [0, 1] (or N×D tabular rows).
        y: int64 class indices, N.
        classes: name of each class index.
        source: provenance (source name, files, split, and indices into the source when subsetted).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            self.x = self.x.float()
        if self.y.dtype != torch.int64:
            self.y = self.y.long()
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.x.shape[0]} inputs but {self.y.shape[0]} labels", "give one label per input")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise DataError(f"labels outside 0..{len(self.classes) - 1}", "give labels as class indices")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: (C, H, W) or (D,)."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def indices(self) -> list[int]:
        """Indices of these rows in the original source (identity when not subsetted)."""
        return list(self.source.get("indices", range(len(self))))

    def subset(self, idx: torch.Tensor | np.ndarray | list[int], **note: Any) -> Dataset:
        """Rows ``idx``; the provenance keeps the indices into the original source."""
        idx_t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        parent = torch.as_tensor(self.indices, dtype=torch.int64)
        src = {**self.source, **note, "indices": parent[idx_t].tolist()}
        return Dataset(self.x[idx_t], self.y[idx_t], list(self.classes), src)

    def relabel(self, y: torch.Tensor, classes: list[str], **note: Any) -> Dataset:
        """The same inputs with new labels (e.g. a binary task)."""
        return Dataset(self.x, y, classes, {**self.source, **note})

    def save_npz(self, path: str | Path) -> Path:
        """Write ``x``, ``y`` and ``classes`` to an npz that :func:`netinv.data.load_data` ('npz') reads back."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(buf, x=self.x.numpy(), y=self.y.numpy(), classes=np.array(self.classes),
                            indices=np.asarray(self.indices, dtype=np.int64))
        atomic_write_bytes(path, buf.getvalue())
        return path

    def summary(self) -> dict[str, Any]:
        """Size, shape, range and class counts, for ``netinv data show``."""
        counts = torch.bincount(self.y, minlength=self.num_classes).tolist()
        return {"name": self.source.get("name"), "n": len(self), "input_shape": list(self.input_shape),
                "min": float(self.x.min()) if len(self) else None, "max": float(self.x.max()) if len(self) else None,
                "classes": {c: n for c, n in zip(self.classes, counts, strict=True)}}
