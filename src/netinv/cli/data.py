"""``netinv data list|show NAME``."""

from __future__ import annotations

import json

import typer

from ..data import SOURCES, load_data
from ._options import CheckMd5Opt, DataPathOpt, RootOpt

app = typer.Typer(no_args_is_help=True, help="List and inspect data sources.")


@app.command("list")
def list_sources() -> None:
    """List the data sources."""
    for name, desc in SOURCES.items():
        typer.echo(f"{name:14s} {desc}")


@app.command("show")
def show(name: str = typer.Argument(help="a source of netinv data list: digits, mnist, fashion-mnist, cifar10, "
                                          "npz, folder"),
         path: DataPathOpt = None, root: RootOpt = None,
         split: str = typer.Option("train", help="train or test (MNIST / CIFAR-10 files)"),
         download: bool = typer.Option(False, help="download missing files (with checksum)"),
         check_md5: CheckMd5Opt = False) -> None:
    """Load a data source and print its size, shape, range and class counts.

    Example: netinv data show digits  (or: netinv data show mnist --root ~/data --download)"""
    ds = load_data(name, root=root, path=path, split=split, download=download, check_md5=check_md5)
    typer.echo(json.dumps(ds.summary(), indent=2))
