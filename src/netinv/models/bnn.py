"""Binarised neural networks (Hubara et al. 2016; the form Narodytska et al. AAAI 2018 encode to SAT).

``input -> binarise (x >= threshold) -> [BinaryLinear -> BatchNorm -> sign] * len(widths) -> BinaryLinear + bias``.

Training uses straight-through estimators (sign forward, hard-tanh gradient) on the real-valued latent weights,
which are clipped to [-1, 1] before each training forward (Courbariaux et al. 2016). **Evaluation is the folded
integer network** that :mod:`netinv.sat` encodes, so the PyTorch prediction and the CNF agree exactly:

* inputs: ``bit_j = x_j >= threshold`` (float32 compare on the preprocessed input), ``a_j = 2 bit_j - 1``;
* weights: ``+1 if w >= 0 else -1`` (binary, so sign(0) = +1), or with ``ternary = d > 0``:
  ``+1 if w > d, -1 if w < -d, else 0``;
* hidden neuron: ``z = sum_j q_j a_j`` is an integer; BatchNorm + sign, ``gamma (z - mu) / sqrt(var + eps) + beta
  >= 0`` (sign(0) = +1), folds into ``s z >= k`` with integer ``k`` (:func:`fold_batchnorm`, float64): ``s = +1,
  k = ceil(tau)`` for ``gamma > 0``; ``s = -1, k = ceil(-tau)`` for ``gamma < 0`` (direction flips); a constant
  neuron (``beta >= 0``) for ``gamma = 0``; ``tau = mu - beta sqrt(var + eps) / gamma``;
* output: ``logit_c = (z_c + b_c) * scale`` with binary weights, the real bias rounded to multiples of 1/256
  (``b_c = B_c / 256``, integers ``B_c``) and ``scale`` a power of two, so every logit is computed without rounding
  and ``argmax`` is exact. Ties go to the **lowest class index** (``torch.argmax`` returns the first maximum).
  One output (binary task): class 1 iff ``z + b > 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._errors import ConfigError
from .registry import check_fields, parse_ints

BIAS_DEN = 256  # output biases are multiples of 1/BIAS_DEN (exact in float32 next to integer scores)


@dataclass(frozen=True)
class BNNSpec:
    """A binarised MLP. Arch string ``bnn:W1,W2,...`` (hidden widths).

    Attributes:
        input_shape: shape of one input; it is flattened and binarised.
        widths: hidden widths (ours: 100 for digits, ``benchmarks/sat_bnn.py``).
        num_outputs: one logit per class, or 1 for a binary task (logit > 0 means class 1).
        threshold: input binarisation threshold on the preprocessed input, ``bit = x >= threshold``.
        ternary: 0 for binary weights; d > 0 zeroes hidden-layer weights whose latent value is in [-d, d] (sparse
            neurons are much cheaper to encode; ``benchmarks/sat_bnn.py`` reports the accuracy cost).
    """

    kind: ClassVar[str] = "bnn"
    input_shape: tuple[int, ...]
    widths: tuple[int, ...] = (100,)
    num_outputs: int = 10
    threshold: float = 0.5
    ternary: float = 0.0

    @classmethod
    def from_string(cls, args: str, input_shape: tuple[int, ...], num_outputs: int, **options: Any) -> BNNSpec:
        check_fields("bnn", options, {"threshold", "ternary"})
        if not 0.0 <= float(options.get("ternary", 0.0)) < 1.0:
            raise ConfigError(f"ternary={options['ternary']!r} is outside [0, 1)", "use 0 (binary) or e.g. 0.5")
        spec = cls(tuple(input_shape), parse_ints("bnn", args, (100,)), num_outputs, **options)
        if max(math.prod(input_shape), *spec.widths) >= 2**14:
            raise ConfigError("a bnn layer has 16384 or more inputs", "use narrower layers (exact integer logits)")
        return spec

    def build(self) -> nn.Module:
        return BNN(self)


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1 forward; gradient passed where |input| <= 1 (hard-tanh STE)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def quantize_weight(w: torch.Tensor, ternary: float = 0.0) -> torch.Tensor:
    """Latent weights -> {-1, 0, +1} (binary: sign with sign(0) = +1), no gradient."""
    if ternary > 0:
        return (w > ternary).to(w.dtype) - (w < -ternary).to(w.dtype)
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def _ste_weight(w: torch.Tensor, ternary: float) -> torch.Tensor:
    return w + (quantize_weight(w.detach(), ternary) - w).detach()  # forward q(w), gradient identity


def fold_batchnorm(bn: nn.BatchNorm1d, fan_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold eval-mode BatchNorm followed by sign into ``s * z >= k`` for integer pre-activations ``z``.

    Args:
        bn: the layer (running statistics, affine weight/bias).
        fan_in: the largest |z| (number of inputs), used to clip constant neurons to ``k`` in [-fan_in, fan_in+1].

    Returns:
        ``(s, k)``: int64 arrays of shape (H,), ``s`` in {-1, +1}; neuron active iff ``s * z >= k``.
    """
    mu = bn.running_mean.detach().double().cpu().numpy()
    sd = np.sqrt(bn.running_var.detach().double().cpu().numpy() + bn.eps)
    g = bn.weight.detach().double().cpu().numpy()
    b = bn.bias.detach().double().cpu().numpy()
    lim = fan_in + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = mu - b * sd / g  # gamma>0: active iff z >= tau; gamma<0: active iff z <= tau
    s = np.where(g < 0, -1, 1).astype(np.int64)
    tau_s = np.nan_to_num(np.where(g < 0, -tau, tau), nan=lim, posinf=lim, neginf=-lim)
    k = np.ceil(np.clip(tau_s, -lim, lim)).astype(np.int64)
    k = np.where(g == 0, np.where(b >= 0, -fan_in, fan_in + 1), k)  # zero scale: constant sign(beta)
    return s, np.clip(k, -fan_in, fan_in + 1)


class BNN(nn.Module):
    def __init__(self, spec: BNNSpec) -> None:
        super().__init__()
        self.spec = spec
        dims = [math.prod(spec.input_shape), *spec.widths]
        self.hidden = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=False) for i in range(len(spec.widths)))
        self.norms = nn.ModuleList(nn.BatchNorm1d(w) for w in spec.widths)
        self.out = nn.Linear(dims[-1], spec.num_outputs)
        with torch.no_grad():  # latent weights spread over [-1, 1]: a ternary threshold d zeroes a fraction d
            for lin in [*self.hidden, self.out]:
                lin.weight.uniform_(-1.0, 1.0)
            self.out.bias.zero_()
        self.scale = 2.0 ** -round(math.log2(math.sqrt(dims[-1])))  # power of two: logits stay exact

    def binarize(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed inputs (N, *input_shape) -> input bits (N, D) as bool."""
        return x.flatten(1) >= self.spec.threshold

    def weights(self) -> list[torch.Tensor]:
        """Quantised hidden weights, each (H_l, H_{l-1}) in {-1, 0, 1} (float)."""
        return [quantize_weight(lin.weight.detach(), self.spec.ternary) for lin in self.hidden]

    def out_bias_int(self) -> torch.Tensor:
        """Output bias numerators ``B`` (int64), bias = B / 256, clipped to |bias| <= 2**14 (exact logits)."""
        return torch.round(self.out.bias.detach().double() * BIAS_DEN).clamp(-2**22, 2**22).long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.binarize(x).to(self.out.weight.dtype) * 2 - 1  # (N, D) in ±1
        if self.training:
            with torch.no_grad():  # clip latent weights (Courbariaux et al. 2016) so they can flip back
                for lin in [*self.hidden, self.out]:
                    lin.weight.clamp_(-1.0, 1.0)
            for lin, bn in zip(self.hidden, self.norms, strict=True):
                a = _SignSTE.apply(bn(a @ _ste_weight(lin.weight, self.spec.ternary).T))
            bias = self.out.bias + (torch.round(self.out.bias * BIAS_DEN) / BIAS_DEN - self.out.bias).detach()
            return (a @ _ste_weight(self.out.weight, 0.0).T + bias) * self.scale
        for q, lin, bn in zip(self.weights(), self.hidden, self.norms, strict=True):
            z = a @ q.T  # (N, H) integers, exact in float32 (|z| < 2**14)
            s, k = fold_batchnorm(bn, lin.in_features)
            s_t, k_t = (torch.as_tensor(v, dtype=z.dtype, device=z.device) for v in (s, k))
            a = torch.where(z * s_t >= k_t, 1.0, -1.0).to(z.dtype)
        z = a @ quantize_weight(self.out.weight.detach()).T  # (N, C) integers
        bias = (self.out_bias_int().to(z.dtype) / BIAS_DEN).to(z.device)  # exact: multiples of 1/256
        return (z + bias) * self.scale
