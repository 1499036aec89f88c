"""``netinv audit MODEL --out DIR``: reconstruct, evaluate against null baselines, write report.html/md/json."""

from __future__ import annotations

from pathlib import Path

import typer

from .._errors import ConfigError
from ..attacks.kkt import KKTConfig
from ..audit import audit as audit_api
from ..audit import audit_seeds
from ._options import (
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ModelArg,
    OutOpt,
    ResumeOpt,
    WeightsOpt,
    config_opt,
    model_kwargs,
    parse_ints,
)
from .reconstruct import ItersOpt, kkt_config

ConfigOpt = config_opt(KKTConfig)
MOpt = typer.Option(None, "--m", "--n", help="number of candidates (default: 2× the members)")


def audit(model: ModelArg, out: OutOpt = Path("runs/audit"),
          train: Path | None = typer.Option(None, "--train", help="members as npz (x, y) or class folders; "
                                                                  "default: the checkpoint's"),
          heldout: Path | None = typer.Option(None, "--heldout", help="non-members as npz (x, y) or class folders"),
          iterations: int | None = ItersOpt,
          m: int | None = MOpt,
          config: ConfigOpt = None,
          weights: WeightsOpt = None, input_shape: InputShapeOpt = None, input_range: InputRangeOpt = None,
          mean: MeanOpt = None, device: DeviceOpt = "auto",
          seed: int | None = typer.Option(None, "--seed", help="random seed, recorded in every output (default 0)"),
          seeds: str | None = typer.Option(None, "--seeds", help="audit once per seed (e.g. 0,1,2) into DIR/seed-S "
                                                                 "and summarise: the headline is the worst verdict"),
          resume: ResumeOpt = False) -> None:
    """How much of the training set can be reconstructed from these weights? Report in DIR/report.html.

    Runs the KKT reconstruction with attacker-side defaults (``--iterations``, or any KKT setting from a
    ``--config`` YAML file, override them), then prints the leakage figures beside their null
    baselines (uniform noise, real non-member images)."""
    opts = model_kwargs(weights, input_shape, input_range, mean, device)
    device = opts.pop("device")
    cfg = kkt_config({"iterations": iterations}, yaml_file=config)
    if seeds is not None:
        if seed is not None:
            raise ConfigError("--seed and --seeds given", "give one of them")
        many = audit_seeds(model, parse_ints(seeds, "--seeds"), out=out, config=cfg, m=m, train=train,
                           heldout=heldout, device=device, resume=resume, model_options=opts)
        typer.echo(many.table())
        typer.echo(f"report: {many.report['html']} (also report.md, report.json; each seed's in {out}/seed-S)")
        return
    # members / non-members of this model (npz or class folders): labels are its class indices, never renumbered
    res = audit_api(model, out=out, config=cfg, m=m, train=train, heldout=heldout, seed=seed or 0, device=device,
                    resume=resume, model_options=opts)
    typer.echo(res.evaluation.table())
    if res.candidates.info.get("criterion_note"):  # a poor fit, as `reconstruct kkt` says too
        typer.echo(f"note: {res.candidates.info['criterion_note']}", err=True)
    typer.echo(f"report: {res.report['html']} (also report.md, report.json)")
