"""Metrics: pure functions in :mod:`netinv.metrics.functional`, the leakage evaluation that chains them, and the
evaluation of an attack's output folder (:func:`evaluate_dir`)."""

from .evaluation import CandidateFigures, Evaluation, EvaluationConfig, evaluate, model_fit
from .functional import (
    aupr,
    auroc,
    class_assignment,
    dssim,
    fpr_at_95_tpr,
    fpr_at_tpr,
    leakage_threshold,
    leaked,
    margins,
    mean_pairwise_distance,
    membership_auc,
    nearest_ncc,
    on_margin,
    ood_metrics,
    per_class_mean_pairwise_distance,
    ssim,
)
from .run_dir import evaluate_dir

__all__ = ["CandidateFigures", "Evaluation", "EvaluationConfig", "aupr", "auroc", "class_assignment", "dssim",
           "evaluate", "evaluate_dir", "fpr_at_95_tpr", "fpr_at_tpr", "leaked", "leakage_threshold", "margins",
           "mean_pairwise_distance", "membership_auc", "model_fit", "nearest_ncc", "on_margin", "ood_metrics",
           "per_class_mean_pairwise_distance", "ssim"]
