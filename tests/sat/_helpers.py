"""Small hand-made BNNs and brute-force references for the SAT tests."""

from __future__ import annotations

import torch

from netinv.models.bnn import BNNSpec


def random_bnn(d: int, widths: tuple[int, ...], outputs: int, seed: int = 0, ternary: float = 0.0,
               zero_bias: bool = False) -> torch.nn.Module:
    """An untrained BNN with random BatchNorm statistics, including a zero and a negative BN scale."""
    g = torch.Generator().manual_seed(seed)
    m = BNNSpec((d,), widths, outputs, ternary=ternary).build()
    with torch.no_grad():
        for lin in [*m.hidden, m.out]:
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) * 2 - 1)
        for bn in m.norms:
            h = bn.num_features
            bn.running_mean.copy_(torch.rand(h, generator=g) * 4 - 2)
            bn.running_var.copy_(torch.rand(h, generator=g) * 3 + 0.5)
            bn.weight.copy_(torch.rand(h, generator=g) * 2 - 1)
            bn.weight[0] = 0.0
            bn.bias.copy_(torch.rand(h, generator=g) * 2 - 1)
        m.out.bias.copy_(torch.zeros(outputs) if zero_bias else torch.rand(outputs, generator=g) * 2 - 1)
    return m.eval()


def all_inputs(d: int) -> torch.Tensor:
    """Every binary input of a d-pixel model, (2**d, d) float in {0, 1}."""
    idx = torch.arange(2**d)
    return ((idx[:, None] >> torch.arange(d)) & 1).float()


def torch_classes(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = m.eval()(x)
    return (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
