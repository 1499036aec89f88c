"""Reports and figures (PNG via matplotlib's Agg canvas)."""

from .figures import png_data_uri, save_image_grid, save_scatter
from .render import render, verdict

__all__ = ["png_data_uri", "render", "save_image_grid", "save_scatter", "verdict"]
