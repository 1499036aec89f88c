"""Victim models and model loading.

``loading.load_model``: any classifier in (netinv checkpoints, ``torch.export`` archives, TorchScript, factories),
``exported`` loading the two program formats after ``screen`` has checked them;
``loaded.LoadedModel``: a model with its input contract; ``mlp``, ``cnn``, ``bnn``: the architectures netinv trains
(``registry`` parses their strings); ``checkpoint``: save/load of trained victims; ``inspect``: homogeneity checks;
``features``: intermediate features for the generator losses.
"""

from .loaded import LoadedModel
from .loading import check_compatible, load_model

__all__ = ["LoadedModel", "check_compatible", "load_model"]
