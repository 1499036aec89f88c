"""``netinv train``: train a victim and write a checkpoint directory."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import merge_config
from ..train import TrainConfig
from ..train import train as train_api
from ._options import (
    CheckMd5Opt,
    ConfigSeedOpt,
    DataOpt,
    DataPathOpt,
    DeviceOpt,
    OutOpt,
    ResumeOpt,
    RootOpt,
    config_opt,
)

ConfigOpt = config_opt(TrainConfig)

_D = TrainConfig()  # the defaults the help names


def train(
    out: OutOpt = Path("runs/victim"),
    data: DataOpt = "digits",
    path: DataPathOpt = None,
    root: RootOpt = None,
    task: str = typer.Option("all", help="all, parity, vehicles-animals, classes:0,1,2 or groups:0,2/1,3"),
    n_per_class: int | None = typer.Option(None, help="members per class (default: all but 1/5 held out)"),
    heldout_per_class: int | None = typer.Option(None, help="held-out non-members per class"),
    arch: str = typer.Option("mlp:1000,1000", help="mlp:W1,W2,... | cnn:C1,C2,... | bnn:W1,..."),
    bias: str | None = typer.Option(None, help="mlp: all (default), first or none (homogeneous); cnn: none drops "
                                                "biases"),
    init_scale: float | None = typer.Option(None, help="multiply the default initialisation of every layer"),
    threshold: float | None = typer.Option(None, help="bnn: input binarisation threshold (default 0.5)"),
    ternary: float | None = typer.Option(None, help="bnn: zero hidden weights with |w| <= this (sparse, easier SAT)"),
    loss: str | None = typer.Option(None, help=f"auto, logistic or ce (default {_D.loss})"),
    optimizer: str | None = typer.Option(None, help=f"gd (full batch), sgd or adam (default {_D.optimizer})"),
    lr: float | None = typer.Option(None, help=f"step size (default {_D.lr:g})"),
    epochs: int | None = typer.Option(None, help=f"at most this many (default {_D.epochs})"),
    batch_size: int | None = typer.Option(None, help="default: the full batch"),
    weight_decay: float | None = typer.Option(None, help=f"default {_D.weight_decay:g}"),
    target_loss: float | None = typer.Option(None, help=f"stop below this mean loss with zero training error "
                                                         f"(default {_D.target_loss:g})"),
    log_every: int | None = typer.Option(None, help="epochs between loss-curve points; the target-loss stop is "
                                         "checked there too (the reference victim uses 100)"),
    mean_subtract: bool | None = typer.Option(None, "--mean-subtract/--no-mean-subtract",
                                              help="subtract the members' mean image (default off)"),
    config: ConfigOpt = None,
    seed: ConfigSeedOpt = None,
    device: DeviceOpt = "auto",
    download: bool = typer.Option(False, help="download missing data files"),
    check_md5: CheckMd5Opt = False,
    resume: ResumeOpt = False,
) -> None:
    """Train a victim classifier. Example (the KKT reference victim): netinv train --task parity --n-per-class 50
    --arch mlp:1000,1000 --bias none --init-scale 0.03 --lr 3 --mean-subtract --target-loss 1e-5 --log-every 100"""
    cfg = merge_config(TrainConfig(), {"loss": loss, "optimizer": optimizer, "lr": lr, "epochs": epochs,
                                       "batch_size": batch_size, "weight_decay": weight_decay,
                                       "target_loss": target_loss, "mean_subtract": mean_subtract, "seed": seed,
                                       "log_every": log_every},
                       yaml_file=config)
    model = train_api(data, arch, cfg, task=task, n_per_class=n_per_class, heldout_per_class=heldout_per_class,
                      root=root, path=path, download=download, check_md5=check_md5, out=out, resume=resume,
                      device=device, bias=bias, init_scale=init_scale, threshold=threshold, ternary=ternary)
    m = model.meta
    n = len(m["data"]["train_indices"])
    typer.echo(f"trained {arch} on {data}/{task}: {n} members, train acc {m['train_accuracy']:.4f}, "
               f"held-out acc {m['test_accuracy']:.4f}, loss {m['final_loss']:.3g}, {m['epochs_run']} epochs, "
               f"{m['wall_time_s']:.1f}s -> {out}")
