"""Query results as dataclasses (UNSAT is a result, UNKNOWN is a timeout) and their files: ``result.json``,
``preimages.npz`` (``x`` data space shaped like the model input, ``y`` the class) and ``preimages.png``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.checkpoint import atomic_write_bytes, write_json
from .._utils.runinfo import environment


class Status(StrEnum):
    SAT = "SAT"  # an input was found (it is checked by the model)
    UNSAT = "UNSAT"  # proved: no input satisfies the query
    UNKNOWN = "UNKNOWN"  # stopped at the time limit


@dataclass
class ClassOutcome:
    """One class of an :func:`~netinv.sat.invert` query."""

    cls: int
    status: Status
    time_s: float
    method: str  # "candidates" (cheap model-checked input), "enumeration" (every input checked), "solver"
    bits: np.ndarray | None = None  # (D,) bool


@dataclass
class InvertResult:
    outcomes: list[ClassOutcome]
    formula: dict[str, Any]  # variables, clauses, encodings, encode time
    x: np.ndarray  # (K, *input_shape) data-space preimages of the SAT classes
    y: np.ndarray  # (K,) their classes
    verified: bool | None  # the PyTorch model classifies every x as y (None: no PyTorch model given)
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``result.json`` holds; arrays stay in ``preimages.npz``)."""
        return {"query": "invert", "seed": self.seed, "config": self.config, "formula": self.formula,
                "verified": self.verified,
                "classes": {o.cls: {"status": o.status.value, "time_s": o.time_s, "method": o.method}
                            for o in self.outcomes}}


@dataclass
class InferResult:
    sat_classes: np.ndarray  # (N,) class decided by the CNF (-1 where it timed out)
    model_classes: np.ndarray  # (N,) class by the PyTorch model (or the plain integer model)
    agree: bool  # every decided input agrees
    times_s: np.ndarray  # (N,) solve time per input
    formula: dict[str, Any]
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``result.json`` holds; arrays stay in ``preimages.npz``)."""
        return {"query": "infer", "seed": self.seed, "config": self.config, "formula": self.formula,
                "agree": self.agree, "n": int(len(self.sat_classes)),
                "unknown": int((self.sat_classes < 0).sum()), "sat_classes": self.sat_classes.tolist(),
                "model_classes": self.model_classes.tolist(), "median_time_s": float(np.median(self.times_s))
                if len(self.times_s) else None}


@dataclass
class SampleResult:
    cls: int
    status: Status  # SAT: n found; UNSAT: the solver proved fewer exist (all are listed); UNKNOWN: timed out
    x: np.ndarray  # (K, *input_shape) data space
    bits: np.ndarray  # (K, D) bool, distinct
    hamming: np.ndarray  # (K, K) pairwise Hamming distances; (0, 0) above HAMMING_MATRIX_MAX (2 000) samples
    time_s: float  # search time, over every invocation of a resumed sample
    per_second: float
    methods: dict[str, int]  # how many came from candidates / solver / unigen
    verified: bool | None
    formula: dict[str, Any]
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    hamming_stats: dict[str, Any] = field(default_factory=dict)  # min / mean / max over all pairs, any K
    resumed: int = 0  # preimages taken from an interrupted call's checkpoint (0: found by one uninterrupted call)

    @property
    def y(self) -> np.ndarray:
        return np.full(len(self.bits), self.cls, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``result.json`` holds; arrays stay in ``preimages.npz``)."""
        return {"query": "sample", "seed": self.seed, "config": self.config, "formula": self.formula,
                "class": self.cls, "status": self.status.value, "found": int(len(self.bits)), "time_s": self.time_s,
                "per_second": self.per_second, "methods": self.methods, "verified": self.verified,
                "hamming": self.hamming_stats, "resumed": self.resumed}


@dataclass
class ClassCount:
    cls: int
    status: Status  # SAT: estimate (count > 0); UNSAT: count 0; UNKNOWN: timed out
    count: float | None  # estimated number of preimages (exact with method="exact")
    log2_count: float | None
    fraction: float | None  # count / space: the share of the (constrained) input space the class owns
    time_s: float


@dataclass
class CountResult:
    counts: list[ClassCount]
    method: str  # "approxmc" or "exact"
    epsilon: float | None
    delta: float | None
    free_bits: int
    formula: dict[str, Any]
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    space: int | None = None  # inputs the constraints leave (the fractions' denominator)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``result.json`` holds; arrays stay in ``preimages.npz``)."""
        return {"query": "count", "seed": self.seed, "config": self.config, "formula": self.formula,
                "method": self.method, "epsilon": self.epsilon, "delta": self.delta, "free_bits": self.free_bits,
                "space": self.space,
                "classes": {c.cls: {"status": c.status.value, "count": c.count, "log2_count": c.log2_count,
                                    "fraction": c.fraction, "time_s": c.time_s} for c in self.counts}}


@dataclass
class RobustResult:
    status: Status  # SAT: a counterexample exists (not robust); UNSAT: proof of robustness; UNKNOWN: timeout
    robust: bool | None
    cls: int  # the class of the given input
    radius: int
    time_s: float
    method: str
    x: np.ndarray  # (0 or 1, *input_shape) the counterexample in data space
    counter_class: int | None
    distance: int | None  # its Hamming distance to the input's bits
    verified: bool | None
    formula: dict[str, Any]
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def y(self) -> np.ndarray:
        return np.array([] if self.counter_class is None else [self.counter_class], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``result.json`` holds; arrays stay in ``preimages.npz``)."""
        return {"query": "robust", "seed": self.seed, "config": self.config, "formula": self.formula,
                "status": self.status.value, "robust": self.robust, "class": self.cls, "radius": self.radius,
                "time_s": self.time_s, "method": self.method, "counterexample_class": self.counter_class,
                "distance": self.distance, "verified": self.verified}


def model_record(model: Any) -> dict[str, Any]:
    """What a result records of the queried model: a loaded model's own record (``LoadedModel.record``), a plain
    BNN's file, or the class of a module passed in memory."""
    if hasattr(model, "record") and hasattr(model, "source"):  # a LoadedModel
        return model.record()
    if isinstance(model, str | Path):  # the path the query was given
        return {"format": "path", "path": str(Path(model).resolve())}
    plain = getattr(model, "plain", model)  # a BNNFormula holds its PlainBNN
    if hasattr(plain, "thresholds"):
        return {"format": "plain", "path": getattr(plain, "source", None)}
    return {"format": "module", "class": type(model).__name__}


def write_outputs(result: Any, out: str | Path, model: Any = None) -> Path:
    """Write ``out/result.json`` (with the queried model and the environment) and, when inputs were found,
    ``preimages.npz/.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the SAT solver always computes on the CPU (a PyTorch check of the found inputs runs wherever the model is)
    write_json(out / "result.json", {**result.to_dict(), "model": model_record(model) if model is not None else None,
                                     "environment": environment("cpu")})
    x = getattr(result, "x", None)
    if x is not None and len(x):
        y = np.asarray(result.y)
        buf = io.BytesIO()
        meta = {"seed": getattr(result, "seed", None), "query": type(result).__name__.removesuffix("Result").lower(),
                "record": "result.json"}
        np.savez_compressed(buf, x=np.asarray(x, np.float32), y=y, meta=np.array(json.dumps(meta)))
        atomic_write_bytes(out / "preimages.npz", buf.getvalue())
        save_grid(np.asarray(x), out / "preimages.png", meta=meta)
    return out


def save_grid(x: np.ndarray, path: Path, cols: int = 10, scale: int = 4, meta: dict | None = None) -> None:
    """Tile images (K, C, H, W) or flat rows (K, D) into one PNG (flat rows become the squarest H×W); ``meta``
    (e.g. the seed) goes into a PNG text chunk ``netinv``."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        d = x.shape[1]
        h = max(i for i in range(1, int(d**0.5) + 1) if d % i == 0)
        x = x.reshape(-1, 1, h, d // h)
    if x.ndim == 3:
        x = x[:, None]
    k, c, h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    cols = min(cols, k)
    rows = -(-k // cols)
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32) * 0.5
    for i in range(k):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    img = (grid * 255).round().astype(np.uint8)
    img = img[:, :, 0] if c == 1 else img[:, :, :3]
    buf = io.BytesIO()
    info = PngInfo()
    if meta:
        info.add_text("netinv", json.dumps(meta))
    Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(buf, format="png",
                                                                                                  pnginfo=info)
    atomic_write_bytes(Path(path), buf.getvalue())
