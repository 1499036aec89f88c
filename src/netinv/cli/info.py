"""``netinv info MODEL``: what was loaded (parameters, layers, homogeneity, outputs)."""

from __future__ import annotations

import json

import typer

from ..models.loading import load_model
from ._options import DeviceOpt, InputRangeOpt, InputShapeOpt, MeanOpt, ModelArg, WeightsOpt, model_kwargs


def info(model: ModelArg, weights: WeightsOpt = None, input_shape: InputShapeOpt = None,
         input_range: InputRangeOpt = None, mean: MeanOpt = None, device: DeviceOpt = "auto",
         as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Load a model and report its parameters, layers, input contract and whether it is positively homogeneous."""
    from ..models.inspect import summary

    s = summary(load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device)))
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    for k, v in s.items():
        if k != "layers":
            typer.echo(f"{k:>22}: {v}")
    for layer in s.get("layers", []):
        typer.echo(f"{'':>24}{layer}")
