"""A classifier's features for any :class:`LoadedModel`, used by the diversity losses and metrics.

Which features:
- default (``layer=None`` or ``"auto"``): the INPUT of the last ``nn.Linear`` the forward pass calls (the
  penultimate representation of an MLP or a CNN's head), caught by a forward pre-hook. "Last" is found by a probe
  forward pass, so it follows execution order, not registration order.
- ``layer="NAME"``: the OUTPUT of the named submodule (a name from ``module.named_modules()``, e.g.
  ``features.10``); ``"NAME:input"`` takes its input instead.
- ``layer="logits"``: the logits themselves.
- ``torch.export`` graphs (a ``.pt2`` loaded by :func:`netinv.models.load_model`, or a bare ``torch.fx``
  GraphModule) flatten their layers into aten calls that hooks cannot see. There the default is the input of the
  last linear graph op with a weight from the model's parameters (``aten.linear`` / ``addmm`` / ``mm`` /
  ``matmul``; e.g. ``linear_1:input``), and a named layer is a graph node name (its output, or ``NAME:input``: the
  op's activation operand). The graph is run node by node by a ``torch.fx.Interpreter`` that keeps that value, on
  the loaded module's own graph and weights, so neither the archive nor the module other attacks use changes; a
  graph that only runs on its exported batch size is chunked as :class:`netinv.models.exported._Exported` does.
- Fallback: a model with no linear layer hooks or the graph can show (a TorchScript module, which does not run
  Python hooks; a model without a linear layer) gives its logits under the default, and ``Features.layer`` then
  reads ``"logits"``; asking for a named layer there is an error.

Features keep the autograd graph to the input, so losses on them train a generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._errors import ConfigError
from .loaded import LoadedModel

__all__ = ["Features", "graph_linear_nodes", "linear_layers_in_call_order"]


def _probe(model: LoadedModel) -> None:
    """One forward pass on a constant batch in eval mode (no BatchNorm statistics updated), mode restored."""
    was_training = model.module.training
    model.module.eval()
    try:
        with torch.no_grad():
            model.logits(torch.full((2, *model.input_shape), 0.5, device=model.device))
    finally:
        model.module.train(was_training)


def linear_layers_in_call_order(model: LoadedModel) -> list[str]:
    """Names of the ``nn.Linear`` submodules in the order one forward pass calls them (empty when none fires)."""
    order: list[str] = []
    handles = []
    for name, mod in model.module.named_modules():
        if isinstance(mod, nn.Linear):
            try:
                handles.append(mod.register_forward_pre_hook(lambda m, a, n=name: order.append(n)))
            except RuntimeError:  # a scripted module refuses Python hooks
                pass
    try:
        _probe(model)
    finally:
        for h in handles:
            h.remove()
    return order


_aten = torch.ops.aten
# linear-layer graph ops -> (index of the activation operand, index of the weight operand)
_LINEAR_OPS = {_aten.linear.default: (0, 1), _aten.addmm.default: (1, 2), _aten.mm.default: (0, 1),
               _aten.matmul.default: (0, 1)}
# ops that only re-lay-out a weight on its way to a linear op (W.t(), a permute, a cast, ...)
_LAYOUT_OPS = {_aten.t.default, _aten.permute.default, _aten.transpose.int, _aten.view.default,
               _aten.reshape.default, _aten._to_copy.default, _aten.contiguous.default, _aten.clone.default}


def _graph_of(model: LoadedModel) -> tuple[torch.fx.GraphModule, int | None] | None:
    """(graph, fixed batch or None) of an exported model (``_Exported`` wrapper or a bare GraphModule), else None."""
    mod = model.module
    inner = getattr(mod, "inner", None)
    if isinstance(inner, torch.fx.GraphModule):
        b = getattr(mod, "b", None)
        return inner, (int(b) if b else None)
    if isinstance(mod, torch.fx.GraphModule):
        return mod, None
    return None


def _is_weight(node: Any) -> bool:
    """Whether a graph value is a model parameter/buffer, possibly re-laid-out (a linear layer's weight)."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in _LAYOUT_OPS:
        node = node.args[0]
    return isinstance(node, torch.fx.Node) and node.op == "get_attr"


def _operand(node: torch.fx.Node) -> Any:
    """The activation a graph op works on: a linear op's input operand, else its first argument."""
    idx = _LINEAR_OPS[node.target][0] if node.target in _LINEAR_OPS else 0
    return node.args[idx] if len(node.args) > idx else None


def graph_linear_nodes(gm: torch.fx.GraphModule) -> list[str]:
    """Names of the linear-layer ops of a graph (activation times a parameter weight), in execution order."""
    return [n.name for n in gm.graph.nodes if n.op == "call_function" and n.target in _LINEAR_OPS
            and isinstance(_operand(n), torch.fx.Node) and _is_weight(n.args[_LINEAR_OPS[n.target][1]])]


class _Tap(torch.fx.Interpreter):
    """Runs a graph and keeps one node's output, or the activation operand of that node (``input``)."""

    def __init__(self, gm: torch.fx.GraphModule, node: torch.fx.Node, operand: bool) -> None:
        super().__init__(gm)
        self.target = _operand(node) if operand else node
        self.kept: Any = None

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n is self.target:
            self.kept = out
        return out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.kept = None
        out = self.run(x)  # inputs and outputs go through the graph's pytree specs, as in its forward
        if isinstance(out, tuple | list) and len(out) == 1:
            out = out[0]
        kept, self.kept = self.kept, None
        if not isinstance(kept, torch.Tensor) or not isinstance(out, torch.Tensor):
            raise ConfigError("the feature layer or the graph's output is not a tensor",
                              "pick another --feature-layer, or logits")
        return kept, out


class Features:
    """Callable ``feats(x) -> (features N×D, logits N×K)`` for data-space inputs x.

    Args:
        model: the classifier.
        layer: ``None``/``"auto"`` (input of the last linear layer), ``"logits"``, ``"NAME"`` (output of that
            submodule) or ``"NAME:input"``. See the module docstring for the fallback.

    Raises:
        ConfigError: a named layer that does not exist or never runs.

    Example:
        >>> from netinv.models.cnn import CNNSpec
        >>> m = LoadedModel(CNNSpec((1, 8, 8)).build().eval(), (1, 8, 8), 10)
        >>> f = Features(m)
        >>> f.layer, f(torch.rand(3, 1, 8, 8))[0].shape
        ('head:input', torch.Size([3, 128]))
    """

    def __init__(self, model: LoadedModel, layer: str | None = None) -> None:
        self.model = model
        self._store: dict[str, torch.Tensor] = {}
        self._handle: Any = None
        self._tap: _Tap | None = None
        self._chunk: int | None = None
        graph = _graph_of(model)
        if layer in (None, "auto"):
            linears = linear_layers_in_call_order(model)
            if linears:
                layer = f"{linears[-1]}:input"
            else:
                nodes = graph_linear_nodes(graph[0]) if graph is not None else []
                layer = f"{nodes[-1]}:input" if nodes else "logits"
        self.layer = layer
        if layer == "logits":
            return
        if graph is not None and layer.partition(":")[0] not in dict(model.module.named_modules()):
            self._init_graph(*graph)  # a graph node (layers flattened by torch.export)
            return
        name, _, where = layer.partition(":")
        modules = dict(model.module.named_modules())
        if name not in modules or where not in ("", "input", "output"):
            some = ", ".join(n for n in list(modules)[1:12] if n)
            raise ConfigError(f"feature layer {layer!r} is not a submodule of this model",
                              f"use auto, logits or one of: {some} (optionally with :input)")
        mod = modules[name]
        try:
            if where == "input":
                self._handle = mod.register_forward_pre_hook(self._keep_input)
            else:
                self._handle = mod.register_forward_hook(self._keep_output)
        except RuntimeError:
            raise ConfigError(f"this model (e.g. TorchScript) does not run hooks, so layer {layer!r} is unreachable",
                              "use --feature-layer logits") from None
        self._store.clear()
        _probe(model)
        if "f" not in self._store:
            raise ConfigError(f"feature layer {layer!r} never runs in the forward pass",
                              "pick a layer the forward pass uses, or logits")

    def _init_graph(self, gm: torch.fx.GraphModule, batch: int | None) -> None:
        name, _, where = self.layer.partition(":")
        nodes = {n.name: n for n in gm.graph.nodes if n.op == "call_function"}
        if name not in nodes or where not in ("", "input", "output") \
                or (where == "input" and not isinstance(_operand(nodes[name]), torch.fx.Node)):
            some = ", ".join((graph_linear_nodes(gm) or list(nodes))[-10:])
            raise ConfigError(f"feature layer {self.layer!r} is not a node of this exported graph",
                              f"use auto, logits or one of its graph nodes: {some} (optionally with :input)")
        self._tap = _Tap(gm, nodes[name], where == "input")
        self._chunk = batch
        with torch.no_grad():
            self._run_graph(torch.full((2, *self.model.input_shape), 0.5, device=self.model.device))

    def _run_graph(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) from the graph; a fixed-batch graph runs on padded chunks of its batch size, in order,
        and the padding rows are dropped (as ``_Exported.forward`` does for the logits)."""
        assert self._tap is not None
        x = self.model.preprocess(x)
        if self._chunk is None:
            f, z = self._tap(x)
            return f.flatten(1), z
        n, b = x.shape[0], self._chunk
        pad = (-n) % b
        if pad:
            x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
        parts = [self._tap(c) for c in x.split(b)]
        return torch.cat([f.flatten(1) for f, _ in parts])[:n], torch.cat([z for _, z in parts])[:n]

    def _keep_input(self, module: nn.Module, args: tuple) -> None:
        self._store["f"] = args[0]

    def _keep_output(self, module: nn.Module, args: tuple, out: Any) -> None:
        self._store["f"] = out[0] if isinstance(out, tuple) else out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.model.device)  # as LoadedModel.predict: CPU inputs for a model on a GPU
        if self._tap is not None:
            return self._run_graph(x)
        self._store.clear()
        logits = self.model.logits(x)
        if self.layer == "logits":
            return logits.flatten(1), logits
        return self._store.pop("f").flatten(1), logits

    def close(self) -> None:
        """Remove the hook (the object is unusable afterwards except with ``layer='logits'``)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass
