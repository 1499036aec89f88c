"""A classifier's features for any :class:`LoadedModel`, used by the diversity losses and metrics.

Which features:
- default (``layer=None`` or ``"auto"``): the INPUT of the last ``nn.Linear`` the forward pass calls (the
  penultimate representation of an MLP or a CNN's head), caught by a forward pre-hook. "Last" is found by a probe
  forward pass, so it follows execution order, not registration order.
- ``layer="NAME"``: the OUTPUT of the named submodule (a name from ``module.named_modules()``, e.g.
  ``features.10``); ``"NAME:input"`` takes its input instead.
- ``layer="logits"``: the logits themselves.
- Fallback: a model with no ``nn.Linear`` the hooks can see (a ``torch.export`` GraphModule, whose layers are
  flattened into graph ops; a TorchScript module, which does not run Python hooks; a model without a linear layer)
  gives its logits under the default, and ``Features.layer`` then reads ``"logits"``; asking for a named layer
  there is an error.

Features keep the autograd graph to the input, so losses on them train a generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._errors import ConfigError
from .loaded import LoadedModel

__all__ = ["Features", "linear_layers_in_call_order"]


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
        if layer in (None, "auto"):
            linears = linear_layers_in_call_order(model)
            layer = f"{linears[-1]}:input" if linears else "logits"
        self.layer = layer
        if layer == "logits":
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

    def _keep_input(self, module: nn.Module, args: tuple) -> None:
        self._store["f"] = args[0]

    def _keep_output(self, module: nn.Module, args: tuple, out: Any) -> None:
        self._store["f"] = out[0] if isinstance(out, tuple) else out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
