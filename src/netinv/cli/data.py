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
def show(name: str, path: DataPathOpt = None, root: RootOpt = None, split: str = "train",
         download: bool = typer.Option(False, help="download missing files (with checksum)"),
         check_md5: CheckMd5Opt = False) -> None:
    """Load a data source and print its size, shape, range and class counts."""
    ds = load_data(name, root=root, path=path, split=split, download=download, check_md5=check_md5)
    typer.echo(json.dumps(ds.summary(), indent=2))
