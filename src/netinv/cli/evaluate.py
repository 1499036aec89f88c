"""``netinv evaluate RUN_DIR``: score an attack's candidates against the training set, beside the noise and real
held-out null baselines (writes RUN_DIR/evaluation.json and figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._utils.config import merge_config
from ..metrics.evaluation import EvaluationConfig
from ..metrics.run_dir import evaluate_dir
from ._options import DeviceOpt, InputRangeOpt, InputShapeOpt, MeanOpt, WeightsOpt, config_opt, model_kwargs

ConfigOpt = config_opt(EvaluationConfig)


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="folder with candidates.npz (the --out of a reconstruct run)")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="the attacked model (checkpoint dir, .pt2, "
                                              "TorchScript, pkg.module:factory); default: the one run.json names")]
    = None,
    train: Annotated[Path | None, typer.Option("--train", help="training set npz (x, y) or class folders, for a user "
                                                                 "model")] = None,
    heldout: Annotated[Path | None, typer.Option("--heldout", help="held-out set npz (x, y) or class folders")]
    = None,
    n_best: Annotated[int, typer.Option("--n-best", help="Haim's figure: mean SSIM of the best N")] = 10,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option("--seed", help="draws the noise and the held-out split; default: the "
                                             "seed run.json records (the attack's), else 0")] = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate a reconstruction. Example: netinv evaluate runs/kkt --model runs/victim.

    --config F.yaml sets EvaluationConfig fields (quantile, margin_tol, downsample, ssim_threshold, ...)."""
    settings = {"config": merge_config(EvaluationConfig(), yaml_file=config)} if config is not None else {}
    ev = evaluate_dir(run_dir, model, train_npz=train, heldout_npz=heldout, seed=seed, n_best=n_best,
                      model_options=model_kwargs(weights, input_shape, input_range, mean, device), **settings)
    typer.echo(ev.table())
    typer.echo(f"verdict: {ev.verdict()['verdict']}")  # the audit's, on these figures (also in evaluation.json)
    typer.echo(f"-> {run_dir / 'evaluation.json'}" + "".join(f", {p}" for p in ev.figures.values()))
