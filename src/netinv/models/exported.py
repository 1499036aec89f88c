"""Loading the two program formats once :mod:`netinv.models.screen` has passed them: ``torch.export`` archives (.pt2:
weights moved to the CPU, an eval-mode check, the graph made batch-generic where it computes the same, else run in
chunks of its exported batch by :class:`_Exported`) and TorchScript files. Internal to :mod:`netinv.models`
(``load_model`` is the entry point)."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import ModelError, first_line
from .screen import (
    canonical_copy,
    check_export_archive,
    check_export_graph,
    check_torchscript_archive,
    check_torchscript_module,
)


def archive_kind(path: Path) -> str | None:
    """Which program format a file is: ``export`` (a torch.export archive), ``torchscript`` or None."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        return "export"
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    return None


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript file's module on the CPU, screened before and after ``torch.jit.load``."""
    try:
        with canonical_copy(path) as safe:  # torch reads exactly the bytes checked here
            check_torchscript_archive(safe, path)  # its code runs from torch.jit.load on (__setstate__)
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have such files
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*jit")
                module = torch.jit.load(str(safe), map_location="cpu")
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"cannot load TorchScript file {path}: {first_line(e)}",
                         "export it instead: torch.export.save(torch.export.export(model.eval(), (example,)), "
                         "path)") from None
    check_torchscript_module(module, path)
    return module


def load_export(path: Path, input_shape: tuple[int, ...] | None) -> tuple[nn.Module, tuple[int, ...] | None,
                                                                         dict[str, Any]]:
    """A torch.export archive's module (on the CPU, batch-generic where it computes the same), its input shape
    (from the example it was exported with, else ``input_shape``) and its ``source`` record, screened before and
    after ``torch.export.load``."""
    try:
        with canonical_copy(path) as safe:  # torch reads exactly the bytes checked here
            check_export_archive(safe, path)
            with _weights_only_loads():
                ep = torch.export.load(str(safe))
    except ModelError:
        raise
    except Exception as e:
        msg = first_line(e)
        if not torch.cuda.is_available() and _saved_on_gpu(path, e):  # torch.export.load has no map_location
            raise ModelError(f"cannot load torch.export archive {path}: weights saved on a GPU ({msg})",
                             "re-export after model.cpu() with a CPU example input, or load it where CUDA is "
                             "available") from None
        raise ModelError(f"cannot load torch.export archive {path}: {msg}",
                         "save it with torch.export.save(torch.export.export(model, (example,)), path)") from None
    check_export_graph(ep, path)
    ep = _program_on_cpu(ep)  # an archive exported on a GPU: its weights, constants and graph devices to the CPU
    # the example input recorded at export time: (N, *input_shape)
    vals = [n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder"
            and n.name in set(ep.graph_signature.user_inputs)]
    if len(ep.graph_signature.user_inputs) != 1:
        raise ModelError(f"{path} takes {len(ep.graph_signature.user_inputs)} inputs; netinv inverts a classifier "
                         "of one input tensor", "export a wrapper whose forward takes the image batch alone (fix the "
                         "other inputs inside it)")
    batch = None
    if len(vals) == 1 and hasattr(vals[0], "shape"):
        dims = list(vals[0].shape)
        batch = int(dims[0]) if isinstance(dims[0], int) else None
        if all(isinstance(d, int) for d in dims[1:]):  # a given --input-shape that differs is refused by load_model
            input_shape = tuple(int(d) for d in dims[1:])
    _check_eval_mode(ep, path)
    try:
        gm = ep.module(check_guards=False)  # torch's input guards are code generated from the archive's strings;
        # netinv probes the batch sizes itself (_batch_flexible)
    except Exception as e:  # e.g. a graph whose generated code does not compile (a forged node argument)
        raise ModelError(f"cannot build the program in {path}: {first_line(e)}",
                         "save it with torch.export.save(torch.export.export(model, (example,)), path)") from None
    module = _batch_flexible(gm, batch, input_shape) if input_shape and batch else _Exported(gm)
    source = {"format": "export", "path": str(path.resolve()), "export_batch": batch, "runs_in_chunks_of": module.b}
    if module.b is not None and module.b < 64:  # e.g. x.view(1, -1) or x.reshape(x.shape[0], -1) traced at batch 1
        warnings.warn(f"{path.name} runs only on batches of exactly {module.b} (its graph fixes the batch size), so "
                      f"netinv runs it {module.b} input(s) at a time, which can be many times slower; export it with a "
                      "dynamic batch: torch.export.export(model, (x,), dynamic_shapes=({0: "
                      "torch.export.Dim('batch')},)) with an example x of 2 or more inputs", UserWarning, stacklevel=3)
    return module, input_shape, source


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every ``torch.load`` inside (torch.export's own) weights-only, a second guard after the archive check."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def _saved_on_gpu(path: Path, error: BaseException) -> bool:
    """Whether a failed ``torch.export.load`` read an archive whose tensors were saved on a GPU: CUDA named in the
    error or its causes (torch 2.11 wraps it as "an error when deserializing the saved file"), or in the devices the
    archive records for its tensors."""
    e: BaseException | None = error
    for _ in range(5):
        if e is None:
            break
        if "cuda" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    try:
        with zipfile.ZipFile(path) as z:
            return any(re.search(rb'"type":\s*"cuda"|cuda:\d', z.read(info)) for info in z.infolist()
                       if info.filename.endswith((".json", ".pt")) and info.file_size < 2**26)
    except Exception:
        return False


def _program_on_cpu(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program with its weights, lifted constants and the devices written into its graph on the CPU, so the
    batch probe runs on CPU inputs and ``load_model``'s move to the target device starts from one place."""
    try:
        from torch.export.passes import move_to_device_pass
    except ImportError:  # older torch: the tensors stay where they were saved
        return ep
    return move_to_device_pass(ep, "cpu")


def _check_eval_mode(ep: torch.export.ExportedProgram, path: Path) -> None:
    """Refuse a graph exported in training mode: it cannot be switched to eval afterwards, so its BatchNorm would
    normalise with each batch's statistics (and update its running statistics on every call) and its dropout would
    stay active, and every attack would silently run against a different, noisy model."""
    aten = torch.ops.aten
    train_arg = {aten.batch_norm.default: 5, aten.dropout.default: 2, aten.feature_dropout.default: 2,
                 aten.alpha_dropout.default: 2, aten.feature_alpha_dropout.default: 2, aten.native_dropout.default: 2}
    culprits = [f"{node.name} active" for node in ep.graph.nodes if node.op == "call_function"
                and node.target in train_arg and len(node.args) > train_arg[node.target]
                and node.args[train_arg[node.target]] is True]
    mutated = sorted(set(ep.graph_signature.buffers_to_mutate.values()))
    culprits += [f"buffer {b} updated on every call" for b in mutated]
    if culprits:
        raise ModelError(f"{path} was exported in training mode ({', '.join(culprits[:3])})",
                         "call model.eval() before torch.export.export(model, (example,))")


class _Exported(nn.Module):
    """An exported graph as a plain module. Its train/eval mode was fixed at export time (``train()`` on the graph
    raises), so mode switches stop here. With ``b`` set, the graph only runs on batches of exactly ``b``: pad to a
    multiple of ``b``, run the chunks, drop the padding (differentiable; used when the graph cannot be made
    batch-generic)."""

    def __init__(self, inner: nn.Module, b: int | None = None) -> None:
        super().__init__()
        self.inner, self.b = inner, b

    def train(self, mode: bool = True) -> _Exported:
        self.training = mode
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> _Exported:
        """``to``/``cuda``/``cpu``/``float``… also reach what ``nn.Module`` leaves behind in an exported graph: the
        tensors created in ``forward`` (lifted to plain tensor attributes, neither parameters nor buffers) and the
        devices written into its calls (``torch.zeros(..., device=x.device)``, ``x.to(device)``)."""
        old = _device_of(self.inner)
        super()._apply(fn, recurse)
        for m in self.inner.modules():
            for name, value in list(vars(m).items()):
                if isinstance(value, torch.Tensor):
                    setattr(m, name, fn(value))
        new = _device_of(self.inner)
        if old is not None and new is not None and old != new:
            _retarget_graph_devices(self.inner, old, new)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.b is None:
            return self.inner(x)
        n = x.shape[0]
        pad = (-n) % self.b
        if pad:
            x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
        outs = [self.inner(c) for c in x.split(self.b)]
        if not isinstance(outs[0], torch.Tensor):  # e.g. (logits, features): load_model's probe names it
            return outs[0]
        return torch.cat(outs)[:n]


def _device_of(module: nn.Module) -> torch.device | None:
    """Where a module's tensors are: its parameters, buffers or (an exported graph's) plain tensor attributes."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    for m in module.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor):
                return value.device
    return None


def _retarget_graph_devices(module: nn.Module, old: torch.device, new: torch.device) -> None:
    """Rewrite the devices an exported graph's calls name, ``old`` -> ``new`` (as torch.export's
    ``move_to_device_pass`` does for an ExportedProgram)."""
    to_device = torch.ops.aten.to.device
    for m in module.modules():
        if not isinstance(m, torch.fx.GraphModule):
            continue
        changed = False
        for node in m.graph.nodes:
            dev = node.kwargs.get("device")
            if isinstance(dev, str | torch.device) and torch.device(dev) == old:
                node.kwargs = {**node.kwargs, "device": new}
                changed = True
            if node.op == "call_function" and node.target is to_device and len(node.args) > 1 \
                    and isinstance(node.args[1], str | torch.device) and torch.device(node.args[1]) == old:
                node.args = (node.args[0], new, *node.args[2:])
                changed = True
        if changed:
            m.recompile()


def _batch_flexible(gm: torch.fx.GraphModule, b: int, shape: tuple[int, ...]) -> nn.Module:
    """Exported graphs guard their example's batch size. Drop the guard when the graph computes the same on other
    batch sizes (checked numerically on two different batches, so an operation that mixes the batch is not taken
    for a per-input one); otherwise chunk to the exported size."""
    dev = _device_of(gm) or "cpu"  # where the weights are
    gen = torch.Generator().manual_seed(0)
    probe, other = (torch.rand((b, *shape), generator=gen).to(dev) for _ in range(2))
    with torch.no_grad():  # (no shortcut for graphs that accept other sizes: they may still mix the batch)
        try:
            ref, ref_other = gm(probe), gm(other)
        except Exception:  # fails on its own batch size too: load_model's probe reports why
            return _Exported(gm, b)
        for node in list(gm.graph.nodes):
            if node.op == "call_module" and "guards" in str(node.target) and not node.users:
                gm.graph.erase_node(node)
        gm.recompile()
        gm._forward_pre_hooks.clear()  # torch's check of the example's input shapes (without its guard code)
        try:
            twice = gm(torch.cat([probe, other]))
            if twice.shape[0] == 2 * b and torch.allclose(twice[:b], ref, atol=1e-5) \
                    and torch.allclose(twice[b:], ref_other, atol=1e-5):
                return _Exported(gm)
        except Exception:
            pass
    return _Exported(gm, b)
