"""The model-file screen: what netinv checks in a TorchScript or ``torch.export`` (.pt2) archive before torch reads
it, and in the loaded program before it runs. A ``.pt2`` or TorchScript file is a program; this module decides
whether netinv runs it (README, "A tour of the CLI"; docs/data-and-models.md).

What it guarantees:

- netinv checks a model archive as Python's zip reader sees it, and torch then loads a canonical copy of exactly those
  bytes (:func:`canonical_copy`; crafted zips can show PyTorch's reader other members). Member names that repeat when
  case is ignored are refused (torch looks names up ignoring case).
- A ``.pt2`` archive (:func:`check_export_archive`) holds only a program's graph, weights and sample inputs (no
  native libraries), nothing torch would unpickle as Python objects, symbolic sizes that are plain arithmetic and
  input guards that only compare input sizes (torch evaluates both as Python), and plain specs, inputs and names
  (torch writes them into the code it generates).
- Its graph (:func:`check_export_graph`) may then call PyTorch's tensor operators (none that reach files, processes,
  the network or process-wide state, none without bounds checks), Python's ``operator`` / ``math`` functions, torch's
  symbolic-shape helpers and control-flow higher-order ops only, operators passed as arguments included.
- A TorchScript archive's code (:func:`check_torchscript_archive`) is read name by name before ``torch.jit.load`` and
  its pickles may name only the module's own classes and tensor rebuilders; a ``__setstate__`` (code run while
  loading), ``getattr`` on ``torch`` and C++ class objects are refused, and in the loaded module
  (:func:`check_torchscript_module`) calls left after inlining, operators outside PyTorch's tensor library and forward
  hooks.

What it cannot do: prove a program harmless. Operators are judged by namespace and name (what is known to reach
outside a classifier's computation is refused), so a flaw in a PyTorch operator or in torch's own readers is beyond
it; a factory (``package.module:factory``) and an ``nn.Module`` passed in are the caller's code and are not screened.
A model you run is code you trust: take model files only from where you would take code.

Internal to :mod:`netinv.models`: ``load_model`` is the entry point."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import keyword
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._errors import ModelError, first_line

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


def check_torchscript_archive(archive: Path, path: Path | None = None) -> None:
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



#: what a TorchScript archive holds (torch.jit.save); anything else is refused
_SCRIPT_MEMBER = re.compile(
    r"([^/]+/)?(data\.pkl|constants\.pkl|code/[\w./-]+\.py(\.debug_pkl)?|data/\d+|constants/\d+|traced_inputs/\d+"
    r"|traced_inputs\.pkl|version|byteorder|\.data/[\w.-]+|extra/[\w.-]+)")


@contextlib.contextmanager
def canonical_copy(path: Path) -> Iterator[Path]:
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


def check_export_archive(archive: Path, path: Path | None = None) -> None:
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


def check_torchscript_module(module: Any, path: Path) -> None:
    """Refuse a loaded TorchScript module whose forward calls what the source scan could not see (forked bodies,
    calls left after inlining, operators outside PyTorch's tensor library) or that has forward hooks."""
    _check_ops(_torchscript_ops(module), path)
    hooked = _script_hooks(module)
    if hooked:
        _check_ops({f"forward hooks on {hooked[0]}"}, path, "it runs")


def check_export_graph(ep: Any, path: Path) -> None:
    """Refuse a loaded exported program whose graphs call anything outside :func:`_export_ops`' allowlist, or that
    names a weight, constant or attribute that is not a dotted name."""
    _check_ops(_export_ops(ep), path)
    odd = [n for n in (*ep.state_dict, *ep.constants, *(str(node.target) for gm in ep.graph_module.modules()
                                                       if isinstance(gm, torch.fx.GraphModule)
                                                       for node in gm.graph.nodes if node.op == "get_attr"))
           if not _DOTTED.fullmatch(str(n))]
    if odd:  # torch writes these into the code it generates for the forward (ep.module()), unescaped
        raise ModelError(f"refusing {path}: it names the attribute {str(odd[0])[:80]!r}, which is not a dotted name",
                         "save the model again with torch.export.save")
