"""``netinv ood MODEL --out DIR``: garbage-class retraining for OOD detection (arXiv 2505.23448) vs MSP."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import merge_config
from ..apps.ood import OODConfig, garbage_ood
from ..models.loading import load_model
from ._options import DeviceOpt, OutOpt, ResumeOpt, SeedOpt, config_opt

ConfigOpt = config_opt(OODConfig)

_O = OODConfig()  # the defaults the help names


def ood(
    model: str = typer.Argument(help="a netinv checkpoint directory (the garbage-class model retrains its "
                                     "architecture on its recorded data)"),
    out: OutOpt = Path("runs/ood"),
    epochs: int | None = typer.Option(None, help=f"training epochs of the (n+1)-class model (default {_O.epochs})"),
    per_epoch: int | None = typer.Option(None, help="inverted samples joining the garbage class each epoch"),
    gen_steps: int | None = typer.Option(None, help=f"generator steps per epoch (default {_O.gen_steps})"),
    noise_init: int | None = typer.Option(None, help="Gaussian-noise images the garbage class starts with"),
    conditioning: str | None = typer.Option(None, help="generator conditioning (hot, vector+matrix, ...)"),
    lr: float | None = typer.Option(None, help=f"Adam step of the (n+1)-class model (default {_O.lr:g})"),
    batch_size: int | None = typer.Option(None, help=f"minibatch size (default {_O.batch_size})"),
    weighted_ce: bool | None = typer.Option(None, "--weighted-ce/--no-weighted-ce",
                                            help="weight the cross-entropy against the garbage class's share "
                                                 "(default on, as the paper)"),
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = False,
) -> None:
    """Retrain a netinv checkpoint's architecture on its data with a garbage class filled by inversion, and compare
    OOD detection (held-out classes, uniform noise, inverted intensities) with the checkpoint's MSP.

    Example: netinv ood runs/cnn --out runs/ood  (runs/cnn: a netinv checkpoint, as in the README tour)
    """
    cfg = merge_config(OODConfig(), {"epochs": epochs, "per_epoch": per_epoch, "gen_steps": gen_steps,
                                     "noise_init": noise_init, "conditioning": conditioning, "lr": lr,
                                     "batch_size": batch_size, "weighted_ce": weighted_ce}, yaml_file=config)
    victim = load_model(model, device=device)
    res = garbage_ood(victim, cfg, seed=seed, out=out, resume=resume)
    typer.echo(res.table())
    a = res.accuracy
    typer.echo(f"in-distribution accuracy: baseline {a['baseline']:.4f}, garbage model {a['garbage_model']:.4f} "
               f"({100 * a['in_rejected']:.1f}% rejected) -> {out}")
