"""PNG figures with matplotlib's Agg canvas (no display, no global pyplot state): image grids and scatter plots.
``png_data_uri`` turns a written PNG into a data URI for an HTML report."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils.checkpoint import atomic_write_bytes


def _figure(width: float, height: float):  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    """C×H×W (C = 1 or 3) or H×W in [0, 1] -> H×W or H×W×3 numpy, clipped to [0, 1]."""
    a = img.detach().cpu().to(torch.float32).clamp(0, 1).numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    return a


def save_image_grid(rows: Sequence[torch.Tensor], path: str | Path, *, row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, title: str | None = None,
                    cell_inches: float = 0.9, meta: dict[str, Any] | None = None) -> Path:
    """Write a grid of images, one tensor per row, to a PNG.

    Args:
        rows: R tensors of K×C×H×W images in [0, 1] (C = 1 grey, C = 3 colour; values outside are clipped).
        path: the PNG to write (parent folders are created).
        row_labels: R labels drawn left of each row.
        col_labels: K labels drawn above the first row (e.g. scores).
        title: figure title.
        cell_inches: size of one cell.
        meta: provenance (e.g. the seed) written into the PNG's text chunk ``netinv``.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = len(rows)
    n_cols = max((int(r.shape[0]) for r in rows), default=0)
    fig = _figure(max(1, n_cols) * cell_inches + (1.0 if row_labels else 0.2),
                  max(1, n_rows) * cell_inches + (0.5 if title else 0.2) + (0.2 if col_labels else 0))
    axes = fig.subplots(max(1, n_rows), max(1, n_cols), squeeze=False)
    for r in range(axes.shape[0]):
        for c in range(axes.shape[1]):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r < n_rows and c < rows[r].shape[0]:
                ax.imshow(_to_hwc(rows[r][c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
            if c == 0 and row_labels is not None and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0 and col_labels is not None and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, meta)
    return path


def _save(fig: Any, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Render to memory, then write atomically: a file or link already at ``path`` is replaced, never written
    through (a run directory may come from anyone). ``meta`` goes into the PNG text chunk ``netinv`` (JSON)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png", metadata={"netinv": json.dumps(meta)} if meta else None)
    atomic_write_bytes(path, buf.getvalue())


def save_scatter(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, xlabel: str = "",
                 ylabel: str = "", title: str | None = None, thresholds: dict[str, float] | None = None,
                 band: tuple[float, float, str] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write a scatter plot of one or more named (x, y) series to a PNG.

    Args:
        series: label -> (x values, y values).
        path: the PNG to write.
        xlabel, ylabel, title: axis labels and title.
        thresholds: series label -> y of a dashed line in that series' colour, labelled ``tau (label)`` (each
            candidate set's own τ).
        band: (x from, x to, label) of a shaded vertical band (e.g. the training images on the margin).
        meta: provenance (e.g. the seed) written into the PNG's text chunk ``netinv``.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(6.6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    if band is not None:
        ax.axvspan(band[0], band[1], color="0.9", zorder=0, label=band[2])
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.scatter(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), s=10, alpha=0.7, label=label,
                   color=f"C{i}")
        if thresholds and label in thresholds:
            ax.axhline(thresholds[label], linestyle="--", linewidth=1, color=f"C{i}", label=f"tau ({label})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    if series:  # beside the axes, not over the points
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    _save(fig, path, meta)
    return path


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file, for embedding in HTML."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
