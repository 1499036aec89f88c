"""``netinv sweep kkt MODEL --out DIR --trials N [--storage URL] [--jobs J]``: an Optuna sweep of the KKT attack
that pools the candidates of the best runs by the attacker-side criterion. One :func:`netinv.attacks.sweep.sweep`
call."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import read_yaml
from ..attacks.kkt import KKTConfig, KKTReconstruction
from ..attacks.sweep import sweep as sweep_api
from ..models.loading import load_model
from ._options import (
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ModelArg,
    OutOpt,
    SeedOpt,
    WeightsOpt,
    config_opt,
    evaluate_hint,
    model_kwargs,
)
from .reconstruct import DtypeOpt, ItersOpt, MOpt, SignOpt, kkt_config

ConfigOpt = config_opt(KKTConfig)

app = typer.Typer(no_args_is_help=True, help="Hyper-parameter sweeps of an attack (Optuna), ranked without "
                                              "ground truth.")


@app.command("kkt")
def kkt(
    model: ModelArg,
    out: OutOpt = Path("runs/sweep"),
    trials: int = typer.Option(16, "--trials", help="trials this call adds to the study"),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL shared by many machines "
                                                               "(default: sqlite:///OUT/study.db)"),
    study_name: str = typer.Option("netinv-sweep", "--study-name", help="the study to create or continue"),
    jobs: int = typer.Option(1, "--jobs", help="trials in parallel on this machine"),
    pool_top: int = typer.Option(4, "--pool-top", help="pool the candidates of this many best runs"),
    m: int | None = MOpt,
    iterations: int | None = ItersOpt,
    lam_sign: str | None = SignOpt,
    dtype: str | None = DtypeOpt,
    config: ConfigOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted sweep in OUT: its interrupted trials "
                                                         "from their checkpoints, then the trials it had left"),
) -> None:
    """Sweep init scale, x step, λ_min and α (KKTReconstruction.search_space); pool the best runs' candidates.

    A setting given in --config is kept fixed, not swept. The same --seed and --jobs give the same trials; Ctrl-C
    stops it, --resume finishes it.

    Example: netinv sweep kkt runs/victim --out runs/sweep --trials 8 --jobs 2  (then: netinv evaluate runs/sweep)
    """
    cfg = kkt_config({"iterations": iterations, "lam_sign": lam_sign, "dtype": dtype}, yaml_file=config)
    victim = load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device))
    res = sweep_api(victim, KKTReconstruction, cfg, n_trials=trials, out=out, storage=storage, study_name=study_name,
                    n_jobs=jobs, pool_top=pool_top, n=m, seed=seed, resume=resume,
                    fixed=[k.replace("-", "_") for k in read_yaml(config)] if config else [])
    done = [t for t in res.trials if t["state"] == "COMPLETE"]
    total = len({t.get("index", t.get("number")) for t in res.trials})  # an interrupted trial resumed counts once
    typer.echo(f"{len(done)}/{total} trials complete in study {res.study_name!r}; best criterion "
               f"{res.candidates.info['criterion']:.4g} with {res.best_params}; pooled {len(res.candidates)} "
               f"candidates of trials {res.candidates.info['pooled_trials']} -> {out}; {evaluate_hint(victim, out)}")
