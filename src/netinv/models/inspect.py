"""Model inspection: positive homogeneity in the parameters (what the KKT attack's theory needs, Haim et al. 2022
§3; Lyu & Li 2020) and a summary for ``netinv info``.

A network Φ(θ; x) is positively homogeneous of degree L in θ when Φ(c·θ; x) = c^L·Φ(θ; x) for every c > 0: a
bias-free ReLU / leaky-ReLU / max-pool network with L parameterised layers is, and so is one with a bias in the
first layer only (Haim et al.'s victim: c·(W₁x + b₁) scales like the rest); later biases, normalisation layers with
running statistics and saturating activations break it. The check is numerical (scale every parameter) plus a
structural scan that names the culprits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .loaded import LoadedModel

__all__ = ["homogeneity_report", "is_positively_homogeneous", "summary"]

_NORM = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_NON_HOMOGENEOUS_ACT = (nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish,
                        nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.ReLU6, nn.Softmax, nn.LogSoftmax)


# the same culprits as graph ops (torch.export graphs: their layers are flattened into aten calls)
_NORM_OPS = {"batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
             "layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm"}
_NON_HOMOGENEOUS_OPS = {"sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "softplus", "mish", "hardswish",
                        "hardsigmoid", "hardtanh", "relu6", "softmax", "_softmax", "log_softmax", "_log_softmax"}
_WEIGHTED_OPS = {"linear", "conv1d", "conv2d", "conv3d", "convolution", "addmm"}


def _graph_issues(gm: torch.fx.GraphModule, prefix: str) -> list[str]:
    issues: list[str] = []
    for node in gm.graph.nodes:
        op = getattr(node.target, "_opname", None) if node.op == "call_function" else None
        if op in _NORM_OPS:
            issues.append(f"normalisation op {prefix}{node.name} ({op})")
        elif op in _NON_HOMOGENEOUS_OPS:
            issues.append(f"non-homogeneous activation op {prefix}{node.name} ({op})")
        elif op in _WEIGHTED_OPS:
            bias = node.args[0] if op == "addmm" else (node.args[2] if len(node.args) > 2 else None)
            if isinstance(bias, torch.fx.Node):
                where = bias.target if bias.op == "get_attr" else bias.name
                issues.append(f"bias {prefix}{where} in {node.name}")
    return issues


def _graph_prefix(module: nn.Module, name: str) -> str:
    """How a graph's nodes are named in reports: under its path in ``module``, except the graph of a loaded export
    archive (``_Exported.inner``), which is the whole model."""
    from .exported import _Exported

    return "" if not name or (name == "inner" and isinstance(module, _Exported)) else f"{name}."


def _structural_issues(module: nn.Module) -> list[str]:
    issues: list[str] = []
    for name, mod in module.named_modules():
        label = name or type(mod).__name__
        if isinstance(mod, torch.fx.GraphModule):
            issues += _graph_issues(mod, _graph_prefix(module, name))
        if isinstance(mod, _NORM):
            issues.append(f"normalisation layer {label} ({type(mod).__name__})")
        elif isinstance(mod, _NON_HOMOGENEOUS_ACT):
            issues.append(f"non-homogeneous activation {label} ({type(mod).__name__})")
        elif getattr(mod, "bias", None) is not None and isinstance(mod.bias, torch.Tensor) \
                and isinstance(mod, nn.Linear | nn.modules.conv._ConvNd):
            issues.append(f"bias in {label}")
        elif isinstance(mod, torch.jit.ScriptModule):  # scripted / traced layers keep their class as original_name
            kind = getattr(mod, "original_name", type(mod).__name__)
            if kind.startswith(("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")):
                issues.append(f"normalisation layer {label} ({kind})")
            elif kind in ("Linear", "Conv1d", "Conv2d", "Conv3d") and isinstance(getattr(mod, "bias", None),
                                                                                 torch.Tensor):
                issues.append(f"bias in {label}")
    return issues


# graph nodes that are bookkeeping, not layers: tuple unpacking, shape arithmetic and the checks torch.export adds
_INTERNAL_OPS = {"getitem", "_assert_tensor_metadata", "_assert_scalar", "_assert_async", "sym_size", "sym_numel",
                 "sym_stride", "sym_storage_offset", "sym_constrain_range", "sym_constrain_range_for_size"}


def _op_name(node: torch.fx.Node) -> str:
    """``aten.linear.default`` -> ``linear``; ``torch.relu`` -> ``relu``; a method call -> its name."""
    target = node.target
    if isinstance(target, str):
        return target
    return getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)


def _graph_layers(gm: torch.fx.GraphModule, prefix: str) -> list[dict[str, Any]]:
    """The operations of a graph as ``summary`` layers: what each computes (``linear``, ``conv2d``, ``relu``,
    ``batch_norm``…), the parameters it reads (get_attr inputs) and the module it was traced from, where the graph
    records it. torch's internal entries (the ``_guards_fn`` of an export, asserts, shape arithmetic) are left out."""
    layers: list[dict[str, Any]] = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            if str(node.target).startswith("_guards"):
                continue
            sub = gm.get_submodule(str(node.target))
            params = list(sub.parameters())
            kind, name = type(sub).__name__, str(node.target)  # named by its path, as a module's layers are
        elif node.op in ("call_function", "call_method"):
            kind, name = _op_name(node), node.name
            val = node.meta.get("val")
            if kind in _INTERNAL_OPS or kind.startswith(("_assert", "sym_")) \
                    or (val is not None and not isinstance(val, torch.Tensor | tuple | list)):  # a SymInt
                continue
            params = []
            for arg in node.all_input_nodes:
                if arg.op == "get_attr":
                    try:
                        t = gm.get_parameter(str(arg.target))
                    except AttributeError:  # a buffer or a lifted constant, not a parameter
                        continue
                    params.append(t)
        else:
            continue
        layer = {"name": f"{prefix}{name}", "type": kind, "parameters": sum(p.numel() for p in params),
                 "shapes": [list(p.shape) for p in params]}
        stack = node.meta.get("nn_module_stack") if node.op != "call_module" else None
        if stack:
            path, cls = list(stack.values())[-1]
            if path:
                layer["module"] = f"{path} ({str(getattr(cls, '__name__', cls)).rsplit('.', 1)[-1]})"
        layers.append(layer)
    return layers


@torch.no_grad()
def homogeneity_report(model: LoadedModel, *, scales: tuple[float, ...] = (2.0, 0.5, 3.0), n_inputs: int = 8,
                       rtol: float = 1e-6, seed: int = 0) -> dict[str, Any]:
    """Test Φ(c·θ; x) = c^L·Φ(θ; x) numerically (float64) and scan the layers for what breaks it.

    Args:
        model: the model (not modified: scaled parameter copies go through ``torch.func.functional_call``).
        scales: the factors c tried; L is estimated from the first.
        n_inputs: random inputs, uniform in the model's input range.
        rtol: allowed relative error of c^L·Φ(θ; x) (float64 round-off is ~1e-15).
        seed: draws the inputs.

    Returns:
        ``{"homogeneous": bool, "degree": L or None, "max_rel_error": float, "issues": [str, ...],
        ("fitted_degree": the log-ratio fit of a model that is not homogeneous),
        "notes": [str, ...], "checked": "numerical" | "structural"}``. ``issues`` says why a model is not
        homogeneous (biases, normalisation layers, non-homogeneous activations found by the scan); on a model that
        passes the numerical check the scan's findings go to ``notes`` instead (e.g. a first-layer bias).
    """
    module = model.module
    issues = _structural_issues(module)
    g = torch.Generator().manual_seed(seed)
    lo, hi = model.input_range
    x = lo + (hi - lo) * torch.rand((n_inputs, *model.input_shape), generator=g, dtype=torch.float64)
    dev = model.device
    x = model.preprocess(x.to(dev))
    try:
        params = {k: p.detach().double() for k, p in module.named_parameters()}
        buffers = {k: (b.detach().double() if b.is_floating_point() else b) for k, b in module.named_buffers()}

        def phi(c: float) -> torch.Tensor:
            return functional_call(module, {**{k: c * p for k, p in params.items()}, **buffers}, (x,)).flatten()

        f1 = phi(1.0)
    except Exception:  # e.g. TorchScript: no functional call; its own parameters are scaled by 2 and ½ instead
        phi = _scaled_in_place(model, x)
        if phi is None:
            return {"homogeneous": not issues, "degree": None, "max_rel_error": None, "issues": issues,
                    "notes": [], "checked": "structural"}
        scales, rtol, f1 = (2.0, 0.5), max(rtol, 1e-5), phi(1.0)  # powers of two: exact scaling in float32 too
    ok = f1.abs() > 1e-12 * max(float(f1.abs().max()), 1e-300)
    if not bool(ok.any()):
        return {"homogeneous": False, "degree": None, "max_rel_error": None,
                "issues": issues + ["the model outputs 0 on random inputs"], "notes": [], "checked": "numerical"}
    f2 = phi(scales[0])
    ratio = (f2[ok] / f1[ok]).abs()
    degree = float(torch.log(ratio.median()) / math.log(scales[0]))
    err = 0.0
    for c in scales:
        fc = f2 if c == scales[0] else phi(c)
        want = c ** degree * f1
        err = max(err, float((fc - want).norm() / want.norm().clamp_min(1e-300)))
    homogeneous = err <= rtol
    if not homogeneous:
        issues.insert(0, f"Φ(c·θ) differs from c^L·Φ(θ) by {err:.2g} relative")
    # a non-homogeneous model has no degree; the log-ratio fit is kept apart (the KKT attack's λ scale uses it)
    return {"homogeneous": homogeneous, "degree": round(degree, 6) if homogeneous else None,
            **({} if homogeneous else {"fitted_degree": degree}), "max_rel_error": err,
            "issues": issues if not homogeneous else [],
            "notes": [] if not homogeneous else issues, "checked": "numerical"}


def _scaled_in_place(model: LoadedModel, x: torch.Tensor) -> Any:
    """Φ(c·θ; x) for a module ``functional_call`` cannot run (TorchScript): its parameters are multiplied by c in
    place and divided back (exact for powers of two), in the module's own dtype. None when even that fails."""
    module = model.module
    params = list(module.parameters())
    dtype = params[0].dtype if params else torch.float32

    def phi(c: float) -> torch.Tensor:
        for p in params:
            p.mul_(c)
        try:
            return module(x.to(dtype)).flatten().double()
        finally:
            for p in params:
                p.div_(c)

    try:
        phi(1.0)
    except Exception:
        return None
    return phi


def is_positively_homogeneous(model: LoadedModel, **kwargs: Any) -> bool:
    """True when Φ(c·θ; x) = c^L·Φ(θ; x) holds numerically for every parameter scale tried.

    Args:
        model: the model.
        kwargs: see :func:`homogeneity_report` (scales, n_inputs, rtol, seed).

    Returns:
        Whether the model is positively homogeneous in its parameters (what the KKT attack assumes).

    Example:
        >>> from torch import nn
        >>> from netinv.models.loaded import LoadedModel
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False))
        >>> is_positively_homogeneous(LoadedModel(net, (4,), 1))
        True
        >>> biased = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1))  # bias after the ReLU
        >>> is_positively_homogeneous(LoadedModel(biased, (4,), 1))
        False
    """
    return bool(homogeneity_report(model, **kwargs)["homogeneous"])


def summary(model: LoadedModel) -> dict[str, Any]:
    """What ``netinv info`` prints: inputs, outputs, parameter counts, layers and homogeneity.

    Args:
        model: the model.

    Returns:
        A JSON-ready dict: ``input_shape``, ``num_outputs``, ``binary``, ``input_range``, ``mean_subtracted``,
        ``classes``, ``parameters`` (total), ``trainable``, ``layers`` (name, type, parameters, shapes of the
        leaf modules; for a graph module such as a ``torch.export`` archive, its operations instead: type ``linear``,
        ``conv2d``, ``relu``… with the shapes of the parameters each one reads and the ``module`` it was traced
        from), ``homogeneity`` (:func:`homogeneity_report`) and ``source``.
    """
    module = model.module
    layers: list[dict[str, Any]] = []
    graphs: list[str] = []  # the modules under a graph are its parameter holders (and torch's guards), not layers
    for name, mod in module.named_modules():
        if any(name.startswith(g) for g in graphs):
            continue
        if isinstance(mod, torch.fx.GraphModule):
            layers += _graph_layers(mod, _graph_prefix(module, name))
            graphs.append(f"{name}." if name else "")
            continue
        if any(True for _ in mod.children()):
            continue
        own = list(mod.parameters(recurse=False))
        layers.append({"name": name, "type": type(mod).__name__, "parameters": sum(p.numel() for p in own),
                       "shapes": [list(p.shape) for p in own]})
    params = list(module.parameters())
    return {"input_shape": list(model.input_shape), "num_outputs": model.num_outputs, "binary": model.binary,
            "input_range": list(model.input_range), "mean_subtracted": model.mean is not None,
            "classes": model.classes, "parameters": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad), "layers": layers,
            "homogeneity": homogeneity_report(model), "source": model.source}
