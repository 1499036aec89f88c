"""``LoadedModel``: any classifier netinv works on, with what the attacks need to know about its inputs."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._errors import ModelError
from .._utils.shapes import check_layout


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """Class indices of N×K logits, as every netinv model is read: one output is a binary task (class 1 iff the logit
    is > 0), otherwise the argmax (ties to the lowest index, as ``torch.argmax``).

    Example:
        >>> predicted_class(torch.tensor([[0.5], [0.0]])).tolist(), predicted_class(torch.tensor([[1.0, 1.0]])).tolist()
        ([1, 0], [0])
    """
    return (logits[:, 0] > 0).to(torch.int64) if logits.shape[1] == 1 else logits.argmax(1)


@dataclass
class LoadedModel:
    """A frozen classifier plus its input contract.

    Attributes:
        module: the network; it takes *preprocessed* inputs (data minus ``mean``) shaped N×``input_shape`` and returns
            N×``num_outputs`` logits. One output means a binary task: class 1 iff the logit is > 0.
        input_shape: one input's shape, (C, H, W) or (D,).
        num_outputs: number of logits.
        input_range: (lo, hi) of valid inputs in data space.
        mean: data-space mean subtracted before ``module`` (shape ``input_shape``), or None.
        classes: class names, when known.
        meta: a netinv checkpoint's metadata (data provenance, training record); empty for user models.
        source: how it was loaded (format, path).
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    num_outputs: int
    input_range: tuple[float, float] = (0.0, 1.0)
    mean: torch.Tensor | None = None
    classes: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # one line in a notebook (the metadata holds every member's index)
        where = self.source.get("path") or self.source.get("factory") or self.source.get("class") or "module"
        return (f"LoadedModel({type(self.module).__name__} from {where}, input {tuple(self.input_shape)} in "
                f"{list(self.input_range)}, {self.num_outputs} output{'s' * (self.num_outputs != 1)}, "
                f"mean {'subtracted' if self.mean is not None else 'none'})")

    @property
    def binary(self) -> bool:
        return self.num_outputs == 1

    @property
    def num_classes(self) -> int:
        return 2 if self.binary else self.num_outputs

    @property
    def device(self) -> torch.device:
        p = next(iter(self.module.parameters()), None)
        if p is None:
            b = next(iter(self.module.buffers()), None)
            return b.device if b is not None else torch.device("cpu")
        return p.device

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move module and mean to ``device`` (in place); returns self."""
        self.module.to(device)
        if self.mean is not None:
            self.mean = self.mean.to(device)
        return self

    def digest(self) -> str:
        """SHA-256 of what the model computes from: its parameters and buffers, mean image and input range (a
        resume checks it, so a model or mean file replaced at the same path is noticed)."""
        h = hashlib.sha256(repr((tuple(self.input_shape), tuple(map(float, self.input_range)))).encode())
        tensors = [*self.module.state_dict().values(), *([self.mean] if self.mean is not None else [])]
        for t in tensors:
            if isinstance(t, torch.Tensor):
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def record(self) -> dict[str, Any]:
        """How it was loaded and its input range, as outputs record the attacked model (``run.json``'s ``model``):
        enough for ``netinv evaluate`` to reload it as it was attacked."""
        return {**self.source, "input_range": list(self.input_range)}

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images as every netinv ``Dataset`` holds them (float in [0, 1], N×C×H×W or N×D) -> inputs of this model:
        reshaped to N×``input_shape`` (the same number of values per input) and mapped onto ``input_range``,
        ``lo + (hi − lo)·x`` (unchanged for the default range (0, 1)).

        Raises:
            ModelError: inputs of another size than the model's, or the same values in another order (a
                channels-last model given C×H×W images).

        Example:
            >>> m = LoadedModel(torch.nn.Flatten(), (64,), 64, input_range=(-1.0, 1.0))
            >>> y = m.from_unit(torch.full((2, 1, 8, 8), 0.75)); tuple(y.shape), float(y[0, 0])
            ((2, 64), 0.5)
        """
        n = x.shape[0]
        if math.prod(x.shape[1:]) != math.prod(self.input_shape):
            raise ModelError(f"the model takes inputs shaped {tuple(self.input_shape)}, the data is "
                             f"{tuple(x.shape[1:])}", "give the data this model was trained on")
        check_layout(x.shape[1:], self.input_shape)
        x = x.reshape(n, *self.input_shape)
        lo, hi = self.input_range
        return x if (lo, hi) == (0.0, 1.0) else lo + (hi - lo) * x

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Data-space inputs of this model -> the [0, 1] scale of netinv's data sets (the inverse map of
        :meth:`from_unit`'s range, shape unchanged)."""
        lo, hi = self.input_range
        return x if (lo, hi) == (0.0, 1.0) else (x - lo) / (hi - lo)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Data space -> the module's input space (subtract the mean image)."""
        return x - self.mean.to(x.dtype) if self.mean is not None else x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for data-space inputs, N×num_outputs."""
        return self.module(self.preprocess(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Class indices for data-space inputs (binary: logit > 0 -> 1)."""
        out = []
        for i in range(0, x.shape[0], batch_size):
            z = self.logits(x[i:i + batch_size].to(self.device))
            out.append(predicted_class(z))
        return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of ``x`` classified as ``y``."""
        return float((self.predict(x) == y.cpu()).float().mean()) if len(y) else float("nan")
