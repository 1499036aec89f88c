"""Applications of network inversion: OOD detection with a garbage class (arXiv 2505.23448) and adversarial
samples from a conditioned perturbation generator (against PGD)."""

from .adversarial import AdversarialConfig, AdversarialResult, compare_adversarial, pgd_attack, run_adversarial
from .ood import OODConfig, OODResult, garbage_class_training, garbage_ood

__all__ = ["AdversarialConfig", "AdversarialResult", "OODConfig", "OODResult", "compare_adversarial",
           "garbage_class_training", "garbage_ood", "pgd_attack", "run_adversarial"]
