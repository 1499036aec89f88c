"""Known errors -> one line on stderr and exit 2; the traceback only with NETINV_DEBUG=1."""

from __future__ import annotations

import os
import sys

from .._errors import NetinvError


def format_error(e: BaseException) -> str:
    if isinstance(e, NetinvError):
        return f"error: {e.problem}" + (f" — {e.fix}" if e.fix else "")
    return f"error: {type(e).__name__}: {e}"


def run_cli(app) -> None:  # noqa: ANN001 - a typer app
    try:
        app(standalone_mode=False)
    except NetinvError as e:
        if os.environ.get("NETINV_DEBUG") == "1":
            raise
        print(format_error(e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted — rerun the same command with --resume to continue from the last checkpoint",
              file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors keep their own formatting
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
