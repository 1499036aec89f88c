"""``load_model``: any classifier in. netinv checkpoint directories, ``torch.export`` archives (.pt2), TorchScript
files, ``package.module:factory`` plus a weights file (safetensors, or a state_dict read with ``weights_only=True``),
or an ``nn.Module`` in memory. Nothing is unpickled beyond tensors. Here: the dispatch on the model's source, its
input contract (shape, range, mean image) and the forward-pass probes; the two program formats are loaded by
:mod:`netinv.models.exported`, after :mod:`netinv.models.screen` has checked them."""

from __future__ import annotations

import importlib
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import DataError, ModelError, informative_line
from .._utils.device import resolve_device
from .._utils.shapes import MAX_INPUT_VALUES, check_layout, same_layout
from ..data import Dataset
from ..data.npz import numpy_file_kind, read_arrays
from .checkpoint import is_checkpoint, load_checkpoint
from .exported import archive_kind, load_export, load_torchscript
from .loaded import LoadedModel


def load_model(model: str | Path | nn.Module | LoadedModel, *, weights: str | Path | None = None,
               input_shape: tuple[int, ...] | None = None, input_range: tuple[float, float] | None = None,
               mean: str | Path | torch.Tensor | np.ndarray | None = None, device: str = "auto") -> LoadedModel:
    """Load a classifier and its input contract.

    Args:
        model: a netinv checkpoint directory, a ``.pt2`` export, a TorchScript file, ``pkg.module:factory`` (with
            ``weights``), an ``nn.Module`` or a ``LoadedModel``.
        weights: weights for a factory model: ``.safetensors`` or a state_dict file (loaded ``weights_only``).
        input_shape: one input's shape (C, H, W) or (D,), when the file does not carry it.
        input_range: (lo, hi) of valid data-space inputs. Default: the checkpoint's, else (0, 1).
        mean: a data-space mean image (``.npy`` or tensor) the model expects subtracted from its inputs.
        device: ``auto`` (a GPU when one is present), ``cpu`` or ``cuda``. An ``nn.Module`` or ``LoadedModel``
            passed in is the caller's object and is moved in place, so ``auto`` leaves it on the device it is on (a
            caller's CPU model stays on the CPU); an explicit ``cpu`` or ``cuda`` moves it.

    Returns:
        The model in eval mode on ``device``, with ``num_outputs`` found by a forward pass.

    Raises:
        ModelError: unreadable file, unknown format, missing input shape, NaN/inf weights, output of the wrong rank.
    """
    dev = resolve_device(device)
    keep_device = isinstance(model, LoadedModel | nn.Module) and isinstance(device, str) and device.lower() == "auto"
    if input_shape is not None:
        input_shape = _checked_shape(input_shape)
    if isinstance(model, LoadedModel):
        lm = model
    elif isinstance(model, nn.Module):
        lm = _wrap(model, input_shape, {"format": "module", "class": type(model).__name__})
    else:
        lm = _load_path(str(model), weights, input_shape)
    if weights is not None and lm.source.get("format") != "factory":
        kind = {"export": "torch.export archive", "torchscript": "TorchScript file", "netinv": "netinv checkpoint",
                "module": "module"}.get(lm.source.get("format"), "loaded model")
        raise ModelError(f"--weights {weights} applies to a package.module:factory model, not to a {kind} (it has "
                         "its weights)", "drop --weights")
    if mean is not None and lm.source.get("format") == "netinv" and not isinstance(model, LoadedModel):
        raise ModelError(f"--mean {mean if isinstance(mean, str | Path) else '(an array)'} given for a netinv "
                         "checkpoint, which records its own mean image (or that it has none)", "drop --mean")
    if input_shape is not None and tuple(input_shape) != tuple(lm.input_shape):
        raise ModelError(f"--input-shape {tuple(input_shape)} differs from the model's {tuple(lm.input_shape)}",
                         "drop --input-shape or give the shape the model was built for")
    if input_range is not None:
        lo, hi = map(float, input_range)
        if not lo < hi:
            raise ModelError(f"input range {input_range} is empty", "give LO,HI with LO < HI")
        if lm.source.get("format") == "netinv" and (lo, hi) != tuple(map(float, lm.input_range)) \
                and not isinstance(model, LoadedModel):
            raise ModelError(f"--input-range {lo:g},{hi:g} contradicts the checkpoint, trained on data in "
                             f"[{lm.input_range[0]:g}, {lm.input_range[1]:g}]", "drop --input-range for a netinv "
                             "checkpoint (it records its range)")
        lm.input_range = (lo, hi)
    if mean is not None:
        lm.mean = _read_mean(mean, lm.input_shape)
    if lm.mean is not None:
        _check_mean_in_range(lm.mean, lm.input_range)
    if mean is not None:
        if isinstance(mean, str | Path):  # recorded in run.json, so `netinv evaluate` reloads it (_recorded_model)
            lm.source = {**lm.source, "mean": str(Path(mean).resolve())}
    if input_shape is not None and lm.source.get("format") in ("torchscript", "factory"):
        lm.source = {**lm.source, "input_shape": list(lm.input_shape)}
    _check_finite(lm.module)
    lm.module.eval()
    if not keep_device:
        lm.to(dev)
    lm.num_outputs = _probe_outputs(lm)
    return lm




def _checked_shape(shape: Any) -> tuple[int, ...]:
    """An input shape as positive integers of a plausible total size, or one ModelError."""
    try:
        dims = tuple(int(d) for d in shape)
        if any(float(d) != int(d) for d in shape):
            raise ValueError
    except (TypeError, ValueError):
        raise ModelError(f"input shape {shape!r} is not a list of integers", "give e.g. --input-shape 1,28,28") \
            from None
    if not dims or min(dims) < 1 or int(np.prod(dims, dtype=np.float64)) > MAX_INPUT_VALUES:
        raise ModelError(f"input shape {dims} is not a plausible input (dimensions ≥ 1, at most {MAX_INPUT_VALUES} "
                         "values)", "give the shape of one input, e.g. --input-shape 1,28,28")
    return dims


def check_compatible(model: LoadedModel, data: Dataset, *, reshape: bool = False) -> None:
    """One-line error when ``data`` does not fit the model's inputs or classes. With ``reshape``, inputs of another
    shape but the same size pass (images for a model on flattened images; the caller reshapes them)."""
    same_size = int(np.prod(data.input_shape)) == int(np.prod(model.input_shape))
    if tuple(data.input_shape) != tuple(model.input_shape) and not (reshape and same_size):
        raise ModelError(f"the model takes inputs shaped {tuple(model.input_shape)}, the data is {data.input_shape}",
                         "use the data set the model was trained on, or pass --input-shape for a user model")
    check_layout(data.input_shape, model.input_shape)
    if data.num_classes > model.num_classes:
        top = int(data.y.max()) if len(data.y) else -1
        if top >= model.num_classes:  # labels beyond the model's outputs (a user's file, or a different task)
            raise ModelError(f"labels outside 0..{model.num_classes - 1} for a model with {model.num_classes} "
                             f"classes (the data has label {top})",
                             "give the model's own class indices (a netinv checkpoint: the same --task as in "
                             "training)")
        raise ModelError(f"the data has {data.num_classes} classes, the model {model.num_classes}",
                         "use the same --task as in training")


def _load_path(spec: str, weights: str | Path | None, input_shape: tuple[int, ...] | None) -> LoadedModel:
    path = Path(spec)
    if path.is_dir():
        if is_checkpoint(path):
            return load_checkpoint(path)
        raise ModelError(f"{path} is a directory without model.safetensors + meta.json",
                         "point at a netinv checkpoint directory (netinv train --out DIR)")
    if path.is_file():
        kind = archive_kind(path)
        if kind == "export":
            return _wrap(*load_export(path, input_shape))
        if kind == "torchscript":
            return _wrap(load_torchscript(path), input_shape, {"format": "torchscript", "path": str(path.resolve())})
        raise ModelError(f"{path} is neither a torch.export archive nor a TorchScript file",
                         "a weights-only file needs a factory: pass package.module:factory --weights FILE")
    if ":" in spec and not path.exists():
        return _load_factory(spec, weights, input_shape)
    raise ModelError(f"model {spec!r} not found", "give a checkpoint dir, .pt2, TorchScript file or pkg.mod:factory")


def _load_factory(spec: str, weights: str | Path | None, input_shape: tuple[int, ...] | None) -> LoadedModel:
    mod_name, _, fn_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"cannot import factory {spec!r}: {e}", "give package.module:function importable on "
                                                                  "PYTHONPATH") from None
    try:
        module = factory()
    except Exception as e:
        raise ModelError(f"factory {spec!r} raised {type(e).__name__}: {informative_line(e)}",
                         "make the factory build the model when called without arguments") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"factory {spec!r} returned {type(module).__name__}, not an nn.Module",
                         "make the factory return the (untrained) model")
    if weights is None:
        raise ModelError(f"factory model {spec!r} needs weights", "pass --weights FILE (.safetensors or .pt)")
    wpath = Path(weights)
    try:
        if wpath.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(wpath))
        else:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
        module.load_state_dict(state)
    except FileNotFoundError:
        raise ModelError(f"weights file {wpath} not found", "check the --weights path") from None
    except pickle.UnpicklingError as e:  # weights_only refused a Python object: say so, not torch's advice to
        # rerun with weights_only=False (which would run the file's code)
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise ModelError(f"refusing weights {wpath}: they hold pickled Python objects"
                         + (f" ({found.group(1)})" if found else "") + ", which could run code when loaded",
                         "save the model's state_dict (tensors only), e.g. with safetensors: "
                         "safetensors.torch.save_file(model.state_dict(), 'w.safetensors')") from None
    except Exception as e:
        raise ModelError(f"cannot load weights {wpath} into {spec}: {informative_line(e)}",
                         "the weights must be a state_dict (tensors only) of the factory's model") from None
    return _wrap(module, input_shape, {"format": "factory", "factory": spec, "weights": str(wpath.resolve())})


def _wrap(module: nn.Module, input_shape: tuple[int, ...] | None, source: dict[str, Any]) -> LoadedModel:
    if input_shape is None:  # a netinv spec on an in-memory module; a file's module is never asked (a TorchScript
        # property would run code from the file)
        shape = None if source.get("format") in ("torchscript", "export") else getattr(
            getattr(module, "spec", None), "input_shape", None)
        if shape is None:
            raise ModelError(f"the input shape of {source.get('path', source.get('class', 'the model'))} is unknown",
                             "pass --input-shape C,H,W (e.g. 1,28,28) or D for flat inputs")
        input_shape = tuple(shape)
    return LoadedModel(module, tuple(int(s) for s in input_shape), 0, source=source)


def _read_mean(mean: str | Path | torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(mean, str | Path):
        try:
            kind = numpy_file_kind(mean)
            if kind is None:
                raise ValueError("not a .npy file")
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read mean image {mean}: {e}", "pass a .npy array saved with np.save") from None
        if kind == "npz":
            raise ModelError(f"{mean} is an npz archive, not one array", "save the mean with np.save(path, mean)")
        try:
            mean = read_arrays(mean, what="mean image", allow_npy=True)[""]  # forged headers refused
        except DataError as e:
            raise ModelError(e.problem, "pass a .npy array saved with np.save") from None
    arr = np.asarray(mean.cpu() if isinstance(mean, torch.Tensor) else mean)
    if arr.dtype.kind not in "biuf":
        raise ModelError(f"mean image has dtype {arr.dtype}, not numbers", "save a float array with np.save")
    t = torch.as_tensor(arr, dtype=torch.float32)
    if t.numel() == math.prod(shape) and tuple(t.shape) != tuple(shape) and same_layout(t.shape, shape):
        return t.reshape(shape).clone()  # e.g. a 1×8×8 mean image for a model on flat rows of 64
    try:
        return torch.broadcast_to(t, shape).clone()
    except RuntimeError:
        raise ModelError(f"mean image shaped {tuple(t.shape)} does not fit inputs {shape}",
                         "save the mean with the model's input shape") from None


def _check_mean_in_range(mean: torch.Tensor, input_range: tuple[float, float]) -> None:
    """A mean of data-space inputs lies inside their range; one outside it is on another scale (0..255 for inputs in
    [0, 1]) or the range is missing, and every figure computed with it would be wrong without a sign."""
    lo, hi = map(float, input_range)
    a, b = float(mean.min()), float(mean.max())
    slack = 1e-3 * (hi - lo)
    if a < lo - slack or b > hi + slack:
        raise ModelError(f"the mean image spans [{a:g}, {b:g}], outside the input range [{lo:g}, {hi:g}]",
                         "save the mean on the inputs' scale (e.g. a 0..255 mean divided by 255), or give the "
                         "inputs' --input-range LO,HI")


def _check_finite(module: nn.Module) -> None:
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelError(f"weights contain NaN or inf ({name})", "the model diverged in training: use a saved "
                                                                     "earlier checkpoint or retrain")


@torch.no_grad()
def _probe_outputs(lm: LoadedModel) -> int:
    x = torch.zeros((2, *lm.input_shape), device=lm.device)
    x += (lm.input_range[0] + lm.input_range[1]) / 2
    try:
        out = lm.logits(x)
    except Exception as e:
        msg = informative_line(e, 160)
        if "device" in msg.lower():  # e.g. "Expected all tensors to be on the same device"
            raise ModelError(f"the model fails on {lm.device}: it keeps tensors on another device ({msg})",
                             "load it with --device cpu, or keep every tensor of the model in its parameters and "
                             "buffers (a torch.export archive: re-export it after model.cpu())") from None
        dtypes = {str(t.dtype).removeprefix("torch.") for t in (*lm.module.parameters(), *lm.module.buffers())
                  if t.is_floating_point() and t.dtype != torch.float32}
        if dtypes:
            raise ModelError(f"the model fails on float32 inputs, its weights are {', '.join(sorted(dtypes))} ({msg})",
                             "convert it to float32 before saving (model.float(), then export or save again)") \
                from None
        fix = "pass the right --input-shape"
        if "kwarg keyword mismatch" in msg:  # exported as export(m, (), {"x": x}): netinv passes inputs by position
            fix = "export it with the input passed by position: torch.export.export(model, (x,))"
        elif ("Guard failed" in msg or "Expected input at" in msg) and lm.source.get("format") == "export":
            # e.g. an export valid for batch >= 3 only
            fix = ("the export accepts only some batch sizes (netinv probes with 2 and attacks in other sizes): "
                   "export it again with dynamic_shapes=({0: torch.export.Dim('batch', min=1)},)")
        if lm.source.get("format") == "torchscript":
            fix += ("; a trace made with a fixed batch size (e.g. x.view(4, -1)) must be traced again with "
                    "x.view(x.shape[0], -1), or saved with torch.export")
        raise ModelError(f"the model fails on inputs shaped {tuple(lm.input_shape)}: {msg}", fix) from None
    if isinstance(out, torch.Tensor) and out.shape == (2,):  # a binary model's (N,) logit, e.g. .squeeze(-1)
        raise ModelError("the model returns one value per input, shape (N,), not N×K logits (a binary model that "
                         "squeezes its one logit?)", "wrap it to return N×1, e.g. forward(x) = model(x)[:, None], "
                         "and save or export that")
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        raise ModelError(f"the model returns {getattr(out, 'shape', type(out).__name__)} for a batch of 2 inputs, "
                         "not N×K logits", "wrap it so forward returns a (batch, classes) tensor")
    _check_logits(_check_deterministic(lm))
    return int(out.shape[1])


def _check_logits(out: torch.Tensor | None) -> None:
    """Softmax applied twice flattens every class score (a generator then reports confidences of 0.2 that are not the
    model's, PGD fails where it would succeed) without any error: refuse outputs that are probabilities (every row of
    a random batch non-negative and summing to 1). Log-probabilities are logits up to a per-row constant: accepted."""
    if out is None or out.shape[1] < 2:  # one sigmoid output cannot be told from a logit
        return
    if bool((out >= 0).all()) and float((out.double().sum(1) - 1).abs().max()) < 1e-4:
        raise ModelError("the model returns probabilities (each output row is non-negative and sums to 1), not "
                         "logits", "return the logits: remove the final softmax before saving or exporting (netinv "
                         "applies softmax itself where a method needs it), or return torch.log of the probabilities")


@torch.no_grad()
def _check_deterministic(lm: LoadedModel) -> torch.Tensor | None:
    """A model saved in training mode (live dropout, BatchNorm on batch statistics; a trace keeps the mode it was
    traced in) answers the same input differently, or depending on the rest of its batch: refuse it. Returns its
    outputs on 4 random inputs in its range."""
    lo, hi = lm.input_range
    g = torch.Generator().manual_seed(0)
    x = (lo + (hi - lo) * torch.rand((4, *lm.input_shape), generator=g)).to(lm.device)
    a, b, one = lm.logits(x), lm.logits(x), lm.logits(x[:1])
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return None
    tol = 1e-4 * float(a.abs().max()) + 1e-6
    if float((a - b).abs().max()) > tol or float((a[:1] - one).abs().max()) > tol:
        raise ModelError("the model answers the same input differently (live dropout, or BatchNorm on batch "
                         "statistics): it was saved in training mode",
                         "call model.eval() before torch.jit.trace / torch.jit.script / saving, and save it again")
    return a
