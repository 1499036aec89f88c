"""KKT-reconstruction loss terms (Haim et al., NeurIPS 2022, arXiv 2206.07758; Buzaglo et al., NeurIPS 2023,
arXiv 2307.01827), as pure tensor functions.

A positively homogeneous network trained to zero error with logistic (or cross-entropy) loss converges in
direction to a KKT point of ``min ½‖θ‖² s.t. margin_i(θ) ≥ 1``, so ``θ = Σ_i λ_i ∇θ margin_i`` with ``λ_i ≥ 0``. The
attack looks for inputs ``x_j`` and multipliers ``λ_j`` satisfying that equation. Terms:

- :func:`candidate_margins`: ``y·Φ(x)`` (binary, one logit) or ``Φ_y − max_{k≠y} Φ_k`` (multiclass, Buzaglo).
- :func:`kkt_stationarity`: ``‖θ − (1/m) Σ_j λ_j ∇θ margin_j‖² / ‖θ‖²`` by ONE backward pass with
  ``create_graph=True`` (the sum over candidates is taken before differentiating: no per-sample loop).
- :func:`dual_feasibility`: ``Σ relu(λ_min − λ)²`` (λ is penalised, not clamped; |λ| for λ of either sign).
- :func:`box_prior`: ``Σ relu(x − hi)² + relu(lo − x)²``, the valid-input box.
- :func:`relu_surrogate`: a context manager making every ReLU / leaky ReLU's backward ``sigmoid(α·z)`` (forward
  unchanged), Haim et al.'s smoothing of the second-order gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["candidate_margins", "kkt_stationarity", "kkt_residual_vector", "dual_feasibility", "box_prior",
           "relu_surrogate", "SurrogateReLU"]


def candidate_margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-candidate margin whose gradient enters the stationarity condition.

    Args:
        logits: m×K outputs. K = 1: a binary model (class 1 iff logit > 0).
        y: m int64 class indices (0/1 for binary).

    Returns:
        m margins: binary ``(2y − 1)·Φ``; multiclass ``Φ_y − max_{k≠y} Φ_k`` (Buzaglo et al.).
    """
    if logits.shape[1] == 1:
        return (2 * y.to(logits.dtype) - 1) * logits[:, 0]
    is_y = torch.arange(logits.shape[1], device=logits.device) == y[:, None]  # (m, K); vmap-friendly, no gather
    own = (logits * is_y).sum(1)
    return own - logits.masked_fill(is_y, float("-inf")).max(1).values


def kkt_residual_vector(params: Sequence[torch.Tensor], margins: torch.Tensor, lam: torch.Tensor,
                        *, create_graph: bool = True) -> list[torch.Tensor]:
    """``θ − (1/m) Σ_j λ_j ∇θ margin_j``, one tensor per parameter.

    The sum is formed first, so ONE backward of ``(1/m)·Σ λ_j margin_j`` gives it (a per-sample loop would be m
    backward passes). With ``create_graph=True`` the result stays differentiable in ``x`` (through ``margins``)
    and ``λ``.

    Args:
        params: the model's parameter tensors θ (requiring grad), in the graph that produced ``margins``.
        margins: m per-candidate margins (:func:`candidate_margins`).
        lam: m multipliers.
        create_graph: keep the graph for a second backward (the attack needs it).

    Returns:
        One residual tensor per parameter, shaped like it.
    """
    m = margins.shape[0]
    grads = torch.autograd.grad((lam * margins).sum() / m, list(params), create_graph=create_graph,
                                allow_unused=True)
    return [p - (g if g is not None else torch.zeros_like(p)) for p, g in zip(params, grads, strict=True)]


class _SquaredResidual(torch.autograd.Function):
    """``‖p − g‖²`` with the hand-written backward ``−2(p − g)``: one fused op instead of autograd's sub/mul/neg
    chain over every parameter (the elementwise work that otherwise sits on top of the matmul floor)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        r = (p - g).flatten()
        ctx.save_for_backward(r)
        ctx.shape = g.shape
        return torch.dot(r, r)

    @staticmethod
    def backward(ctx, go: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        (r,) = ctx.saved_tensors
        return (r * (-2.0 * go)).view(ctx.shape), None


def kkt_stationarity(params: Sequence[torch.Tensor], margins: torch.Tensor, lam: torch.Tensor,
                     *, relative: bool = True, create_graph: bool = True,
                     theta_sq: float | None = None) -> torch.Tensor:
    """The stationarity loss ``‖θ − (1/m) Σ_j λ_j ∇θ margin_j‖²`` (divided by ``‖θ‖²`` when ``relative``).

    Args:
        params: parameter tensors θ (requiring grad) used to compute ``margins``.
        margins: m candidate margins; lam: m multipliers.
        relative: divide by ``‖θ‖²`` so the value is scale-free (0 = exact KKT point, 1 = explains nothing).
            Haim et al. use the plain squared norm; relative is ours (same minimiser, comparable across models).
        create_graph: keep the graph for the backward to ``x`` and ``λ``.
        theta_sq: ``‖θ‖²`` when the caller has it (saves a pass over θ each call).

    Returns:
        A scalar.

    Example:
        >>> import torch
        >>> w = torch.tensor([[2.0, 0.0]], requires_grad=True)   # Φ(x) = w·x, one linear "layer"
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
        >>> marg = candidate_margins(x @ w.T, y)                  # (1·x1·w, −1·x2·w)
        >>> float(kkt_stationarity([w], marg, torch.tensor([4.0, 0.0])))   # θ = ½·4·x1 exactly
        0.0
    """
    m = margins.shape[0]
    grads = torch.autograd.grad((lam * margins).sum() / m, list(params), create_graph=create_graph,
                                allow_unused=True)
    total = sum(_SquaredResidual.apply(g if g is not None else torch.zeros_like(p), p.detach())
                for p, g in zip(params, grads, strict=True))
    if relative:
        total = total / (theta_sq if theta_sq is not None else sum((p.detach() ** 2).sum() for p in params))
    return total  # type: ignore[return-value]


def dual_feasibility(lam: torch.Tensor, lam_min: float, *, signed: bool = False) -> torch.Tensor:
    """``Σ_j relu(λ_min − λ_j)²``: keeps multipliers non-negative and away from 0 without clamping them.

    Args:
        lam: m multipliers.
        lam_min: the floor (Haim et al. sweep it in U[0.01, 0.5]).
        signed: λ of either sign (regression / general losses, Buzaglo et al.): penalise ``|λ|`` below the floor.

    Returns:
        A scalar.
    """
    v = lam.abs() if signed else lam
    return F.relu(lam_min - v).pow(2).sum()


def box_prior(x: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float) -> torch.Tensor:
    """``Σ relu(x − hi)² + relu(lo − x)²``: zero inside the valid-input box.

    Args:
        x: m×… candidates in the model's input space.
        lo, hi: the box (scalars or tensors broadcastable to one input; e.g. data range minus the mean image).

    Returns:
        A scalar.
    """
    return (F.relu(x - hi).pow(2) + F.relu(lo - x).pow(2)).sum()


class SurrogateReLU(torch.autograd.Function):
    """Forward ``leaky_relu(z, slope)`` (slope 0: ReLU); backward ``slope + (1 − slope)·sigmoid(α·z)``.

    The backward is written with differentiable ops, so a second backward (``create_graph=True``) sees the smooth
    derivative ``(1 − slope)·α·σ(1 − σ)`` instead of ReLU's zero.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, alpha: float, slope: float) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(z)
        ctx.alpha, ctx.slope = alpha, slope
        return F.relu(z) if slope == 0.0 else F.leaky_relu(z, slope)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * z)
        return g * (s if ctx.slope == 0.0 else ctx.slope + (1.0 - ctx.slope) * s), None, None


class _SurrogateMode(TorchFunctionMode):
    """Routes torch/functional/aten ReLU and leaky ReLU calls (modules and exported graphs included) through
    :class:`SurrogateReLU`."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha, self.calls = alpha, 0
        aten = torch.ops.aten  # graphs from torch.export call the aten overloads directly
        self._relu = {torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_,
                      aten.relu.default, aten.relu_.default}
        self._leaky = {F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu, torch._C._nn.leaky_relu_,
                       aten.leaky_relu.default, aten.leaky_relu_.default}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in self._relu:
            self.calls += 1
            return SurrogateReLU.apply(args[0], self.alpha, 0.0)
        if func in self._leaky:
            self.calls += 1
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            return SurrogateReLU.apply(args[0], self.alpha, float(slope))
        return func(*args, **kwargs)


@contextmanager
def relu_surrogate(alpha: float | None) -> Iterator[_SurrogateMode | None]:
    """Inside the block, ReLU / leaky-ReLU backward is ``sigmoid(α·z)`` (forward unchanged); ``None`` = plain ReLU.

    Works for any model that calls ``nn.ReLU``/``nn.LeakyReLU``/``F.relu``/``torch.relu``, or their aten overloads
    as graphs saved with ``torch.export`` do (a TorchFunctionMode;
    nothing in the model is modified, so it is thread-safe). The yielded mode counts intercepted calls
    (``.calls``): zero after a forward means the model's activations were not reached (e.g. TorchScript).
    """
    if alpha is None:
        yield None
        return
    mode = _SurrogateMode(float(alpha))
    with mode:
        yield mode
