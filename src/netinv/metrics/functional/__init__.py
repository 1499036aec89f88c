"""Pure metric functions (torchmetrics-style): tensors in, numbers or per-sample tensors out, no state."""

from .classification import class_assignment, class_probabilities, margins, on_margin
from .diversity import mean_pairwise_distance, per_class_mean_pairwise_distance
from .leakage import leakage_threshold, leaked, mann_whitney_auc, membership_auc
from .matching import auto_downsample, constant_channels, minmax_scale, nearest_ncc, standardise
from .ood import aupr, auroc, fpr_at_95_tpr, fpr_at_tpr, ood_metrics
from .ssim import dssim, gaussian_window_1d, ssim, ssim_map

__all__ = ["auto_downsample", "aupr", "auroc", "class_assignment", "class_probabilities", "constant_channels",
           "dssim", "fpr_at_95_tpr", "fpr_at_tpr", "gaussian_window_1d", "leaked", "leakage_threshold",
           "mann_whitney_auc", "margins", "mean_pairwise_distance", "membership_auc", "minmax_scale", "nearest_ncc",
           "on_margin", "ood_metrics", "per_class_mean_pairwise_distance", "ssim", "ssim_map", "standardise"]
