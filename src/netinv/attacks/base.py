"""The shape every attack shares: ``Attack(model, config).invert(n, seed=..., out=..., resume=...) -> Candidates``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils.checkpoint import atomic_write_bytes, read_json_object, write_json
from ..models.loaded import LoadedModel


@dataclass
class Candidates:
    """What an attack produced.

    Attributes:
        x: N×``input_shape`` float32 inputs in DATA space (mean added back; not clipped, not rescaled).
        y: N int64 class each candidate was made for.
        score: N attacker-side quality (higher = more trustworthy; no ground truth involved), or None.
        arrays: further per-candidate arrays saved beside x and y (e.g. ``lam`` for KKT).
        info: run metadata (config, seed, loss curve, wall time …) written to run.json.
    """

    x: torch.Tensor
    y: torch.Tensor
    score: torch.Tensor | None = None
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:  # one line in a notebook, not every pixel
        shape = "×".join(map(str, self.x.shape))
        return (f"Candidates({shape} {str(self.x.dtype).removeprefix('torch.')}, classes "
                f"{dict(zip(*[t.tolist() for t in torch.unique(self.y, return_counts=True)], strict=True))}, "
                f"score {'yes' if self.score is not None else 'none'}, arrays {sorted(self.arrays)}, "
                f"seed {self.info.get('seed')})")

    def ranked(self) -> Candidates:
        """Sorted by ``score``, best first (unchanged when there is no score)."""
        if self.score is None:
            return self
        order = torch.argsort(self.score.cpu(), descending=True)
        return Candidates(self.x[order], self.y[order], self.score[order],
                          {k: v[order] for k, v in self.arrays.items()}, self.info)

    def save(self, out: str | Path, name: str = "candidates.npz") -> Path:
        """Write ``out/name`` (x, y, score, arrays, and ``meta``: a JSON string with the seed and the attack) and
        ``out/run.json`` (info) atomically."""
        import io
        import json

        out = Path(out)
        arrays = {"x": self.x, "y": self.y, **({"score": self.score} if self.score is not None else {}),
                  **self.arrays}
        meta = {"seed": self.info.get("seed"), "attack": self.info.get("attack"), "record": "run.json"}
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: v.detach().cpu().numpy() for k, v in arrays.items()},
                            meta=np.array(json.dumps(meta)))
        atomic_write_bytes(out / name, buf.getvalue())
        write_json(out / "run.json", self.info)
        return out / name


def load_candidates(out: str | Path, name: str = "candidates.npz") -> Candidates:
    """A finished run's :class:`Candidates` from ``out/name`` and ``out/run.json`` (what :meth:`Candidates.save`
    wrote)."""

    from .._errors import DataError
    from ..data.npz import read_arrays

    out = Path(out)
    arrays = {k: torch.from_numpy(v) for k, v in read_arrays(out / name, what="candidates").items() if k != "meta"}
    if not {"x", "y"} <= set(arrays):
        raise DataError(f"{out / name} has arrays {sorted(arrays)}, not x and y", "rerun the attack to rewrite it")
    try:
        info = read_json_object(out / "run.json")
    except ValueError as e:
        raise DataError(f"cannot read {out / 'run.json'}: {e}", "rerun the attack to rewrite it") from None
    x, y, score = arrays.pop("x"), arrays.pop("y"), arrays.pop("score", None)
    return Candidates(x, y, score, arrays, info)


class Attack(ABC):
    """Base class: holds the frozen model and a config; subclasses implement :meth:`invert`."""

    def __init__(self, model: LoadedModel | str | Path, config: Any = None) -> None:
        if isinstance(model, str | Path):  # a path, as netinv.audit and the CLI take: loaded with the defaults
            from ..models.loading import load_model

            model = load_model(model)
        if not isinstance(model, LoadedModel):
            from .._errors import ModelError

            raise ModelError(f"the attack got a {type(model).__name__}, not a model",
                             "pass netinv.load_model(path_or_module) or a path")
        self.model = model
        self.config = config
        model.module.eval()  # frozen: dropout off, BatchNorm uses its running statistics

    @abstractmethod
    def invert(self, n: int | None = None, *, seed: int = 0, out: str | Path | None = None,
               resume: bool = False) -> Candidates:
        """Produce ``n`` candidate inputs (method-specific default when None)."""
