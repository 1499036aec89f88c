"""netinv: invert trained neural networks.

What a released classifier reveals about its input space and its training data: KKT training-set reconstruction
(Haim et al. 2022; Buzaglo et al. 2023), generator network inversion (Suhail & Sethi 2024) and exact SAT inversion
of binarised networks (Suhail, Chakraborty & Sethi 2024), with leakage measured against null baselines.
"""

from ._errors import ConfigError, DataError, ModelError, NetinvError
from .data import Dataset, TaskSplit, load_data, make_task
from .models.loaded import LoadedModel
from .models.loading import load_model
from .train import TrainConfig, train

__all__ = ["ConfigError", "DataError", "Dataset", "LoadedModel", "ModelError", "NetinvError", "TaskSplit",
           "TrainConfig", "load_data", "load_model", "make_task", "train"]
