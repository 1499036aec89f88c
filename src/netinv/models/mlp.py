"""Fully connected ReLU networks; ``bias="none"`` gives the positively homogeneous nets KKT attacks need."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .._errors import ConfigError
from .registry import check_fields, parse_ints


@dataclass(frozen=True)
class MLPSpec:
    """``input -> [Linear -> ReLU] * len(widths) -> Linear(num_outputs)``.

    Attributes:
        input_shape: shape of one input; it is flattened.
        widths: hidden widths (Haim et al.: 1000, 1000).
        num_outputs: 1 for a binary task (logit > 0 means class 1), else one logit per class.
        bias: ``all`` layers, only the ``first`` (Haim et al.'s victim), or ``none`` (homogeneous).
        init_scale: factor applied to PyTorch's default initialisation of every layer. Small values (1e-3) let
            training reach the KKT direction in reasonable time (../methods: untrained large layers dominate ‖θ‖).
    """

    kind: ClassVar[str] = "mlp"
    input_shape: tuple[int, ...]
    widths: tuple[int, ...] = (1000, 1000)
    num_outputs: int = 1
    bias: Literal["all", "first", "none"] = "all"
    init_scale: float = 1.0

    @classmethod
    def from_string(cls, args: str, input_shape: tuple[int, ...], num_outputs: int, **options: Any) -> MLPSpec:
        check_fields("mlp", options, {"bias", "init_scale"})
        if options.get("bias", "all") not in ("all", "first", "none"):
            raise ConfigError(f"bias={options['bias']!r} is not allowed", "use all, first or none")
        return cls(tuple(input_shape), parse_ints("mlp", args, (1000, 1000)), num_outputs, **options)

    def build(self) -> nn.Module:
        return MLP(self)


class MLP(nn.Module):
    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        self.spec = spec
        dims = [math.prod(spec.input_shape), *spec.widths, spec.num_outputs]
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(dims) - 1):
            bias = spec.bias == "all" or (spec.bias == "first" and i == 0)
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        if spec.init_scale != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(spec.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, num_outputs)
