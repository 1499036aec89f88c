"""``netinv reconstruct kkt MODEL --out DIR``: KKT training-data reconstruction (Haim et al. 2022, Buzaglo et al.
2023). The command checks its flags, loads the model and makes one :class:`~netinv.attacks.kkt.KKTReconstruction`
call."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import typer

from .._errors import ConfigError
from .._utils.config import merge_config, read_yaml
from ..attacks.kkt import KKTConfig, KKTReconstruction, criterion_note
from ..data.npz import read_arrays
from ..models.loading import load_model
from ._options import (
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ModelArg,
    OutOpt,
    ResumeOpt,
    SeedOpt,
    WeightsOpt,
    config_opt,
    evaluate_hint,
    model_kwargs,
)
from .tldr import tldr

ConfigOpt = config_opt(KKTConfig)

app = typer.Typer(no_args_is_help=True, help="Reconstruct training data from a trained model's weights.")


def kkt_config(overrides: dict, exact_relu: bool = False, yaml_file: Path | None = None) -> KKTConfig:
    """Defaults <- YAML <- flags (``None`` = not given), type-checked; ``exact_relu`` drops the surrogate (and
    refuses an alpha given with it, as --alpha or in the YAML, which it would ignore)."""
    if exact_relu and overrides.get("alpha") is not None:
        raise ConfigError(f"--alpha {overrides['alpha']} sets the smooth surrogate that --exact-relu drops",
                          "give one of them")
    cfg = merge_config(KKTConfig(), overrides, yaml_file=yaml_file)
    if exact_relu and yaml_file is not None and read_yaml(yaml_file).get("alpha") is not None:
        raise ConfigError(f"alpha: {cfg.alpha:g} in {yaml_file} sets the smooth surrogate that --exact-relu drops",
                          "remove one of them (alpha: null in the file is the exact ReLU too)")
    return dataclasses.replace(cfg, alpha=None) if exact_relu else cfg


ItersOpt = typer.Option(None, "--iterations", help="optimisation steps (default 1500)")
OptimOpt = typer.Option(None, "--optimizer", help="adam (default) or sgd (momentum 0.9, Haim et al.)")
_K = KKTConfig()  # the defaults the help names
LrXOpt = typer.Option(None, "--lr-x", help=f"step on the candidate inputs (default {_K.lr_x:g})")
LrLamOpt = typer.Option(None, "--lr-lam", help=f"step on the multipliers λ (default {_K.lr_lam:g})")
InitOpt = typer.Option(None, "--init-scale", help="x0 = randn·init_scale in the model's input space "
                                                 f"(default {_K.init_scale:g})")
LamMinOpt = typer.Option(None, "--lam-min", help="floor of the dual-feasibility penalty, in units of ‖θ‖² / (L · mean "
                                                  f"|Φ| on box-uniform inputs), docs/kkt.md (default {_K.lam_min:g})")
AlphaOpt = typer.Option(None, "--alpha", help=f"ReLU backward -> sigmoid(α·z) during the attack (default "
                                              f"{_K.alpha:g})")
ExactOpt = typer.Option(False, "--exact-relu", help="no smooth surrogate: the exact ReLU backward")
SignOpt = typer.Option(None, "--lam-sign", help="nonneg (classifiers) or any (regression / general losses)")
DtypeOpt = typer.Option(None, "--dtype", help="float32 (default) or float64")
CkptOpt = typer.Option(None, "--checkpoint-every", help=f"iterations between resumable states (default "
                                                         f"{_K.checkpoint_every})")
MOpt = typer.Option(None, "--m", "--n", help="number of candidates (default: 2× the training set when the model "
                   "records it, else 100 per class)")
StartOpt = typer.Option(None, "--start", help="warm start: an npz with x (one start per candidate, data space) and "
                        "optionally y, e.g. an earlier run's candidates.npz")


def read_start(path: Path | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``x`` (and ``y`` when present) of a warm-start npz, refused in one line when unreadable."""
    if path is None:
        return None, None
    fix = "give an npz with an array x (and optionally y), e.g. a candidates.npz"
    f = read_arrays(path, what="the warm start", fix=fix)
    if "x" not in f or ("y" in f and f["y"].dtype.kind not in "biuf"):
        raise ConfigError(f"the warm start {path} has arrays {sorted(f)}" + (", no x" if "x" not in f else
                                                                             ", y not numeric"), fix)
    raw = np.asarray(f["x"])
    kind, dtype = raw.dtype.kind, raw.dtype
    x = torch.from_numpy(raw.astype(np.float32)) if kind in "biuf" else None
    y = torch.from_numpy(np.asarray(f["y"]).astype(np.int64)) if "y" in f else None
    if kind not in "f":
        raise ConfigError(f"x in the warm start {path} is {dtype}, not float data-space inputs",
                          "give float inputs in the model's data space (its --input-range, mean not subtracted), "
                          "e.g. an earlier run's candidates.npz; images stored as uint8: x / 255 mapped onto that "
                          "range")
    return x, y


@app.command("kkt")
def kkt(
    model: ModelArg,
    out: OutOpt = Path("runs/kkt"),
    m: int | None = MOpt,
    iterations: int | None = ItersOpt,
    optimizer: str | None = OptimOpt,
    lr_x: float | None = LrXOpt,
    lr_lam: float | None = LrLamOpt,
    init_scale: float | None = InitOpt,
    lam_min: float | None = LamMinOpt,
    alpha: float | None = AlphaOpt,
    exact_relu: bool = ExactOpt,
    lam_sign: str | None = SignOpt,
    dtype: str | None = DtypeOpt,
    checkpoint_every: int | None = CkptOpt,
    start: Path | None = StartOpt,
    config: ConfigOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = False,
) -> None:
    """Optimise candidate inputs on the KKT conditions of a homogeneous model; write candidates.npz + run.json.

    Example: netinv reconstruct kkt runs/victim --out runs/kkt  (then: netinv evaluate runs/kkt)
    """
    cfg = kkt_config({"iterations": iterations, "optimizer": optimizer, "lr_x": lr_x, "lr_lam": lr_lam,
                      "init_scale": init_scale, "lam_min": lam_min, "alpha": alpha, "lam_sign": lam_sign,
                      "dtype": dtype, "checkpoint_every": checkpoint_every}, exact_relu, config)
    x0, y0 = read_start(start)  # before the model loads: a bad file fails fast
    victim = load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device))
    cands = KKTReconstruction(victim, cfg).invert(m, seed=seed, out=out, resume=resume, x0=x0, y0=y0)
    info = cands.info
    typer.echo(f"{len(cands)} candidates, {cfg.iterations} iterations in {info['wall_time_s']:.1f}s "
               f"({info['iterations_per_s'] or 0:.2f} it/s), stationarity residual {info['criterion']:.4g} "
               f"-> {out} (candidates.npz, run.json); {evaluate_hint(victim, out)}")
    note = criterion_note(info["criterion"])
    if note:
        typer.echo(f"note: {note}", err=True)


app.command("tldr")(tldr)  # netinv reconstruct tldr (cli/tldr.py)
