"""Shared type aliases."""

from __future__ import annotations

import os
from typing import TypeAlias

import torch

#: N×C×H×W (images) or N×D (tabular) float32, in data space (the range the model's inputs live in).
Images: TypeAlias = torch.Tensor
#: N int64 class indices.
Labels: TypeAlias = torch.Tensor
DeviceLike: TypeAlias = str | torch.device
PathLike: TypeAlias = str | os.PathLike[str]
