"""BNN -> integer "plain" form -> CNF (Narodytska et al., AAAI 2018; Suhail, Chakraborty & Sethi 2024).

Plain format (:class:`PlainBNN`, saved as one ``.npz`` with a JSON ``meta`` string; no pickle):

* input bits ``b = (x - mean) >= threshold`` in float32 (D,), ``a = 2 b - 1``; ``fixed_bits[j]`` is -1 for a
  free pixel, else the only bit pixel ``j`` can take inside the data range (a constant); bit 0/1 is written back
  to data space as ``x_lo[j]`` / ``x_hi[j]``;
* hidden layer ``l``: ``weights[l]`` int8 (H_l, H_{l-1}) in {-1, 0, +1} with the BatchNorm direction folded in,
  ``thresholds[l]`` int64 (H_l,): ``h_i = [sum_j W_ij a_j >= k_i]``, then ``a = 2 h - 1``;
* output: ``out_weight`` int8 (C, H) in {-1, 0, +1}, ``out_bias`` int64 (C,): ``score_c = sum_j V_cj a_j +
  out_bias_c / bias_den``; class = argmax with ties to the lowest index; one output: class 1 iff score > 0.

CNF: variables are named in a PySAT IDPool: ``("x", j)`` are ids 1..D (input bit j is variable j+1, also in
DIMACS), ``("h", l, i)`` hidden neurons, ``("g", c, d)`` for c < d means "c beats d" (score_c >= score_d),
``("y", c)`` the class. Each neuron ``h <-> (#agreeing literals >= K)`` is one :func:`cardinality` call.
"""

from __future__ import annotations

import functools
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pysat.formula import CNF, IDPool

from .._errors import ConfigError, DataError, ModelError, first_line
from .._utils.checkpoint import atomic_write_bytes
from .._utils.shapes import same_layout
from ..models.loaded import LoadedModel
from .cardinality import Encoding, auto_encoding, cardinality, parse_encoding


@functools.cache
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController  # comes with scikit-learn

    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """Small matmuls run ~70x faster on one BLAS thread than on a busy multi-threaded pool (measured here)."""
    return _blas().limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class PlainBNN:
    """The integer form of a BNN (see the module docstring); ``predict`` is exact integer arithmetic."""

    input_shape: tuple[int, ...]
    weights: tuple[np.ndarray, ...]
    thresholds: tuple[np.ndarray, ...]
    out_weight: np.ndarray
    out_bias: np.ndarray
    bias_den: int
    fixed_bits: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    num_outputs: int
    threshold: float = 0.5
    mean: np.ndarray | None = None  # (D,) float32 data-space mean subtracted before the threshold, or None
    source: str | None = None  # the file it was read from (recorded in results), or None

    def __post_init__(self) -> None:
        """Refuse a plain net that the CNF would not encode exactly (its integer arithmetic is the model)."""
        ints = {name: _integral(name, getattr(self, name)) for name in ("out_weight", "out_bias", "fixed_bits")}
        ints["weights"] = tuple(_integral(f"w{i}", w) for i, w in enumerate(self.weights))
        ints["thresholds"] = tuple(_integral(f"k{i}", k) for i, k in enumerate(self.thresholds))
        for name, v in ints.items():
            object.__setattr__(self, name, v)
        shape = tuple(int(n) for n in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        d = int(np.prod(shape))
        fix = "see docs/sat.md, 'Bring your own BNN'"
        if not self.weights or len(self.weights) != len(self.thresholds):
            raise ModelError(f"plain BNN: {len(self.weights)} weight matrices and {len(self.thresholds)} threshold "
                             "vectors; a hidden layer needs one of each (w0, k0, w1, k1, …)", fix)
        width = d
        for i, (w, k) in enumerate(zip(self.weights, self.thresholds, strict=True)):
            if w.ndim != 2 or w.shape[1] != width:
                raise ModelError(f"plain BNN: w{i} has shape {w.shape}, expected (H, {width}) (outputs × inputs)",
                                 "store each weight matrix as outputs × inputs (transpose it)")
            if k.shape != (w.shape[0],):
                raise ModelError(f"plain BNN: k{i} has shape {k.shape}, expected ({w.shape[0]},)", fix)
            width = w.shape[0]
        ow = self.out_weight
        if ow.ndim != 2 or ow.shape[1] != width:
            raise ModelError(f"plain BNN: out_weight has shape {ow.shape}, expected (C, {width})",
                             "store it as outputs × last hidden width (transpose it)")
        if ow.shape[0] != self.num_outputs:
            raise ModelError(f"plain BNN: out_weight has {ow.shape[0]} rows but num_outputs is {self.num_outputs}",
                             "set num_outputs to the number of output rows (1 = binary, class 1 iff score > 0)")
        if self.out_bias.shape != (self.num_outputs,):
            raise ModelError(f"plain BNN: out_bias has shape {self.out_bias.shape}, expected ({self.num_outputs},)",
                             fix)
        for name, w in [*((f"w{i}", w) for i, w in enumerate(self.weights)), ("out_weight", ow)]:
            if not np.isin(w, (-1, 0, 1)).all():
                bad = w[~np.isin(w, (-1, 0, 1))][0]
                raise ModelError(f"plain BNN: {name} has values other than -1, 0, +1 (e.g. {bad})",
                                 "binarise the weights (sign, with any BatchNorm direction folded in)")
        if int(self.bias_den) < 1:
            raise ModelError(f"plain BNN: bias_den is {self.bias_den}", "give a positive integer (1 = integer biases)")
        for name, v in (("fixed_bits", self.fixed_bits), ("x_lo", self.x_lo), ("x_hi", self.x_hi)):
            if np.shape(v) != (d,):
                raise ModelError(f"plain BNN: {name} has shape {np.shape(v)}, expected ({d},) for input_shape {shape}",
                                 fix)
        if not np.isin(self.fixed_bits, (-1, 0, 1)).all():
            raise ModelError("plain BNN: fixed_bits must be -1 (free), 0 or 1", fix)
        if self.mean is not None and np.size(self.mean) != d:
            raise ModelError(f"plain BNN: mean has {np.size(self.mean)} values, expected {d}", fix)
        finite = {"x_lo": self.x_lo, "x_hi": self.x_hi, "threshold": self.threshold,
                  **({"mean": self.mean} if self.mean is not None else {})}
        bad = [k for k, v in finite.items() if not np.isfinite(np.asarray(v, dtype=np.float64)).all()]
        if bad:  # a NaN x_lo wrote NaN pixels into "found" preimages; a NaN threshold makes every bit 0
            raise ModelError(f"plain BNN: {', '.join(bad)} must be finite numbers", fix)

    @property
    def num_inputs(self) -> int:
        return int(self.fixed_bits.shape[0])

    @property
    def num_classes(self) -> int:
        return 2 if self.num_outputs == 1 else self.num_outputs

    @property
    def free(self) -> np.ndarray:
        """Indices of the pixels whose bit is not constant."""
        return np.flatnonzero(self.fixed_bits < 0)

    def preact1(self, bits: np.ndarray) -> np.ndarray:
        """First-layer pre-activations ``W_0 a`` (N, H_1) float64 (exact integers) of bits (N, D)."""
        a = np.asarray(np.atleast_2d(bits), dtype=np.float64) * 2 - 1
        with _one_blas_thread():
            return a @ self.weights[0].T.astype(np.float64)

    def scores_from_preact1(self, z: np.ndarray) -> np.ndarray:
        """Output scores times ``bias_den`` (N, C) float64, exact integers, from first-layer pre-activations."""
        with _one_blas_thread():
            a = np.where(z >= self.thresholds[0], 1.0, -1.0)
            for w, k in zip(self.weights[1:], self.thresholds[1:], strict=True):
                a = np.where(a @ w.T.astype(np.float64) >= k, 1.0, -1.0)  # integer sums: exact in float64
            return a @ self.out_weight.T.astype(np.float64) * self.bias_den + self.out_bias

    def scores(self, bits: np.ndarray) -> np.ndarray:
        """Output scores times ``bias_den`` as exact integers (N, C) float64."""
        return self.scores_from_preact1(self.preact1(bits))

    def classes(self, scores: np.ndarray) -> np.ndarray:
        """Scores (N, C) -> classes (N,): argmax with ties to the lowest index; one output: class 1 iff > 0."""
        return (scores[:, 0] > 0).astype(np.int64) if self.num_outputs == 1 else scores.argmax(1).astype(np.int64)

    def predict(self, bits: np.ndarray) -> np.ndarray:
        """Classes (N,) int64 of input bits (N, D)."""
        return self.classes(self.scores(bits))

    def binarize(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Data-space inputs (N, *input_shape), (N, D) or one input -> bits (N, D) bool, the model's float32 ops.

        Raises:
            ConfigError: the shape does not fit the model, or values are NaN.
        """
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x), dtype=torch.float32)
        d = self.num_inputs
        if tuple(t.shape) == tuple(self.input_shape) or t.shape == (d,):
            t = t.reshape(1, d)
        elif t.ndim >= 2 and t[0].numel() == d and (tuple(t.shape[1:]) in (tuple(self.input_shape), (d,))
                                                    or same_layout(t.shape[1:], self.input_shape)):
            t = t.reshape(-1, d)  # also N×8×8 for a 1×8×8 model: the same values in the same order
        else:
            raise ConfigError(f"input of shape {tuple(t.shape)} does not fit the model's {tuple(self.input_shape)}",
                              f"give N×{'×'.join(map(str, self.input_shape))} data-space inputs")
        if torch.isnan(t).any():
            raise ConfigError("input contains NaN", "give finite data-space values")
        if self.mean is not None:
            t = t - torch.as_tensor(self.mean, dtype=torch.float32)
        return (t >= self.threshold).numpy()

    def to_data(self, bits: np.ndarray) -> np.ndarray:
        """Input bits (N, D) -> data-space inputs (N, *input_shape) float32 the PyTorch model reads as these bits."""
        bits = np.atleast_2d(bits).astype(bool)
        return np.where(bits, self.x_hi, self.x_lo).astype(np.float32).reshape(-1, *self.input_shape)

    def save(self, path: str | Path) -> Path:
        """Write the plain format as one ``.npz`` (arrays + JSON ``meta``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": "netinv-bnn-plain/1", "input_shape": list(self.input_shape), "bias_den": self.bias_den,
                "num_outputs": self.num_outputs, "layers": len(self.weights), "threshold": self.threshold}
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"k{i}": k for i, k in enumerate(self.thresholds)}
        if self.mean is not None:
            arrays["mean"] = self.mean
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), out_weight=self.out_weight, out_bias=self.out_bias,
                            fixed_bits=self.fixed_bits, x_lo=self.x_lo, x_hi=self.x_hi, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> PlainBNN:
        """Read :meth:`save` output, or a plain net written by hand (``allow_pickle=False``).

        Required arrays: ``w0, k0, …`` (one pair per hidden layer), ``out_weight``, ``out_bias``. Optional: a JSON
        string ``meta`` with ``input_shape`` (default: the inputs of ``w0``, flat), ``threshold`` (0.5), ``bias_den``
        (1: integer output biases), ``num_outputs`` (the rows of ``out_weight``); arrays ``mean``, ``fixed_bits``
        (default all −1, free), ``x_lo``/``x_hi`` (default 0 / 1). See docs/sat.md, "Bring your own BNN".
        """
        from ..data.npz import read_arrays

        fix = "write it with netinv sat export, or as docs/sat.md 'Bring your own BNN' describes"
        try:
            z = read_arrays(path, what="plain BNN", fix=fix)
        except DataError as e:  # unreadable, pickled, or a single .npy array
            raise ModelError(e.problem, fix) from None
        try:
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
            if not isinstance(meta, dict):
                raise ValueError("meta is not a JSON object")
            n = int(meta.get("layers", sum(1 for k in z if k.startswith("w") and k[1:].isdigit())))
            if n > len(z):  # more layers than arrays: name the first missing ones, never list 10⁸ of them
                raise ModelError(f"plain BNN {path} claims {n} layers but holds {len(z)} arrays", fix)
            missing = [k for k in (*(f"w{i}" for i in range(n)), *(f"k{i}" for i in range(n)), "out_weight",
                                   "out_bias") if k not in z]
            if n < 1 or missing:
                raise ModelError(f"plain BNN {path} lacks arrays {missing or ['w0', 'k0']}", fix)
            den = meta.get("bias_den", 1)
            if isinstance(den, bool) or not isinstance(den, int | float) or not math.isfinite(den) \
                    or den != int(den):
                raise ModelError(f"plain BNN {path}: bias_den is {den!r}, not an integer",
                                 "give bias_den as a positive integer (the output bias is out_bias / bias_den; "
                                 "0.001 is out_bias=1, bias_den=1000)")
            ws = tuple(z[f"w{i}"] for i in range(n))
            d = int(ws[0].shape[-1]) if ws[0].ndim == 2 else 0
            shape = tuple(meta.get("input_shape", (d,)))
            if ws[0].ndim == 2 and int(np.prod(shape)) not in (d, ws[0].shape[0]):  # the latter: transposed w0
                raise ModelError(f"plain BNN {path}: input_shape {list(shape)} has {int(np.prod(shape))} inputs but "
                                 f"w0 takes {d}", "fix input_shape in its meta (or w0, outputs × inputs)")
            d = int(np.prod(shape))
            return cls(shape, ws, tuple(z[f"k{i}"] for i in range(n)), z["out_weight"], z["out_bias"], int(den),
                       z["fixed_bits"] if "fixed_bits" in z else np.full(d, -1, np.int8),
                       z["x_lo"] if "x_lo" in z else np.zeros(d, np.float32),
                       z["x_hi"] if "x_hi" in z else np.ones(d, np.float32),
                       int(meta.get("num_outputs", z["out_weight"].shape[0])), float(meta.get("threshold", 0.5)),
                       z["mean"] if "mean" in z else None, str(Path(path).resolve()))
        except (KeyError, ValueError, TypeError, OverflowError, json.JSONDecodeError) as e:
            raise ModelError(f"cannot read plain BNN {path}: {first_line(e)}", fix) from None


def _integral(name: str, a: Any) -> np.ndarray:
    """``a`` as an int64 array (int8 for values in {-1, 0, 1}), refusing non-integer or non-finite values."""
    a = np.asarray(a)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ModelError(f"plain BNN: {name} has dtype {a.dtype}", "store integers")
    if a.size and np.abs(a.astype(np.float64)).max() > 2.0**53:  # beyond exact integers (1e30 would wrap)
        raise ModelError(f"plain BNN: {name} has a value of magnitude {np.abs(a.astype(np.float64)).max():.3g}",
                         "clip thresholds to [-n, n + 1] (n = the neuron's fan-in): beyond that a neuron is constant")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            bad = a[~np.isfinite(a) | (a != np.round(a))][0]
            fix = ("round the thresholds up (s·z >= k with integer z: k = ceil(k))" if name.startswith("k") else
                   "express the output biases as integer numerators over meta bias_den" if name == "out_bias" else
                   "store -1 (free), 0 or 1 per input bit" if name == "fixed_bits" else
                   "binarise the weights to -1, 0, +1 (sign, with any BatchNorm direction folded in)")
            raise ModelError(f"plain BNN: {name} must be integers, has {bad!r}", fix)
        a = a.astype(np.int64)
    small = a.size == 0 or (a.min() >= -1 and a.max() <= 1)
    return a.astype(np.int8 if small and name not in ("out_bias",) and not name.startswith("k") else np.int64)


def from_model(model: LoadedModel | torch.nn.Module | PlainBNN) -> PlainBNN:
    """Fold a netinv BNN (a :class:`LoadedModel` or the module itself) into its exact integer form.

    Raises:
        ModelError: the model is not a netinv ``bnn`` or has non-finite parameters.
    """
    from ..models.bnn import BIAS_DEN, BNN, fold_batchnorm, quantize_weight

    if isinstance(model, PlainBNN):
        return model
    lm = model if isinstance(model, LoadedModel) else None
    module = lm.module if lm is not None else model
    if not isinstance(module, BNN):
        raise ModelError(f"SAT queries need a binarised network, got {type(module).__name__}, which netinv cannot "
                         "read as one", "give its integer form as a plain .npz (docs/sat.md, 'Bring your own BNN'), a "
                         "factory returning netinv.models.bnn.BNN, or train one: netinv train --arch bnn:100")
    if not all(torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point()):
        raise ModelError("the BNN has NaN or infinite parameters", "retrain it")
    weights, ks = [], []
    for q, lin, bn in zip(module.weights(), module.hidden, module.norms, strict=True):
        s, k = fold_batchnorm(bn, lin.in_features)
        weights.append((q.cpu().numpy().astype(np.int64) * s[:, None]).astype(np.int8))  # s*z >= k
        ks.append(k)
    shape = tuple(module.spec.input_shape)
    d = int(np.prod(shape))
    lo, hi = lm.input_range if lm is not None else (0.0, 1.0)
    mean = lm.mean.detach().float().cpu().reshape(-1).numpy() if lm is not None and lm.mean is not None else None
    out_w = quantize_weight(module.out.weight.detach()).cpu().numpy().astype(np.int8)
    plain = PlainBNN(shape, tuple(weights), tuple(ks), out_w, module.out_bias_int().cpu().numpy(), BIAS_DEN,
                     np.full(d, -1, np.int8), np.full(d, lo, np.float32), np.full(d, hi, np.float32),
                     int(module.spec.num_outputs), float(module.spec.threshold), mean)
    if lm is None or lm.source.get("format") != "netinv":  # a BNN netinv did not train may use exact biases
        _warn_bias_rounding(module.out.bias.detach().double().cpu().numpy(), plain)
    b = plain.binarize(np.stack([plain.x_lo, plain.x_hi]))  # (2, D): bits at the ends of the data range
    plain.fixed_bits[:] = np.where(b[0] == b[1], b[0].astype(np.int8), np.int8(-1))  # constant pixels
    return plain


def _output_terms(v: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per output comparison, the hidden units it counts and their signed coefficients ``δ``.

    One output (``z + b > 0``): the units with ``V_j != 0``, ``δ = V_j``. Otherwise, for each pair c < d: the units
    where ``δ = V_c − V_d`` is not 0. A unit's weight is ``|δ|`` (2 where two ±1 rows differ, 1 where one of them is
    0); its literal is ``h_j`` where ``δ_j > 0``, else ``¬h_j``."""
    v = v.astype(np.int64)
    if v.shape[0] == 1:
        j = np.flatnonzero(v[0])
        return [(j, v[0, j])]
    out = []
    for c in range(v.shape[0]):
        for d in range(c + 1, v.shape[0]):
            j = np.flatnonzero(v[c] != v[d])
            out.append((j, v[c, j] - v[d, j]))
    return out


def _bias_bounds(terms: list[tuple[np.ndarray, np.ndarray]], bias: list[Fraction]) -> list[int]:
    """The output layer's cardinality bounds over :func:`_output_terms` (weighted counts of true literals) for
    exact rational biases.

    With ``a = 2h − 1`` and weights ``w`` (total ``W``), a comparison's score difference is ``2·A − W`` where ``A``
    is the weighted count of its true literals. One output: ``2A − W + b > 0  <->  A >= floor((W − b) / 2) + 1``;
    class c beats d: ``2A − W >= b_d − b_c  <->  A >= ceil((b_d − b_c + W) / 2)``.
    """
    if len(bias) == 1:
        w = int(np.abs(terms[0][1]).sum())
        return [math.floor((w - bias[0]) / 2) + 1]
    pairs = [(c, d) for c in range(len(bias)) for d in range(c + 1, len(bias))]
    return [math.ceil((bias[d] - bias[c] + int(np.abs(delta).sum())) / 2)
            for (c, d), (_, delta) in zip(pairs, terms, strict=True)]


def _effective_bounds(terms: list[tuple[np.ndarray, np.ndarray]], bias: list[Fraction]) -> list[tuple[int, bool]]:
    """Per comparison, the bound the CNF encodes and whether its literals count once (every weight 2: the count and
    the bound halved) rather than with their weights; bounds at or below 0 (always true) read 0, above the count
    (never) read count + 1, so two bias vectors with the same result decide every input alike."""
    out = []
    for (_, delta), bound in zip(terms, _bias_bounds(terms, bias), strict=True):
        w = np.abs(delta)
        halve = bool(len(w)) and bool((w == 2).all())
        bound, total = (-(-bound // 2), len(w)) if halve else (bound, int(w.sum()))
        out.append((min(max(bound, 0), total + 1), halve))
    return out


def _warn_bias_rounding(latent: np.ndarray, plain: PlainBNN) -> None:
    """Warn when netinv's rounding of the output biases to 1/``bias_den`` changes a class decision."""
    exact = [Fraction(float(b)) for b in latent]
    rounded = [Fraction(int(b), plain.bias_den) for b in plain.out_bias]
    terms = _output_terms(plain.out_weight)
    if exact != rounded and _effective_bounds(terms, exact) != _effective_bounds(terms, rounded):
        warnings.warn(f"the BNN's output biases are not multiples of 1/{plain.bias_den}: netinv's BNN rounds them "
                      "(as in its training), and that changes the class of some inputs against the exact biases. "
                      "If your model adds the exact biases, give its plain .npz with integer out_bias over a "
                      "bias_den that makes them exact (docs/sat.md, 'Bring your own BNN')", UserWarning, stacklevel=3)


@dataclass
class BNNFormula:
    """A BNN as CNF: clauses, the variable pool and the literals a query needs."""

    plain: PlainBNN
    vpool: IDPool
    clauses: list[list[int]]
    x_vars: list[int]  # (D,) variable of input bit j (= j + 1)
    h_lits: list[list[int]]  # per hidden layer, the literal of each neuron
    y_lits: list[int]  # (num_classes,) literal of "the class is c"
    encodings: list[str]  # per layer (hidden..., output) the encoding used
    encode_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_vars(self) -> int:
        return self.vpool.top

    @property
    def num_clauses(self) -> int:
        return len(self.clauses)

    def stats(self) -> dict[str, Any]:
        """Sizes of the formula: variables, clauses, encodings per layer, encode time, inputs and free inputs."""
        return {"variables": self.num_vars, "clauses": self.num_clauses, "encodings": self.encodings,
                "encode_time_s": self.encode_time_s, "inputs": self.plain.num_inputs,
                "free_inputs": int(len(self.plain.free))}

    def to_dimacs(self, path: str | Path, cls: int | None = None) -> Path:
        """Write DIMACS CNF; comments name the output literals and the input projection (``c ind``).

        With ``cls`` the unit clause "class = cls" is added (the inversion instance).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        clauses = self.clauses + ([[self.y_lits[cls]]] if cls is not None else [])
        cnf = CNF(from_clauses=clauses)
        cnf.nv = max(cnf.nv, self.num_vars)
        comments = [f"c netinv BNN: input bit j is variable j+1 (1..{len(self.x_vars)}); encodings {self.encodings}",
                    *(f"c y {c} {lit}" for c, lit in enumerate(self.y_lits)),
                    "c ind " + " ".join(map(str, self.x_vars)) + " 0"]
        cnf.comments = comments
        buf = io.StringIO()
        cnf.to_fp(buf)
        atomic_write_bytes(path, buf.getvalue().encode())  # a link at path is replaced, not written through
        return path


def encode(model: LoadedModel | torch.nn.Module | PlainBNN,
           encoding: Encoding | str | list = Encoding.AUTO) -> BNNFormula:
    """Encode a BNN as CNF.

    Args:
        model: a netinv BNN (LoadedModel or module) or a :class:`PlainBNN`.
        encoding: one encoding for every layer, or a list with one per hidden layer plus one for the output layer.
            Default AUTO: by fan-in (:func:`netinv.sat.cardinality.auto_encoding`).

    Returns:
        A :class:`BNNFormula`.

    Raises:
        ModelError: not a BNN. ConfigError: unknown encoding or a list of the wrong length.
    """
    t0 = time.perf_counter()
    plain = from_model(model)
    n_layers = len(plain.weights) + 1
    encs = [parse_encoding(e) for e in encoding] if isinstance(encoding, list | tuple) else \
        [parse_encoding(encoding)] * n_layers
    if len(encs) != n_layers:
        raise ConfigError(f"{len(encs)} encodings for {n_layers} layers", "give one per hidden layer plus the output")
    vp = IDPool()
    x_vars = [vp.id(("x", j)) for j in range(plain.num_inputs)]
    clauses: list[list[int]] = [[v if plain.fixed_bits[j] else -v] for j, v in enumerate(x_vars)
                                if plain.fixed_bits[j] >= 0]
    used: list[str] = []
    prev, h_lits = x_vars, []
    for layer, (w, k) in enumerate(zip(plain.weights, plain.thresholds, strict=True)):
        enc = encs[layer] if encs[layer] is not Encoding.AUTO else auto_encoding(int((w != 0).sum(1).max(initial=0)))
        used.append(enc.value)
        cur = []
        for i in range(w.shape[0]):
            nz = np.flatnonzero(w[i])
            lits = [prev[j] if w[i, j] > 0 else -prev[j] for j in nz]  # agree with the weight's sign
            # sum_j W a = 2 #agree - n >= k  <->  #agree >= ceil((k + n) / 2)
            bound = -((-(int(k[i]) + len(nz))) // 2)
            o, cl = cardinality(lits, bound, vpool=vp, encoding=enc, name=("h", layer, i))
            clauses += cl
            h = vp.id(("h", layer, i))
            clauses += [[-h, o], [h, -o]]
            cur.append(h)
        h_lits.append(cur)
        prev = cur
    y_lits = _encode_output(plain, prev, vp, clauses, encs[-1], used)
    f = BNNFormula(plain, vp, clauses, x_vars, h_lits, y_lits, used)
    f.encode_time_s = time.perf_counter() - t0
    return f


def _encode_output(plain: PlainBNN, hid: list[int], vp: IDPool, clauses: list, enc: Encoding, used: list) -> list[int]:
    """The class literals: each comparison of :func:`_output_terms` is one :func:`cardinality` over its literals
    (bound from :func:`_bias_bounds`, exact rationals ``out_bias / bias_den``). A weight-2 literal counts twice: when
    every weight of a comparison is 2 (two ±1 rows) the bound is halved instead; otherwise the literal's second copy
    is a fresh variable equal to it, since the cardinality encodings take distinct variables."""
    v = plain.out_weight.astype(np.int64)
    terms = _output_terms(v)
    bounds = _effective_bounds(terms, [Fraction(int(b), plain.bias_den) for b in plain.out_bias])
    enc = enc if enc is not Encoding.AUTO else auto_encoding(v.shape[1])
    used.append(enc.value)
    names = [("y", 1)] if plain.num_outputs == 1 else \
        [("g", c, d) for c in range(v.shape[0]) for d in range(c + 1, v.shape[0])]
    for name, (units, delta), (bound, halved) in zip(names, terms, bounds, strict=True):
        lits = [hid[j] if dj > 0 else -hid[j] for j, dj in zip(units, delta, strict=True)]
        if not halved:  # (halved: 2·#true >= bound  <->  #true >= ceil(bound / 2), each literal once)
            for lit, dj, j in zip(list(lits), delta, units, strict=True):
                if abs(dj) == 2:  # a copy e <-> lit, so the literal counts twice over distinct variables
                    e = vp.id(("w2", *name, int(j)))
                    clauses += [[-e, lit], [e, -lit]]
                    lits.append(e)
        o, cl = cardinality(lits, bound, vpool=vp, encoding=enc, name=("out", *name))
        clauses += cl
        g = vp.id(name)
        clauses += [[-g, o], [g, -o]]
    if plain.num_outputs == 1:
        y1 = vp.id(("y", 1))
        return [-y1, y1]
    C = v.shape[0]
    y_lits = []
    for c in range(C):
        beats = [vp.id(("g", c, d)) for d in range(c + 1, C)] + [-vp.id(("g", d, c)) for d in range(c)]
        y = vp.id(("y", c))
        clauses += [[-y, b] for b in beats] + [[y] + [-b for b in beats]]  # y <-> AND(beats)
        y_lits.append(y)
    return y_lits


def export(model: LoadedModel | torch.nn.Module | PlainBNN, out: str | Path,
           encoding: Encoding | str | list = Encoding.AUTO, cls: int | None = None) -> dict[str, Any]:
    """Write ``out/plain.npz`` and ``out/plain.json`` (the plain format), ``out/model.cnf`` (DIMACS; with ``cls``
    the unit clause "class = cls" is added) and ``out/result.json`` (sizes and paths).

    Returns:
        The dict written to result.json.
    """
    from .._utils.checkpoint import write_json

    out = Path(out)
    f = encode(model, encoding)
    p = f.plain
    if cls is not None and not 0 <= cls < len(f.y_lits):
        raise ConfigError(f"class {cls} outside 0..{len(f.y_lits) - 1}", "give a valid class index")
    p.save(out / "plain.npz")
    write_json(out / "plain.json", {
        "format": "netinv-bnn-plain/1", "input_shape": list(p.input_shape), "threshold": p.threshold,
        "mean": None if p.mean is None else p.mean.tolist(), "fixed_bits": p.fixed_bits.tolist(),
        "x_lo": p.x_lo.tolist(), "x_hi": p.x_hi.tolist(), "num_outputs": p.num_outputs, "bias_den": p.bias_den,
        "layers": [{"weights": w.tolist(), "thresholds": k.tolist()} for w, k in zip(p.weights, p.thresholds,
                                                                                   strict=True)],
        "out_weight": p.out_weight.tolist(), "out_bias": p.out_bias.tolist()})
    f.to_dimacs(out / "model.cnf", cls)
    res = {"query": "export", "formula": f.stats(), "class": cls, "y_lits": f.y_lits,
           "files": {k: str(out / k) for k in ("plain.npz", "plain.json", "model.cnf")}}
    write_json(out / "result.json", res)
    return res
