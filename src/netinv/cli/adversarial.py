"""``netinv adversarial MODEL --out DIR``: targeted adversarial samples, conditioned generator vs PGD."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import merge_config
from ..apps.adversarial import AdversarialConfig, run_adversarial, table
from ..data import Dataset, load_data, task_view
from ..models.loading import load_model
from ._options import (
    CheckMd5Opt,
    DataPathOpt,
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ModelArg,
    OutOpt,
    ResumeOpt,
    RootOpt,
    SeedOpt,
    WeightsOpt,
    config_opt,
    model_kwargs,
)

ConfigOpt = config_opt(AdversarialConfig)

_A = AdversarialConfig()  # the defaults the help names


def adversarial(
    model: ModelArg,
    out: OutOpt = Path("runs/adversarial"),
    norm: str | None = typer.Option(None, help="linf (default) or l2"),
    eps: float | None = typer.Option(None, help=f"perturbation budget in the chosen norm, data space (default "
                                                f"{_A.eps:g})"),
    n: int = typer.Option(200, "--n", help="inputs to attack"),
    pgd_steps: int | None = typer.Option(None, help=f"targeted PGD steps (default {_A.pgd_steps})"),
    gen_steps: int | None = typer.Option(None, help=f"training steps of the perturbation generator (default "
                                                    f"{_A.gen_steps})"),
    data: str | None = typer.Option(None, "--data", help="inputs to attack (default: the checkpoint's held-out "
                                                         "set, and the generator trains on its training set; with "
                                                         "--data, --n of them are attacked and the generator trains on "
                                                         "the rest)"),
    path: DataPathOpt = None,
    root: RootOpt = None,
    check_md5: CheckMd5Opt = False,
    config: ConfigOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = False,
) -> None:
    """Find inputs within an L∞/L2 budget that the model assigns to a target class: a target-conditioned
    perturbation generator against targeted PGD (success rate, mean ‖δ‖, time).

    Example: netinv adversarial runs/victim --norm l2 --eps 1.0
    """
    cfg = merge_config(AdversarialConfig(), {"norm": norm, "eps": eps, "pgd_steps": pgd_steps,
                                             "gen_steps": gen_steps}, yaml_file=config)
    victim = load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device))
    ds: Dataset | Path | None = path if data is None else None  # --path alone: an npz file or a class folder
    if data is not None:  # a named source, seen as the checkpoint's task when it records one (parity, classes:…)
        ds = load_data(data, root=root, path=path, check_md5=check_md5, relabel=False)
        record = victim.meta.get("data") if isinstance(victim.meta, dict) else None
        if isinstance(record, dict) and (record.get("load_args") or {}).get("name") == data:
            ds = task_view(ds, (record.get("task") or {}).get("task"))
    res = run_adversarial(victim, cfg, data=ds, n=n, seed=seed, out=out, resume=resume)
    typer.echo(table(res, cfg))
    typer.echo(f"-> {out} (adversarial.json, adversarial.npz)")
