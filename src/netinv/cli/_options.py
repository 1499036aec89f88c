"""Options declared once, spelled the same in every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .._errors import ConfigError

ModelArg = Annotated[str, typer.Argument(help="netinv checkpoint dir, .pt2 export, TorchScript file, or "
                                              "package.module:factory (with --weights)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU when present), cpu or cuda")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed, recorded in every output")]
#: for commands whose --config file may set the seed: unset, the file's seed (else the config's default, 0) is used
ConfigSeedOpt = Annotated[int | None, typer.Option("--seed", help="random seed, recorded in every output (default: "
                                                                  "the --config file's seed, else 0)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue an interrupted run from its last checkpoint")]


def config_opt(*keys: str | type) -> Any:
    """``--config FILE`` whose help lists the keys the file may set: a settings dataclass's fields, or names."""
    import dataclasses

    names = sorted({n for k in keys for n in ([f.name for f in dataclasses.fields(k)] if isinstance(k, type) else [k])})
    return Annotated[Path | None, typer.Option("--config", help="YAML file of settings (flags override it); keys: "
                                                                + ", ".join(names))]


WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="weights for a factory model (safetensors or "
                                                                    "a state_dict .pt, loaded weights_only)")]
InputShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="C,H,W or D when the file lacks it")]
InputRangeOpt = Annotated[str | None, typer.Option("--input-range", help="LO,HI of valid inputs (default 0,1)")]
MeanOpt = Annotated[Path | None, typer.Option("--mean", help=".npy mean image the model expects subtracted")]
DataOpt = Annotated[str, typer.Option("--data", help="digits, mnist, fashion-mnist, cifar10, npz, folder")]
DataPathOpt = Annotated[Path | None, typer.Option("--path", help="file/folder for npz and folder sources")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="folder of downloaded data sets")]
CheckMd5Opt = Annotated[bool, typer.Option("--check-md5", help="compare each data file with its published md5 "
                                                               "before reading it (cifar10)")]


def parse_floats(text: str | None, name: str, n: int | None = None) -> tuple[float, ...] | None:
    """``"0,1"`` -> (0.0, 1.0); a one-line error otherwise."""
    if text is None:
        return None
    try:
        vals = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ConfigError(f"cannot read {name} {text!r}", f"write it as comma-separated numbers, e.g. {name} 0,1") \
            from None
    if n is not None and len(vals) != n:
        raise ConfigError(f"{name} needs {n} numbers, got {text!r}", f"write e.g. {name} 0,1")
    return vals


def parse_ints(text: str | None, name: str) -> list[int] | None:
    """``"0,3"`` -> [0, 3] (e.g. class indices); a one-line error otherwise."""
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"cannot read {name} {text!r}", f"write integers, e.g. {name} 0,3") from None


def parse_classes(text: str | None) -> tuple[int, ...] | None:
    """``--classes 0,3`` of the generator commands -> (0, 3)."""
    ints = parse_ints(text, "--classes")
    return tuple(ints) if ints is not None else None


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,8,8"`` -> (1, 8, 8)."""
    if text is None:
        return None
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ConfigError(f"cannot read --input-shape {text!r}", "write C,H,W (e.g. 1,28,28) or D (e.g. 64)") from None
    if not shape or any(s <= 0 for s in shape):
        raise ConfigError(f"--input-shape {text!r} has a non-positive size", "write C,H,W or D with positive sizes")
    return shape


def model_kwargs(weights: Path | None, input_shape: str | None, input_range: str | None,
                 mean: Path | None, device: str) -> dict:
    """The ``load_model`` keyword arguments every model-taking command shares."""
    rng = parse_floats(input_range, "--input-range", 2)
    return {"weights": weights, "input_shape": parse_shape(input_shape), "input_range": rng, "mean": mean,
            "device": device}


def evaluate_hint(model: Any, out: Path) -> str:
    """The ``next:`` command after an attack: a model that records no members and non-members needs them given."""
    meta = getattr(model, "meta", None)
    has_data = isinstance(meta, dict) and isinstance(meta.get("data"), dict)
    source = getattr(model, "source", None) or {}
    named = ""  # evaluate never imports a factory recorded in run.json: the hint names it, as the user must (its
    if source.get("format") == "factory":  # shape, mean and range then come from the record)
        named = f" --model {source.get('factory')}" + (f" --weights {source['weights']}" if source.get("weights")
                                                      else "")
    return (f"next: netinv evaluate {out}{named}"
            + ("" if has_data else " --train MEMBERS.npz --heldout NONMEMBERS.npz"))
