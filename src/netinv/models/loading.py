"""``load_model``: any classifier in. netinv checkpoint directories, ``torch.export`` archives (.pt2), TorchScript
files, ``package.module:factory`` plus a weights file (safetensors, or a state_dict read with ``weights_only=True``),
or an ``nn.Module`` in memory. Nothing is unpickled beyond tensors."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import keyword
import math
import os
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import DataError, ModelError, first_line, informative_line
from .._utils.device import resolve_device
from .._utils.shapes import MAX_INPUT_VALUES, check_layout, same_layout
from ..data import Dataset
from ..data.npz import numpy_file_kind, read_arrays
from .checkpoint import is_checkpoint, load_checkpoint
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
        kind = _zip_kind(path)
        if kind == "export":
            return _load_export(path, input_shape)
        if kind == "torchscript":
            try:
                with _canonical(path) as safe:  # torch reads exactly the bytes checked here
                    _check_torchscript_source(safe, path)  # its code runs from torch.jit.load on (__setstate__)
                    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have such files
                        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*jit")
                        module = torch.jit.load(str(safe), map_location="cpu")
            except ModelError:
                raise
            except Exception as e:
                raise ModelError(f"cannot load TorchScript file {path}: {first_line(e)}",
                                 "export it instead: torch.export.save(torch.export.export(model.eval(), (example,)), "
                                 "path)") from None
            _check_ops(_torchscript_ops(module), path)  # what the source scan could not see (forked bodies)
            hooked = _script_hooks(module)
            if hooked:
                _check_ops({f"forward hooks on {hooked[0]}"}, path, "it runs")
            return _wrap(module, input_shape, {"format": "torchscript", "path": str(path.resolve())})
        raise ModelError(f"{path} is neither a torch.export archive nor a TorchScript file",
                         "a weights-only file needs a factory: pass package.module:factory --weights FILE")
    if ":" in spec and not path.exists():
        return _load_factory(spec, weights, input_shape)
    raise ModelError(f"model {spec!r} not found", "give a checkpoint dir, .pt2, TorchScript file or pkg.mod:factory")


#: what a classifier never computes with, and what reaches outside the process: files, other processes, the network
#: (a .pt2 or TorchScript model is a program; these are refused before it runs). Matched against whole names.
_UNSAFE_NAMES = frozenset({"from_file", "save", "load", "load_tensor", "rpc", "rpc_sync", "rpc_async", "rpc_remote",
                           "c10d", "_c10d_functional", "_c10d_functional_autograd", "distributed", "symm_mem",
                           "system", "popen", "exec", "eval", "open",
                           # process-wide state a model has no business changing (the RNG, autograd, caches)
                           "manual_seed", "seed", "initial_seed", "set_grad_enabled", "_set_item", "wait", "set",
                           "set_", "set_data", "record_stream", "_cufft_set_plan_cache_max_size",
                           "_cufft_clear_plan_cache", "_sobol_engine_initialize_state_"})
#: operators that set sizes, strides or storage without bounds checks, or build tensors from unchecked indices:
#: a file can make them read or write outside a tensor's memory (aten._reshape_alias with a forged size)
_UNCHECKED_MEMORY = re.compile(r"_?unsafe|_reshape_alias|as_strided|resize_|^_?sparse_|sparse_(coo|csr|csc|bsr|bsc)"
                               r"|^_nested|^set_|_mkldnn|_reinterpret|from_blob|_make_.*view")


def _unsafe_name(name: str) -> bool:
    """Whether an operator name (without namespace or overload) is one a classifier file may not call."""
    return name in _UNSAFE_NAMES or bool(_UNCHECKED_MEMORY.search(name))


#: higher-order operators an exported classifier may hold (control flow, grad / autocast regions); others (e.g.
#: run_and_save_rng_state) call an operator passed as an argument and are refused
_SAFE_HIGHER_ORDER = frozenset({"cond", "while_loop", "map_impl", "scan", "invoke_subgraph",
                                "wrap_with_set_grad_enabled", "wrap_with_autocast", "auto_functionalized"})
#: operator namespaces of PyTorch's tensor library
_SAFE_NAMESPACES = frozenset({"aten", "prims", "quantized_decomposed"})


def _check_ops(ops: set[str], path: Path, what: str = "its graph calls") -> None:
    if ops:
        raise ModelError(f"refusing {path}: {what} {', '.join(sorted(ops)[:3])}, which netinv does not run from a "
                         "file (files, processes, the network, or operators outside PyTorch's tensor library)",
                         "a classifier computes with tensor operations only: export the model without them (and "
                         "do not run a model file you do not trust)")


def _check_torchscript_source(archive: Path, path: Path | None = None) -> None:
    """The serialized code of a TorchScript archive (``code/``, Python syntax, run from load time on through
    ``__setstate__``), tokenised and its dotted names checked against :data:`_UNSAFE_NAMES` before
    ``torch.jit.load`` sees it; a ``__setstate__`` (code that runs while loading) and oversized code are refused."""
    import io
    import tokenize

    path = path or archive  # (the file named in messages; archive is the canonical copy torch will read)
    found: set[str] = set()
    with zipfile.ZipFile(archive) as z:
        strange = [i.filename for i in z.infolist() if not _SCRIPT_MEMBER.fullmatch(i.filename)]
        if strange:  # e.g. CODE/__torch__.PY, which torch finds (it ignores case) and a scan of code/ would miss
            _check_ops({strange[0]}, path, "it holds the unexpected member")
        for info in z.infolist():  # torch.jit's unpickler builds any registered C++ class a pickle names (one of
            # them, aten.OpaqueObject, unpickles a Python payload in its __setstate__): globals are allowlisted
            if info.filename.endswith("pkl"):
                bad = _odd_pickle_globals(z.read(info))
                if bad:
                    _check_ops({f"{info.filename}: {bad[0]}"}, path, "its pickled state names")
        code = [i for i in z.infolist() if "/code/" in f"/{i.filename}" and i.filename.endswith(".py")]
        if sum(i.file_size for i in code) > 1 << 26:
            _check_ops({"code larger than 64 MiB"}, path, "it holds")
        for info in code:
            text = z.read(info).decode("utf-8", errors="replace")
            try:
                tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                          if t.type in (tokenize.NAME, tokenize.OP)]
            except (tokenize.TokenError, SyntaxError, IndentationError):
                _check_ops({"unreadable code"}, path, "it holds")
            dotted: list[str] = []
            for k, t in enumerate(tokens):  # join NAME (. NAME)*: `torch . save` is torch.save
                if t.type == tokenize.NAME and not (k and tokens[k - 1].string == "."):
                    parts, m = [t.string], k
                    while m + 2 < len(tokens) and tokens[m + 1].string == "." and tokens[m + 2].type == tokenize.NAME:
                        parts.append(tokens[m + 2].string)
                        m += 2
                    dotted.append(".".join(parts))
            for k, t in enumerate(tokens):  # getattr(torch, "save") names its target in a string
                if t.string == "getattr" and k + 2 < len(tokens) and tokens[k + 2].string in ("torch", "ops"):
                    found.add("getattr on torch")
            for name in dotted:
                parts = name.split(".")
                ops_at = parts.index("ops") if "ops" in parts[:2] else -1
                if ops_at >= 0 and len(parts) > ops_at + 1 and parts[ops_at + 1] not in _SCRIPT_NAMESPACES:
                    found.add(name)  # an operator outside PyTorch's tensor library, in any method or hook
                if name.startswith(("torch.", "ops.")) and any(_unsafe_name(p) for p in parts[1:]):
                    found.add(name)
                if parts[-1] == "__setstate__" or name == "__setstate__":
                    found.add("__setstate__ (code run while loading)")
    _check_ops(found, path, "its code references")


#: the globals torch.jit.save writes into a tensor model's pickles (module classes of code/, tensor rebuilding)
_SCRIPT_GLOBAL = re.compile(r"__torch__(\.(?!torch\.classes\b)[\w.]+)? \w+|torch\._utils _rebuild_tensor_v2"
                            r"|torch \w+Storage|collections OrderedDict|builtins complex"
                            r"|torch\.jit\._pickle (build_\w+|restore_type_tag)")


def _odd_pickle_globals(data: bytes) -> list[str]:
    """The globals (and global-building opcodes) of a TorchScript pickle outside :data:`_SCRIPT_GLOBAL`."""
    import pickletools

    bad: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and not _SCRIPT_GLOBAL.fullmatch(str(arg)):
                bad.append(str(arg))
            elif op.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                bad.append(op.name)
    except Exception as e:  # pickletools raises ValueError and others on a malformed stream
        bad.append(f"an unreadable pickle ({type(e).__name__})")
    return bad


#: operator namespaces TorchScript code may call (``ops.aten.…``)
_SCRIPT_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "quantized_decomposed"})


def _script_hooks(module: Any) -> list[str]:
    """Submodules of a loaded TorchScript module with forward hooks: code the forward graph walk does not see."""
    out = []
    for name, m in module.named_modules():
        c = getattr(m, "_c", None)
        hooks = [*getattr(c, "_get_forward_pre_hooks", lambda: [])(), *getattr(c, "_get_forward_hooks", lambda: [])()]
        if hooks or getattr(m, "_forward_pre_hooks", None) or getattr(m, "_forward_hooks", None):
            out.append(name or "the model")
    return out


def _torchscript_ops(module: Any) -> set[str]:
    """The operators of a scripted module's forward (nested blocks and forked subgraphs included) outside
    PyTorch's tensor library or in :data:`_UNSAFE_NAMES`."""
    bad: set[str] = set()

    def walk(graph: Any) -> None:
        for node in graph.nodes():
            ns, _, name = node.kind().partition("::")
            if _unsafe_name(name) or ns in ("prim", "aten") and any(u in name for u in ("rpc", "c10d")) \
                    or ns not in ("aten", "prim") or node.kind() in ("prim::CallMethod", "prim::CallFunction"):
                bad.add(node.kind())  # (a call left after inlining runs code this walk cannot see: an interface)
            for b in node.blocks():
                walk(b)
            if node.hasAttribute("Subgraph"):  # prim::fork keeps its body here, not in a block
                walk(node.g("Subgraph"))

    graph = getattr(module, "inlined_graph", None)
    if graph is not None:
        walk(graph)
    return bad


#: torch's own symbolic-shape helpers and shape checks an exported graph may call (torch.sym_max, torch._check …),
#: as function objects: a name prefix would also admit e.g. torch.hub._check_repo_is_trusted
_TORCH_SHAPE_FUNCTIONS = tuple(getattr(torch, n) for n in dir(torch)
                               if n.startswith(("sym_", "_sym_", "_check", "_assert")) and callable(getattr(torch, n)))


def _export_ops(ep: Any) -> set[str]:
    """The call targets of an exported program's graphs (control-flow submodules included), and every operator
    passed as an argument, outside an allowlist: ``aten`` / ``prims`` operators not in :data:`_UNSAFE_NAMES`,
    Python's ``operator`` and ``math`` functions and torch's ``sym_*`` helpers, and :data:`_SAFE_HIGHER_ORDER`."""
    from torch.utils._pytree import tree_leaves

    def allowed(f: Any) -> bool:
        if isinstance(f, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
            return f.namespace in _SAFE_NAMESPACES and not _unsafe_name(f.__name__.split(".")[0])
        if isinstance(f, torch._ops.HigherOrderOperator):
            return f.name() in _SAFE_HIGHER_ORDER
        module = getattr(f, "__module__", None) or ""
        return module in ("_operator", "operator", "math") or any(f is g for g in _TORCH_SHAPE_FUNCTIONS)

    ops = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    bad: set[str] = set()
    for gm in ep.graph_module.modules():
        if not isinstance(gm, torch.fx.GraphModule):
            continue
        for node in gm.graph.nodes:
            if node.op != "call_function":
                continue
            for f in (node.target, *(a for a in tree_leaves((node.args, node.kwargs)) if callable(a)
                                     and not isinstance(a, torch.fx.Node | torch.nn.Module))):
                if not allowed(f):
                    bad.add(str(f) if isinstance(f, ops) else
                            f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', type(f).__name__)}")
    return bad


def _zip_kind(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        return "export"
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    return None


#: what a TorchScript archive holds (torch.jit.save); anything else is refused
_SCRIPT_MEMBER = re.compile(
    r"([^/]+/)?(data\.pkl|constants\.pkl|code/[\w./-]+\.py(\.debug_pkl)?|data/\d+|constants/\d+|traced_inputs/\d+"
    r"|traced_inputs\.pkl|version|byteorder|\.data/[\w.-]+|extra/[\w.-]+)")


@contextlib.contextmanager
def _canonical(path: Path) -> Iterator[Path]:
    """A fresh copy of a zip archive as Python's ``zipfile`` reads it (one central directory, no leading bytes),
    for torch to load: PyTorch's own zip reader can see other members in a crafted file (a second central
    directory, prepended bytes), so what netinv checks and what torch runs would differ. Member names that repeat
    when case is ignored are refused (torch looks names up ignoring case)."""
    import shutil
    import tempfile

    fix = "save the model again with torch.export.save / torch.jit.save"
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            low = [i.filename.lower() for i in infos]
            if len(set(low)) != len(low):
                dup = next(n for n in low if low.count(n) > 1)
                raise ModelError(f"refusing {path}: member names repeat (ignoring case), e.g. {dup}", fix)
            with tempfile.TemporaryDirectory(prefix="netinv-model-") as tmp:
                copy = Path(tmp) / path.name
                with zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as out:
                    for info in infos:
                        with z.open(info) as src, out.open(info.filename, "w", force_zip64=True) as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                yield copy
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise ModelError(f"cannot read model archive {path}: {first_line(e)}", fix) from None


#: what an exported program's archive holds (torch.export.save, current and legacy layouts); anything else is refused
_ARCHIVE_MEMBER = re.compile(
    r"([^/]+/)?(models/[\w.-]+\.json|data/(weights|constants)/[\w.-]+|data/sample_inputs/[\w.-]+\.pt"
    r"|extra/[\w.-]+|archive_format|archive_version|byteorder|version|\.data/[\w.-]+"
    r"|serialized_(exported_program\.json|state_dict\.pt|constants\.pt|example_inputs\.pt))")
#: the functions torch's symbolic sizes use (sympy and torch.utils._sympy.functions)
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Float", "Rational", "Max", "Min", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    "Abs", "Mod", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator",
    "OpaqueUnaryFn_sqrt", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or"})


def _dicts(obj: Any, parent: str | None = None) -> Iterator[tuple[dict, str | None]]:
    """Every JSON object of a serialized program with the key it sits under (a list passes its own key on): the one
    walk behind the checks below."""
    if isinstance(obj, dict):
        yield obj, parent
        for k, v in obj.items():
            yield from _dicts(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v, parent)


def _values_under(obj: Any, keys: tuple[str, ...]) -> Iterator[Any]:
    """Every value stored under one of ``keys`` anywhere in a serialized program (e.g. ``expr_str``: symbolic sizes
    and guards; ``in_spec`` / ``out_spec``: pytree specs)."""
    return (v for d, _ in _dicts(obj) for k, v in d.items() if k in keys)


def _expression_nodes(text: Any, extra: tuple[type, ...] = ()) -> list[ast.AST] | None:
    """The AST nodes of a short Python expression made only of arithmetic, comparisons, calls, names, constants
    (numbers and strings) and the ``extra`` node kinds; None for anything else (torch evaluates these strings)."""
    if not isinstance(text, str) or len(text) > 10_000:
        return None
    try:
        nodes = list(ast.walk(ast.parse(text, mode="eval")))
    except (SyntaxError, ValueError, RecursionError):
        return None
    kinds = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant, ast.Load, ast.operator,
             ast.unaryop, ast.cmpop, ast.boolop, ast.Call, ast.Name, *extra)
    if not all(isinstance(n, kinds) for n in nodes) or any(
            isinstance(n, ast.Constant) and not isinstance(n.value, int | float | bool | str) for n in nodes):
        return None
    return nodes


def _plain_expression(text: Any) -> bool:
    """Whether a symbolic size is arithmetic over symbols (``s77``), numbers and :data:`_SYMPY_CALLS` only: no
    attribute, subscript, lambda or other name that ``sympy.sympify`` would evaluate."""
    nodes = _expression_nodes(text, (ast.keyword,))
    return nodes is not None and all(
        not (isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in _SYMPY_CALLS))
        and not (isinstance(n, ast.Name) and not (n.id in _SYMPY_CALLS or n.id in ("true", "false", "oo", "zoo",
                                                                                     "nan")
                                                  or re.fullmatch(r"[a-z]+\d+", n.id)))
        for n in nodes)


#: a parameter, buffer or constant name (torch generates code from these)
_DOTTED = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def _identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and name.isascii() and not keyword.iskeyword(name)


def _odd_value_names(obj: Any) -> Iterator[Any]:
    """Names a serialized program gives its values, nodes, inputs and forward arguments that are not plain Python
    identifiers (torch writes them into the signature and body of the forward it generates), and module paths
    (``fqn``) that are not dotted names."""
    for d, parent in _dicts(obj):
        if parent in ("tensor_values", "sym_int_values", "sym_float_values", "sym_bool_values", "custom_obj_values"):
            yield from (k for k in d if not _identifier(k))
        for k, v in d.items():
            if k in ("name", "as_name") and isinstance(v, str) and not _identifier(v) and not (
                    v == "" and "arg" in d and "kind" in d):  # a higher-order op's unnamed argument
                yield v
            if k == "forward_arg_names" and isinstance(v, list):
                yield from (a for a in v if not _identifier(a))
            if k == "fqn" and v != "" and not (isinstance(v, str) and _DOTTED.fullmatch(v)):
                yield v


def _attribute_names(obj: Any) -> Iterator[Any]:
    """The names a serialized program gives its parameters, buffers, constants and subgraphs."""
    for d, _ in _dicts(obj):
        yield from (v for k, v in d.items() if k in ("parameter_name", "buffer_name", "tensor_constant_name",
                                                     "custom_obj_name"))
        if isinstance(d.get("as_graph"), dict):
            yield d["as_graph"].get("name")


_SPEC_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict"})


def _program_inputs(obj: Any) -> Iterator[Any]:
    """The arguments a serialized program (and each subgraph) takes: graph ``inputs`` and ``user_input`` specs."""
    for d, _ in _dicts(obj):
        if {"inputs", "outputs", "nodes"} <= set(d) and isinstance(d["inputs"], list):
            yield from d["inputs"]
        if isinstance(d.get("user_input"), dict):
            yield d["user_input"].get("arg")


def _plain_spec(text: Any) -> bool:
    """Whether a serialized treespec is protocol 1 over tuples, lists, dicts with identifier keys and leaves."""
    def node_ok(node: Any) -> bool:
        if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"}:
            return False
        if node["type"] not in _SPEC_TYPES or not isinstance(node["children_spec"], list):
            return False
        if node["context"] is not None:
            try:
                ctx = json.loads(node["context"]) if isinstance(node["context"], str) else object()
            except (ValueError, RecursionError):
                return False
            if node["type"] == "builtins.dict":
                if not (isinstance(ctx, list) and len(ctx) == len(node["children_spec"])
                        and all(_identifier(k) for k in ctx)):
                    return False
            elif ctx is not None:
                return False
        return all(node_ok(c) for c in node["children_spec"])

    if text is None:
        return True
    try:
        protocol, root = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return False
    return protocol == 1 and node_ok(root)


def _plain_guard(text: Any) -> bool:
    """Whether an input guard (``guards_code``) only compares input sizes: ``L['x'].size()[0] > 2``, arithmetic,
    numbers, ``math`` and :data:`_SYMPY_CALLS` functions; torch ``exec``s these on every forward."""
    nodes = _expression_nodes(text, (ast.Subscript, ast.Attribute))
    if nodes is None:
        return False
    for n in nodes:
        if isinstance(n, ast.Name) and not (n.id in ("L", "math") or n.id in _SYMPY_CALLS):
            return False
        if isinstance(n, ast.Attribute) and not (
                n.attr in ("size", "stride", "storage_offset", "dim", "numel") and isinstance(n.value, ast.Subscript)
                or isinstance(n.value, ast.Name) and n.value.id == "math"
                and n.attr in ("floor", "ceil", "trunc", "isnan", "inf", "sqrt", "log2")):
            return False
        if isinstance(n, ast.Call) and n.keywords:
            return False
    keys = {id(n.slice) for n in nodes if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
            and n.value.id == "L" and isinstance(n.slice, ast.Constant) and _identifier(n.slice.value)}
    # a string is only ever an input's name, L['x']: torch pastes the guard into a quoted message, and a string
    # holding a quote would close it
    return all(not (isinstance(n, ast.Constant) and isinstance(n.value, str)) or id(n) in keys for n in nodes)


def _check_archive_has_no_pickles(archive: Path, path: Path | None = None) -> None:
    """Refuse a ``.pt2`` archive from which ``torch.export.load`` would unpickle Python objects (code could run).

    torch 2.13 unpickles three kinds of entries: weights or constants flagged ``use_pickle`` in their config,
    ``custom_obj_*`` / ``opaque_obj_*`` constants (chosen by the config's path prefix), and ``.pt`` files (sample
    inputs, older layouts) when the weights-only load fails. The payload configs therefore pass an allowlist (plain
    ``weight_*`` / ``tensor_*`` entries), and ``.pt`` files are checked with ``torch.load(weights_only=True)`` before
    torch sees them; a file no config names is never read.
    """
    fix = ("export the model with plain tensors: torch.export.save(torch.export.export(model.eval(), (example,)), "
           "path); never load an archive you do not trust with torch.export.load")
    path = path or archive  # (the file named in messages; archive is the canonical copy torch will read)
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                name = info.filename
                if not _ARCHIVE_MEMBER.fullmatch(name):  # e.g. data/aotinductor/*.so, which torch would dlopen
                    raise ModelError(f"refusing {path}: it holds {name}, which is not part of an exported program's "
                                     "graph, weights or sample inputs (native code or files torch would load)", fix)
                low = name.lower()  # torch looks members up ignoring case
                if low.endswith(".json") and ("models/" in low or "serialized_exported_program" in low):
                    program = json.loads(z.read(info))
                    bad = [e for e in _values_under(program, ("expr_str",)) if not _plain_expression(e)]
                    if bad:  # torch reads these with sympy.sympify, which evaluates them as Python
                        raise ModelError(f"refusing {path}: its graph holds the symbolic size {str(bad[0])[:80]!r}, "
                                         "which is not a plain expression (torch would run it as Python)", fix)
                    guards = program.get("guards_code") if isinstance(program, dict) else None
                    bad = [g for g in guards or [] if not _plain_guard(g)] if isinstance(guards, list) else [guards]
                    if bad:  # torch compiles these into the forward's input check and runs them with exec
                        raise ModelError(f"refusing {path}: its input guard {str(bad[0])[:80]!r} is not a plain "
                                         "comparison of input sizes (torch would run it as Python)", fix)
                    kinds = sorted({k for arg in _program_inputs(program) for k in (arg if isinstance(arg, dict)
                                                                                      else {"?": 0})}
                                   - {"as_tensor", "as_sym_int"})
                    if kinds:  # a string input becomes a guard torch generates code from (and no classifier's)
                        raise ModelError(f"refusing {path}: its program takes a {kinds[0]} input, not a tensor",
                                         fix)
                    specs = _values_under(program, ("in_spec", "out_spec"))
                    if not all(_plain_spec(spec) for spec in specs):  # torch's treespec reader imports the modules
                        # a spec names (enum and defaultdict contexts) and codegen writes its keys raw
                        raise ModelError(f"refusing {path}: its input or output spec is not plain tuples, lists and "
                                         "dicts with identifier keys", fix)
                    odd = [n for n in _attribute_names(program) if not isinstance(n, str) or not _DOTTED.fullmatch(n)]
                    odd += list(_odd_value_names(program))
                    if odd:  # torch writes these into the code it generates for the forward, unescaped
                        raise ModelError(f"refusing {path}: its program names the attribute {str(odd[0])[:80]!r}, "
                                         "which is not a dotted name", fix)
                if low.endswith("_config.json") and ("data/weights/" in low or "data/constants/" in low):
                    # an allowlist, as torch decides by path_name prefix whatever use_pickle says: only plain tensor
                    # payloads (weight_*, tensor_*) that are not pickled pass
                    prefix = "weight_" if "data/weights/" in low else "tensor_"
                    cfg = json.loads(z.read(info))
                    entries = cfg.get("config", {}) if isinstance(cfg, dict) else None
                    if not isinstance(entries, dict):
                        raise ModelError(f"refusing {path}: {name} is not a payload config", fix)
                    odd = [k for k in entries if not _DOTTED.fullmatch(k)]
                    if odd:
                        raise ModelError(f"refusing {path}: {name} names the attribute {odd[0][:80]!r}, which is not "
                                         "a dotted name", fix)
                    flagged = [k for k, v in entries.items()
                               if not isinstance(v, dict) or v.get("use_pickle") is not False
                               or not isinstance(v.get("path_name"), str) or not v["path_name"].startswith(prefix)
                               or "/" in v["path_name"] or ".." in v["path_name"]]
                    if flagged:
                        raise ModelError(f"refusing {path}: entries {flagged[:3]} of {name} are not plain tensors "
                                         "(pickled Python objects could run code when loaded)", fix)
                elif low.endswith((".pt", ".pkl")):
                    try:
                        with warnings.catch_warnings():  # torch's notes on old pickle protocols: not for the user
                            warnings.simplefilter("ignore")
                            torch.load(io.BytesIO(z.read(info)), map_location="cpu", weights_only=True)
                    except Exception:
                        raise ModelError(f"refusing {path}: {name} is not a tensors-only file (it holds pickled "
                                         "Python objects, which could run code when loaded)", fix) from None
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read torch.export archive {path}: {first_line(e)}", fix) from None


def _load_export(path: Path, input_shape: tuple[int, ...] | None) -> LoadedModel:
    try:
        with _canonical(path) as safe:  # torch reads exactly the bytes checked here
            _check_archive_has_no_pickles(safe, path)
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
    _check_ops(_export_ops(ep), path)
    odd = [n for n in (*ep.state_dict, *ep.constants, *(str(node.target) for gm in ep.graph_module.modules()
                                                       if isinstance(gm, torch.fx.GraphModule)
                                                       for node in gm.graph.nodes if node.op == "get_attr"))
           if not _DOTTED.fullmatch(str(n))]
    if odd:  # torch writes these into the code it generates for the forward (ep.module()), unescaped
        raise ModelError(f"refusing {path}: it names the attribute {str(odd[0])[:80]!r}, which is not a dotted name",
                         "save the model again with torch.export.save")
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
    return _wrap(module, input_shape, source)


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
    _check_deterministic(lm)
    return int(out.shape[1])


@torch.no_grad()
def _check_deterministic(lm: LoadedModel) -> None:
    """A model saved in training mode (live dropout, BatchNorm on batch statistics; a trace keeps the mode it was
    traced in) answers the same input differently, or depending on the rest of its batch: refuse it."""
    lo, hi = lm.input_range
    g = torch.Generator().manual_seed(0)
    x = (lo + (hi - lo) * torch.rand((4, *lm.input_shape), generator=g)).to(lm.device)
    a, b, one = lm.logits(x), lm.logits(x), lm.logits(x[:1])
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return
    tol = 1e-4 * float(a.abs().max()) + 1e-6
    if float((a - b).abs().max()) > tol or float((a[:1] - one).abs().max()) > tol:
        raise ModelError("the model answers the same input differently (live dropout, or BatchNorm on batch "
                         "statistics): it was saved in training mode",
                         "call model.eval() before torch.jit.trace / torch.jit.script / saving, and save it again")
