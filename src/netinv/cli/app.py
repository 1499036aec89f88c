"""``netinv``: registration only; each command lives in its own module."""

from __future__ import annotations

import typer

from . import data as data_cmd
from . import evaluate as evaluate_cmd
from . import info as info_cmd
from . import train as train_cmd
from ._errors import run_cli

app = typer.Typer(name="netinv", no_args_is_help=True, add_completion=False,
                  help="Invert trained neural networks: reconstruct training data, invert classifiers, "
                       "exactly invert binarised nets.")
app.add_typer(data_cmd.app, name="data")
app.command("train")(train_cmd.train)
app.command("info")(info_cmd.info)
app.command("evaluate")(evaluate_cmd.evaluate)


def main() -> None:
    run_cli(app)
