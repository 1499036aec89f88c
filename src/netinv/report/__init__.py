"""Reports and figures (PNG via matplotlib's Agg canvas)."""

from .figures import png_data_uri, save_image_grid, save_scatter

__all__ = ["png_data_uri", "save_image_grid", "save_scatter"]
