"""netinv checkpoints: a directory with ``model.safetensors`` (weights), ``meta.json`` (architecture spec, data
provenance with exact indices, preprocessing, seed, accuracies, loss curve) and ``mean.npy`` when inputs are
mean-subtracted. Loading rebuilds the module from the spec: no pickle anywhere."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError, ModelError, first_line
from .._utils.checkpoint import read_json_object, safetensors_bytes, write_json
from .._utils.shapes import MAX_INPUT_VALUES
from ..data.npz import numpy_file_kind, read_arrays
from .loaded import LoadedModel
from .registry import spec_from_dict, spec_to_dict

FORMAT = "netinv-checkpoint/1"


def save_checkpoint(out: str | Path, module: torch.nn.Module, spec: Any, meta: dict[str, Any],
                    mean: torch.Tensor | None = None) -> Path:
    """Write a checkpoint directory atomically (built in a temporary sibling, then renamed into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        # bytes written by open(): the usual permissions (safetensors' save_file makes 0600 files)
        (tmp / "model.safetensors").write_bytes(safetensors_bytes(state, {"format": FORMAT,
                                                                          "seed": str(meta.get("seed"))}))
        if mean is not None:
            np.save(tmp / "mean.npy", mean.detach().cpu().numpy().astype(np.float32))
        write_json(tmp / "meta.json", {"format": FORMAT, "arch": spec_to_dict(spec), **meta,
                                       "mean_subtracted": mean is not None})
        if out.exists():
            for name in ("model.safetensors", "meta.json", "mean.npy"):
                (out / name).unlink(missing_ok=True)
            for f in tmp.iterdir():
                f.replace(out / f.name)
            shutil.rmtree(tmp)
        else:
            tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "model.safetensors").is_file()


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild the model of a checkpoint directory (eval mode, CPU)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = read_json_object(path / "meta.json")
    except ValueError as e:
        raise ModelError(f"cannot read {path / 'meta.json'}: {e}", "point at a directory written by netinv train") \
            from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} directory (format={meta.get('format')!r})",
                         "use a checkpoint written by this netinv version")
    fix = "the checkpoint is corrupt or was edited: retrain or restore it"
    try:
        spec = spec_from_dict(meta["arch"])
        with torch.device("meta"):  # shapes only: a forged architecture must not allocate before it is checked
            expected = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
        input_shape, num_outputs = tuple(int(n) for n in spec.input_shape), int(spec.num_outputs)
        lo, hi = (float(v) for v in meta.get("input_range", (0, 1)))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"input_range [{lo}, {hi}] is not a finite LO < HI")
        if math.prod(input_shape) > MAX_INPUT_VALUES:
            raise ValueError(f"input_shape {list(input_shape)} has more than {MAX_INPUT_VALUES} values")
    except Exception as e:
        raise ModelError(f"{path / 'meta.json'} does not describe a model netinv can build: {first_line(e)}",
                         fix) from None
    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise ModelError(f"cannot read {path / 'model.safetensors'}: {first_line(e)}", fix) from None
    if stored != expected:
        diff = sorted(set(stored.items()) ^ set(expected.items()))[:3]
        raise ModelError(f"weights in {path / 'model.safetensors'} do not fit the recorded architecture "
                         f"(e.g. {str(diff)[:200]})", fix)
    module = spec.build()
    try:
        module.load_state_dict(load_file(str(path / "model.safetensors")))
    except Exception as e:
        raise ModelError(f"weights in {path / 'model.safetensors'} do not fit the recorded architecture "
                         f"({first_line(e)})", fix) from None
    module.eval()
    mean = None
    if meta.get("mean_subtracted"):
        try:
            if numpy_file_kind(path / "mean.npy") != "npy":  # an npz or other file named mean.npy
                raise ValueError("not one array saved with np.save")
            arr = read_arrays(path / "mean.npy", what="mean image", allow_npy=True)[""]  # forged headers refused
            if arr.dtype.kind != "f" or arr.size != int(np.prod(input_shape)) or not np.isfinite(arr).all():
                raise ValueError(f"{arr.dtype} array of {arr.size} values for inputs {input_shape}"
                                 + ("" if arr.dtype.kind != "f" or np.isfinite(arr).all() else ", not all finite"))
        except (OSError, ValueError, DataError) as e:
            raise ModelError(f"cannot read the mean image {path / 'mean.npy'}: {first_line(e)}", fix) from None
        mean = torch.from_numpy(arr.astype(np.float32)).reshape(input_shape)
    return LoadedModel(module, input_shape, num_outputs, (lo, hi),
                       mean, meta.get("classes"), meta, {"format": "netinv", "path": str(Path(path).resolve())})
