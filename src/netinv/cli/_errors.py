"""Known errors -> one line on stderr and exit 2; the traceback only with NETINV_DEBUG=1."""

from __future__ import annotations

import os
import sys
from typing import Any

from .._errors import NetinvError


def format_error(e: BaseException) -> str:
    if isinstance(e, NetinvError):
        return f"error: {e.problem}" + (f" — {e.fix}" if e.fix else "")
    return f"error: {type(e).__name__}: {e}"


def run_cli(app: Any) -> None:
    """Run the typer app; usage errors keep click's formatting, netinv errors become one line and exit 2. Torch's
    CPU threads follow ``NETINV_THREADS`` (default ``auto``: torch's threads minus the cores other work keeps busy)."""
    from .._utils.device import cpu_threads

    try:
        cpu_threads()
        app()
    except NetinvError as e:
        if os.environ.get("NETINV_DEBUG") == "1":
            raise
        print(format_error(e), file=sys.stderr)
        sys.exit(2)
