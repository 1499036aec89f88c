"""Generators for network inversion (Suhail & Sethi 2024, arXiv 2407.18002) and bounded perturbations.

``GeneratorSpec(...).build()`` gives, by the classifier's input shape:
- C×H×W with H, W divisible by 4: a transposed-convolution generator (8×8: 2→4→8, 28×28: 7→14→28; 32×32 and any
  size divisible by 8 from 32 up: 4→8→16→32, three up-steps);
- flat D inputs (and image sizes the above does not cover, reshaped): an MLP generator.
Both take z (N×latent) and a :class:`~netinv.attacks._conditioning.Condition`. The vector (or learned label
embedding) is concatenated to z; the K×K conditioning matrix is concatenated as an extra channel at a layer of
spatial size K×K, which a valid (transposed) convolution then resamples to the first up-sampling size (the MLP
takes the flattened matrix at its first hidden layer). Dropout in the up-sampling path stays ACTIVE in eval mode
(the paper's "heavy dropout", a source of diversity). The output goes through a sigmoid into the model's
``input_range`` in data space (identity when the range is unbounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import ConfigError
from ._conditioning import Condition, Conditioning

__all__ = ["ActiveDropout", "ConvGenerator", "GeneratorSpec", "MLPGenerator"]


class ActiveDropout(nn.Module):
    """Dropout that stays on in eval mode, so sampling keeps the generator's stochasticity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True) if self.p > 0 else x


def _to_range(raw: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + (hi - lo) * torch.sigmoid(raw)
    return raw


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything that rebuilds a generator (saved in run.json beside generator.safetensors)."""

    input_shape: tuple[int, ...]
    num_classes: int
    conditioning: str = "vector+matrix"
    latent_dim: int = 64
    width: int = 64
    dropout: float = 0.3
    embed_dim: int = 16
    input_range: tuple[float, float] = (0.0, 1.0)
    temperature: float = 1.0
    mlp_batch_norm: bool = False  # BatchNorm after the MLP generator's hidden layers (flat inputs; conv always has it)

    def plan(self) -> tuple[str, int]:
        """("conv", up-steps) or ("mlp", 0) for this input shape."""
        if len(self.input_shape) == 3:
            _, h, w = self.input_shape
            if min(h, w) >= 32 and h % 8 == 0 and w % 8 == 0:
                return "conv", 3
            if h % 4 == 0 and w % 4 == 0:
                return "conv", 2
        return "mlp", 0

    def build(self) -> nn.Module:
        kind, steps = self.plan()
        return ConvGenerator(self, steps) if kind == "conv" else MLPGenerator(self)


class _CondInput(nn.Module):
    """z ⊕ (vector | label embedding): the generator's first input, N×(latent + V)."""

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.cond = Conditioning(spec.conditioning, spec.num_classes, spec.temperature)
        self.embed = nn.Embedding(spec.num_classes, spec.embed_dim) if self.cond.uses_embedding else None
        self.dim = spec.latent_dim + (spec.embed_dim if self.embed is not None else self.cond.vector_dim)

    def forward(self, z: torch.Tensor, c: Condition) -> torch.Tensor:
        if self.embed is not None:
            return torch.cat([z, self.embed(c.labels)], 1)
        return torch.cat([z, c.vector], 1) if c.vector is not None else z


class _Generate:
    """``generate(labels)``: samples for given classes, drawing the conditions and latents itself."""

    spec: GeneratorSpec
    inp: _CondInput

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """N samples (data space) for N class labels; conditions and z drawn from ``generator``."""
        dev = next(self.parameters()).device  # type: ignore[attr-defined]
        cond = self.inp.cond.for_labels(torch.as_tensor(labels), generator).to(dev)
        z = torch.randn(len(cond.labels), self.spec.latent_dim, generator=generator).to(dev)
        return self(z, cond)  # type: ignore[operator]


class ConvGenerator(_Generate, nn.Module):
    """fc -> (matrix stage at K×K) -> [ConvT 4×4/2 -> BN -> LeakyReLU -> ActiveDropout] × steps -> Conv 3×3."""

    def __init__(self, spec: GeneratorSpec, steps: int) -> None:
        super().__init__()
        self.spec = spec
        c_out, h, w = spec.input_shape
        h0, w0 = h >> steps, w >> steps
        ch = spec.width * 2 ** (steps - 1)  # channels at the base: halved at each up-step, `width` at the end
        self.inp = _CondInput(spec)
        k = spec.num_classes
        self.use_matrix = self.inp.cond.uses_matrix
        if self.use_matrix:  # fc -> (cm, K, K) ⊕ matrix -> conv -> valid (T)conv resampling K×K -> h0×w0
            cm = max(ch // 8, 8)  # thin at K×K: the matrix stage is the costliest spatial size for small images
            self.fc = nn.Sequential(nn.Linear(self.inp.dim, cm * k * k), nn.LeakyReLU(0.2))
            self.base = (cm, k, k)
            mix: list[nn.Module] = [nn.Conv2d(cm + 1, cm, 3, padding=1), nn.LeakyReLU(0.2)]
            if k >= h0 and k >= w0:
                mix.append(nn.Conv2d(cm, ch, (k - h0 + 1, k - w0 + 1)))
            elif k <= h0 and k <= w0:
                mix.append(nn.ConvTranspose2d(cm, ch, (h0 - k + 1, w0 - k + 1)))
            else:
                raise ConfigError(f"cannot resample a {k}×{k} matrix to {h0}×{w0}", "use --conditioning soft or hot")
            self.mix = nn.Sequential(*mix, nn.LeakyReLU(0.2))
        else:
            self.fc = nn.Sequential(nn.Linear(self.inp.dim, ch * h0 * w0), nn.LeakyReLU(0.2))
            self.base = (ch, h0, w0)
        ups: list[nn.Module] = []
        for _ in range(steps):
            ups += [nn.ConvTranspose2d(ch, max(ch // 2, 8), 4, stride=2, padding=1), nn.BatchNorm2d(max(ch // 2, 8)),
                    nn.LeakyReLU(0.2), ActiveDropout(spec.dropout)]
            ch = max(ch // 2, 8)
        self.up = nn.Sequential(*ups)
        self.out = nn.Conv2d(ch, c_out, 3, padding=1)

    def forward(self, z: torch.Tensor, c: Condition) -> torch.Tensor:
        x = self.fc(self.inp(z, c)).view(-1, *self.base)  # (N, ch, K, K) or (N, ch, h0, w0)
        if self.use_matrix:
            x = self.mix(torch.cat([x, c.matrix.to(x.dtype)], 1))  # (N, ch, h0, w0)
        x = self.out(self.up(x))  # (N, C, H, W)
        return _to_range(x, *self.spec.input_range)


class MLPGenerator(_Generate, nn.Module):
    """z ⊕ vector -> Linear(4w) ⊕ flat matrix -> Linear(8w) -> Linear(prod(shape)), LeakyReLU + ActiveDropout
    (with ``spec.mlp_batch_norm``, BatchNorm1d after each hidden Linear)."""

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inp = _CondInput(spec)
        k = spec.num_classes
        self.use_matrix = self.inp.cond.uses_matrix
        h1, h2 = 4 * spec.width, 8 * spec.width
        def norm(h: int) -> list[nn.Module]:
            return [nn.BatchNorm1d(h)] if spec.mlp_batch_norm else []

        self.l1 = nn.Sequential(nn.Linear(self.inp.dim, h1), *norm(h1), nn.LeakyReLU(0.2), ActiveDropout(spec.dropout))
        self.l2 = nn.Sequential(nn.Linear(h1 + (k * k if self.use_matrix else 0), h2), *norm(h2), nn.LeakyReLU(0.2),
                                ActiveDropout(spec.dropout))
        self.l3 = nn.Linear(h2, math.prod(spec.input_shape))

    def forward(self, z: torch.Tensor, c: Condition) -> torch.Tensor:
        h = self.l1(self.inp(z, c))  # (N, 4w)
        if self.use_matrix:
            h = torch.cat([h, c.matrix.flatten(1).to(h.dtype)], 1)
        x = self.l3(self.l2(h)).view(-1, *self.spec.input_shape)
        return _to_range(x, *self.spec.input_range)
