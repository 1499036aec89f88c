"""``netinv sat infer|invert|sample|count|robust|export``: exact queries on a BNN through CNF and a SAT solver.

Each command checks its flags, loads the model and makes one :mod:`netinv.sat` call.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from .._errors import ConfigError, SolverError
from .._utils.config import merge_config
from ..data.npz import read_arrays
from ._options import (
    ConfigSeedOpt,
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ResumeOpt,
    WeightsOpt,
    config_opt,
    model_kwargs,
    parse_ints,
)

# sat.QueryConfig's fields, named here: that module needs python-sat, which the CLI does not (a test checks the list)
ConfigOpt = config_opt("encoding", "solver", "time_limit", "candidates", "climb_steps", "enumerate_max", "seed")

if TYPE_CHECKING:
    from .. import sat

app = typer.Typer(no_args_is_help=True, help="Exact inversion of binarised nets (CNF + SAT solver).")

EncodingOpt = typer.Option(None, "--encoding", help="auto, totalizer, seqcounter, sortnet or adder")
SolverOpt = typer.Option(None, "--solver", help="PySAT back end: g42 (default), cd195, m22, ...")
TimeOpt = typer.Option(None, "--time-limit", help="seconds of search per class (invert, count), per input (infer) "
                                                  "or per query (sample, robust), not counting the encoding; UNKNOWN "
                                                  "when hit (default 60)")
CandOpt = typer.Option(None, "--candidates", help="cheap model-checked random inputs tried first (0: none; a "
                                                "constrained space of at most 1 000 000 inputs is still "
                                                "enumerated; enumerate_max in --config) (default 1024)")
QOutOpt = typer.Option(None, "--out", "-o", help="write result.json here (and preimages.npz / preimages.png "
                                                 "when inputs were found: invert, sample, robust)")


def _sat_api() -> ModuleType:
    """:mod:`netinv.sat`, imported when a sat command runs: it needs python-sat, which the other commands do not."""
    try:
        from .. import sat as sat_api
    except ImportError as e:
        if (e.name or "").split(".")[0] != "pysat":
            raise
        raise SolverError("the sat commands need python-sat, which is not installed",
                          "pip install python-sat") from None
    return sat_api


def read_array(path: Path | None, name: str) -> np.ndarray | None:
    """``.npy`` or ``.npz`` (array ``x``, else the only array), loaded without pickle."""
    if path is None:
        return None
    z = read_arrays(path, what=name, allow_npy=True, fix="give a .npy or .npz file (no pickles)")
    keys = list(z)
    key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise ConfigError(f"{name} {path} has arrays {keys} but no 'x'", "save the inputs under the key x")
    return z[key]


def _config(encoding, solver, time_limit, candidates, seed, config) -> sat.QueryConfig:  # noqa: ANN001
    return merge_config(_sat_api().QueryConfig(), {"encoding": encoding, "solver": solver, "time_limit": time_limit,
                                                   "candidates": candidates, "seed": seed}, yaml_file=config)


# a netinv BNN checkpoint, a model that loads as one, or the plain integer form
ModelArg = Annotated[str, typer.Argument(help="netinv BNN checkpoint dir, plain BNN .npz (netinv sat export, or "
                                              "your own: docs/sat.md), or package.module:factory (with --weights)")]


def _model(model, weights, input_shape, input_range, mean, device):  # noqa: ANN001, ANN202
    """A netinv BNN checkpoint or a plain integer BNN .npz (netinv sat export, or one written by hand)."""
    return _sat_api().load_bnn(model, **model_kwargs(weights, input_shape, input_range, mean, device))


def _print(result: object) -> None:
    """The result as JSON on stdout (for scripts) and one line for a reader on stderr."""
    d = result.to_dict() if hasattr(result, "to_dict") else result
    typer.echo(json.dumps(d, indent=2, default=str))
    try:
        line = summary(d) if isinstance(d, dict) else ""
    except (KeyError, TypeError):  # a result without the usual fields: the JSON says it all
        line = ""
    if line:
        typer.echo(line, err=True)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.3g}"


def summary(d: dict) -> str:
    """One line of a query's result: each class's answer, or the count, agreement or robustness."""
    q = d.get("query")
    verified = {True: ", verified by the PyTorch model", False: ", NOT confirmed by the PyTorch model"}.get(
        d.get("verified"), "")
    if q == "invert":
        return "invert: " + ", ".join(f"class {c} {v['status']}" for c, v in d["classes"].items()) + verified
    if q == "count":
        return f"count ({d['method']}, of {d.get('space')} inputs): " + ", ".join(
            f"class {c} {_num(v['count']) if v['count'] is not None else v['status']}" for c, v in d["classes"].items())
    if q == "sample":
        return f"sample: {d['found']} distinct preimages of class {d['class']} ({d['status']}){verified}"
    if q == "robust":
        answer = {True: "robust (proof)", False: f"not robust: class {d['counterexample_class']} at distance "
                                                 f"{d['distance']}"}.get(d["robust"], "unknown (time limit)")
        return f"robust within radius {d['radius']}: {answer}"
    if q == "infer":
        return f"infer: {d['n']} inputs, CNF and model {'agree' if d['agree'] else 'DISAGREE'}" + (
            f", {d['unknown']} undecided" if d["unknown"] else "")
    if q == "export":
        return f"export: {d['formula']['variables']} variables, {d['formula']['clauses']} clauses"
    return ""


# input constraints (netinv.sat.InputConstraints), shared by invert, sample and count
FixedOpt = typer.Option(None, "--fixed", help="input whose --mask pixels are kept")
MaskOpt = typer.Option(None, "--mask", help=".npy bool mask shaped like one input")
CenterOpt = typer.Option(None, "--center", help="input at the centre of a Hamming ball")
RadiusOpt = typer.Option(None, "--radius", help="Hamming radius around --center")
MinOnOpt = typer.Option(None, "--min-on", help="at least this many input bits set")
MaxOnOpt = typer.Option(None, "--max-on", help="at most this many input bits set")


def _constraints(fixed, mask, center, radius, min_on, max_on):  # noqa: ANN001, ANN202
    return _sat_api().InputConstraints(read_array(fixed, "--fixed"), read_array(mask, "--mask"),
                                       read_array(center, "--center"), radius, min_on, max_on)


@app.command()
def infer(model: ModelArg, inputs: Path = typer.Option(..., "--inputs", help=".npy/.npz of data-space inputs"),
          encoding: str | None = EncodingOpt, solver: str | None = SolverOpt, time_limit: float | None = TimeOpt,
          out: Path | None = QOutOpt, config: ConfigOpt = None, weights: WeightsOpt = None,
          input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None, mean: MeanOpt = None,
          seed: ConfigSeedOpt = None, device: DeviceOpt = "cpu") -> None:
    """Classify inputs through the CNF and check agreement with the PyTorch model."""
    cfg = _config(encoding, solver, time_limit, None, seed, config)
    x = read_array(inputs, "--inputs")
    _print(_sat_api().infer(_model(model, weights, input_shape, input_range, mean, device), x, cfg, out=out))


ClassesOpt = typer.Option(None, "--classes", "--class", help="e.g. 0,3 (default: all); --class is the same option")


@app.command()
def invert(model: ModelArg, classes: str | None = ClassesOpt,
           fixed: Path | None = FixedOpt, mask: Path | None = MaskOpt, center: Path | None = CenterOpt,
           radius: int | None = RadiusOpt, min_on: int | None = MinOnOpt, max_on: int | None = MaxOnOpt,
           encoding: str | None = EncodingOpt, solver: str | None = SolverOpt, time_limit: float | None = TimeOpt,
           candidates: int | None = CandOpt, out: Path | None = QOutOpt, config: ConfigOpt = None,
           weights: WeightsOpt = None, input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None,
           mean: MeanOpt = None, seed: ConfigSeedOpt = None, device: DeviceOpt = "cpu") -> None:
    """A preimage per class, or a proof that the class is unreachable."""
    cfg = _config(encoding, solver, time_limit, candidates, seed, config)
    cons = _constraints(fixed, mask, center, radius, min_on, max_on)
    cs = parse_ints(classes, "--classes")
    _print(_sat_api().invert(_model(model, weights, input_shape, input_range, mean, device), cs, cons, cfg, out=out))


@app.command()
def sample(model: ModelArg, cls: int = typer.Option(..., "--class", help="the class to sample"),
           n: int = typer.Option(100, "-n", "--n", help="distinct preimages wanted"),
           method: str = typer.Option("auto", "--method", help="auto, solver or unigen"),
           fixed: Path | None = FixedOpt, mask: Path | None = MaskOpt, center: Path | None = CenterOpt,
           radius: int | None = RadiusOpt, min_on: int | None = MinOnOpt, max_on: int | None = MaxOnOpt,
           encoding: str | None = EncodingOpt, solver: str | None = SolverOpt, time_limit: float | None = TimeOpt,
           candidates: int | None = CandOpt, out: Path | None = QOutOpt, config: ConfigOpt = None,
           weights: WeightsOpt = None, input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None,
           mean: MeanOpt = None, seed: ConfigSeedOpt = None, device: DeviceOpt = "cpu",
           resume: ResumeOpt = False) -> None:
    """N distinct, diverse preimages of a class with their pairwise Hamming distances."""
    cfg = _config(encoding, solver, time_limit, candidates, seed, config)
    cons = _constraints(fixed, mask, center, radius, min_on, max_on)
    _print(_sat_api().sample(_model(model, weights, input_shape, input_range, mean, device), cls, n, cons, cfg,
                          method=method, out=out, resume=resume))


@app.command()
def count(model: ModelArg, classes: str | None = ClassesOpt,
          epsilon: float = typer.Option(0.8, help="ApproxMC tolerance"),
          delta: float = typer.Option(0.2, help="ApproxMC confidence 1 - delta"),
          method: str = typer.Option("approxmc", "--method", help="approxmc or exact (at most 2**24 inputs "
                                                                              "under the constraints)"),
          fixed: Path | None = FixedOpt, mask: Path | None = MaskOpt, center: Path | None = CenterOpt,
          radius: int | None = RadiusOpt, min_on: int | None = MinOnOpt, max_on: int | None = MaxOnOpt,
          encoding: str | None = EncodingOpt, time_limit: float | None = TimeOpt, out: Path | None = QOutOpt,
          config: ConfigOpt = None, weights: WeightsOpt = None, input_shape: InputShapeOpt = None,
          input_range: InputRangeOpt = None, mean: MeanOpt = None, seed: ConfigSeedOpt = None,
          device: DeviceOpt = "cpu", resume: ResumeOpt = False) -> None:
    """Approximate number of preimages per class and the share of the input space it owns."""
    cfg = _config(encoding, None, time_limit, None, seed, config)
    cs = parse_ints(classes, "--classes")
    cons = _constraints(fixed, mask, center, radius, min_on, max_on)
    _print(_sat_api().count(_model(model, weights, input_shape, input_range, mean, device), cs, cons, cfg,
                         epsilon=epsilon, delta=delta, method=method, out=out, resume=resume))


@app.command()
def robust(model: ModelArg, input: Path = typer.Option(..., "--input", help=".npy/.npz holding the input"),
           index: int = typer.Option(0, "--index", help="which row of --input when it holds several"),
           radius: int = typer.Option(..., "--radius", help="Hamming radius in input bits"),
           encoding: str | None = EncodingOpt, solver: str | None = SolverOpt, time_limit: float | None = TimeOpt,
           candidates: int | None = CandOpt, out: Path | None = QOutOpt, config: ConfigOpt = None,
           weights: WeightsOpt = None, input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None,
           mean: MeanOpt = None, seed: ConfigSeedOpt = None, device: DeviceOpt = "cpu") -> None:
    """Is every input within Hamming distance RADIUS classified the same? Counterexample or proof."""
    cfg = _config(encoding, solver, time_limit, candidates, seed, config)
    x = read_array(input, "--input")
    lm = _model(model, weights, input_shape, input_range, mean, device)
    if x.ndim > len(lm.input_shape):
        if not 0 <= index < len(x):
            raise ConfigError(f"--index {index} outside 0..{len(x) - 1}", "pick a row of --input")
        x = x[index]
    _print(_sat_api().robust(lm, x, radius, cfg, out=out))


@app.command()
def export(model: ModelArg, out: Path = typer.Option(..., "--out", "-o", help="output directory"),
           encoding: str = typer.Option("auto", "--encoding", help="auto, totalizer, seqcounter, sortnet, adder"),
           cls: int | None = typer.Option(None, "--class", help="add the unit clause 'class = CLS' to the CNF"),
           weights: WeightsOpt = None, input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None,
           mean: MeanOpt = None, device: DeviceOpt = "cpu") -> None:
    """Write the plain integer format (plain.npz, plain.json) and DIMACS CNF (model.cnf)."""
    _print(_sat_api().export(_model(model, weights, input_shape, input_range, mean, device), out, encoding, cls))
