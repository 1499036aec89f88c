"""``netinv``: registration only; each command lives in its own module."""

from __future__ import annotations

import typer

from . import adversarial as adversarial_cmd
from . import audit as audit_cmd
from . import data as data_cmd
from . import demo as demo_cmd
from . import evaluate as evaluate_cmd
from . import info as info_cmd
from . import invert as invert_cmd
from . import ood as ood_cmd
from . import reconstruct as reconstruct_cmd
from . import sat as sat_cmd
from . import sweep as sweep_cmd
from . import train as train_cmd
from ._errors import cli_warnings, run_cli

app = typer.Typer(name="netinv", no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},  # every subcommand inherits it
                  help="Invert trained neural networks: reconstruct training data, invert classifiers, "
                       "exactly invert binarised nets.")


def _show_version(value: bool) -> None:
    if value:
        import torch

        from .._utils.runinfo import netinv_version

        typer.echo(f"netinv {netinv_version()} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def _during_a_command(ctx: typer.Context, version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show netinv's and torch's versions.")) -> None:
    # netinv's warnings as one `warning: ...` line while the command runs (restored when it ends)
    ctx.with_resource(cli_warnings())


app.command("demo")(demo_cmd.demo)
app.command("audit")(audit_cmd.audit)
app.add_typer(data_cmd.app, name="data")
app.command("train")(train_cmd.train)
app.command("info")(info_cmd.info)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("invert")(invert_cmd.invert)
app.command("ood")(ood_cmd.ood)
app.command("adversarial")(adversarial_cmd.adversarial)
app.add_typer(sat_cmd.app, name="sat")
app.add_typer(reconstruct_cmd.app, name="reconstruct")
app.add_typer(sweep_cmd.app, name="sweep")


def main() -> None:
    run_cli(app)
