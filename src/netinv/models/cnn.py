"""Convolutional classifiers of the kind TLDR studies: conv + BatchNorm + leaky ReLU + dropout, a linear head.
Sized by the input: each block halves the spatial size while it is at least 4 (8×8 -> 2×2, 28 -> 7, 32 -> 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .._errors import ConfigError
from .registry import check_fields, parse_ints


@dataclass(frozen=True)
class CNNSpec:
    """``[Conv3×3 -> BN -> LeakyReLU -> MaxPool2 -> Dropout2d] * len(channels) -> Linear(hidden) -> LeakyReLU ->
    Dropout -> Linear(num_outputs)``.

    ``batchnorm=False, bias=False`` with ``dropout`` off at evaluation gives a positively homogeneous CNN (leaky ReLU
    and max-pooling are positively homogeneous), usable by the KKT attack.
    """

    kind: ClassVar[str] = "cnn"
    input_shape: tuple[int, ...]
    channels: tuple[int, ...] = (32, 64)
    num_outputs: int = 10
    hidden: int = 128
    dropout: float = 0.25
    batchnorm: bool = True
    bias: bool = True
    negative_slope: float = 0.01
    init_scale: float = 1.0

    @classmethod
    def from_string(cls, args: str, input_shape: tuple[int, ...], num_outputs: int, **options: Any) -> CNNSpec:
        check_fields("cnn", options, {"hidden", "dropout", "batchnorm", "bias", "negative_slope", "init_scale"})
        if len(input_shape) != 3:
            raise ConfigError(f"cnn needs C×H×W inputs, the data has shape {tuple(input_shape)}",
                              "use mlp for flat inputs")
        if isinstance(options.get("bias"), str):
            if options["bias"] not in ("all", "none"):  # "first" is an MLP layout: a CNN has no such choice
                raise ConfigError(f"bias={options['bias']!r} is not allowed for a cnn", "use all or none")
            options["bias"] = options["bias"] != "none"
        return cls(tuple(input_shape), parse_ints("cnn", args, (32, 64)), num_outputs, **options)

    def build(self) -> nn.Module:
        return CNN(self)


class CNN(nn.Module):
    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.spec = spec
        c, h, w = spec.input_shape
        blocks: list[nn.Module] = []
        for out in spec.channels:
            blocks.append(nn.Conv2d(c, out, 3, padding=1, bias=spec.bias and not spec.batchnorm))
            if spec.batchnorm:
                blocks.append(nn.BatchNorm2d(out))
            blocks.append(nn.LeakyReLU(spec.negative_slope))
            if min(h, w) >= 4:
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            if spec.dropout > 0:
                blocks.append(nn.Dropout2d(spec.dropout / 2))
            c = out
        self.features = nn.Sequential(*blocks, nn.Flatten())
        head: list[nn.Module] = [nn.Linear(c * h * w, spec.hidden, bias=spec.bias), nn.LeakyReLU(spec.negative_slope)]
        if spec.dropout > 0:
            head.append(nn.Dropout(spec.dropout))
        self.penultimate = nn.Sequential(*head)
        self.head = nn.Linear(spec.hidden, spec.num_outputs, bias=spec.bias)
        if spec.init_scale != 1.0:
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if "weight" in name and p.dim() > 1 or name.endswith("bias"):
                        p.mul_(spec.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.penultimate(self.features(x)))  # (N, num_outputs)
