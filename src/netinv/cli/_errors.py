"""Known errors -> one line on stderr and exit 2; the traceback only with NETINV_DEBUG=1. netinv's own warnings ->
one line ``warning: ...`` on stderr while a command runs (library users keep Python's warnings)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import NetinvError
from .._utils import signals

_PACKAGE = Path(__file__).resolve().parent.parent  # src/netinv


def format_error(e: BaseException) -> str:
    if isinstance(e, NetinvError):
        return f"error: {e.problem}" + (f" — {e.fix}" if e.fix else "")
    return f"error: {type(e).__name__}: {e}"


def format_warning(message: Warning | str) -> str:
    """``warning: <message>`` on one line (newlines and runs of spaces folded)."""
    return "warning: " + " ".join(str(message).split())


@functools.cache  # asked for each warning shown
def _framework_dirs() -> tuple[Path, ...]:
    """typer's (and click's) folders: a netinv warning whose stacklevel points past the command's function lands in
    them (the caller of a netinv API call made by a command), and is netinv's all the same."""
    import importlib.util

    dirs = []
    for name in ("typer", "click"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.append(Path(spec.origin).resolve().parent)
    return tuple(dirs)


def _from_netinv(filename: str, category: type[Warning] = UserWarning) -> bool:
    """Whether a warning is attributed to a file of the netinv package (warnings.warn's stacklevel picks the file),
    or is a UserWarning attributed to the CLI framework that calls netinv's commands (typer's own deprecations keep
    Python's format)."""
    try:
        path = Path(filename).resolve()
        return path.is_relative_to(_PACKAGE) or (issubclass(category, UserWarning) and
                                                  any(path.is_relative_to(d) for d in _framework_dirs()))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def cli_warnings() -> Iterator[None]:
    """While the CLI runs a command, show warnings raised from netinv modules as one ``warning: ...`` line on stderr
    instead of Python's ``/path/file.py:123: UserWarning: ...`` (which filters and ``-W`` still govern: this only
    changes how a shown warning is written). Warnings from other packages keep Python's format; the previous
    ``warnings.showwarning`` is restored afterwards."""
    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if not _from_netinv(filename, category):
            previous(message, category, filename, lineno, file, line)
            return
        out = file if file is not None else sys.stderr
        try:
            out.write(format_warning(message) + "\n")
        except OSError:  # stderr gone (a closed pipe): a warning is not worth a crash
            pass

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = previous


def _click_exceptions() -> Any:
    """click's exception classes: typer >= 0.16 ships its own copy of click, older typer uses the package."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def _show_help_error(e: Any) -> None:
    """A command group called without a command: its help, as typer writes it."""
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(e)
    except ImportError:
        e.show()


def _command_path() -> str:
    """``netinv CMD [SUB]`` from the command line, for an error click raised before it knew the command."""
    words = [w for w in sys.argv[1:3] if not w.startswith("-")]
    groups = {"sat", "reconstruct", "sweep", "data"}
    return " ".join(["netinv", *(words[:2] if words[:1] and words[0] in groups else words[:1])])


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _rich_pipe_closed(console: Any) -> None:
    """rich's ``Console.on_broken_pipe`` (typer writes help through rich) exits 1; raise instead, so that
    ``netinv --help | head`` exits as SIGPIPE would, like every other output (below)."""
    console.quiet = True
    raise BrokenPipeError


def run_cli(app: Any, hard_exit: Any = os._exit) -> None:
    """Run the typer app: usage errors (an unknown option, a missing argument) and netinv errors become one line and
    exit 2, netinv warnings one ``warning: ...`` line (:func:`cli_warnings`; the app's callback installs it too, so
    that ``CliRunner`` invocations behave the same). Torch's CPU threads follow ``NETINV_THREADS`` (default ``auto``:
    torch's threads minus the cores other work keeps busy), and glibc keeps freed memory (``NETINV_MALLOC``,
    :func:`~netinv._utils.device.keep_freed_memory`)."""
    import typer

    from .._utils.device import cpu_threads, keep_freed_memory

    ce = _click_exceptions()
    help_error = getattr(ce, "NoArgsIsHelpError", ())
    signal.signal(signal.SIGTERM, _terminate)  # docker stop, kill, SLURM: stop as Ctrl-C does, checkpoints kept
    signals.start_relay()  # and both reach a running SAT solve at once, not at its time limit
    with contextlib.suppress(ImportError):
        from rich.console import Console

        Console.on_broken_pipe = _rich_pipe_closed  # this process is the CLI: its stdout is ours to handle
    try:
        with cli_warnings():
            cpu_threads()
            keep_freed_memory()  # large per-step tensors reuse freed memory instead of page-faulting it back
            code = app(standalone_mode=False)  # click's errors reach us, to be written as one line
            sys.stdout.flush()  # inside the try: a reader that left (`| head`) is said below, not at exit
    except SystemExit as e:
        code = e.code
        if code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":  # click's own EPIPE exit: as below
            code = 141
    except BrokenPipeError:  # `netinv info M | head -2`: the reader has all it wanted; exit as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        sys.exit(141)
    except ce.UsageError as e:
        if isinstance(e, help_error):
            _show_help_error(e)
            sys.exit(e.exit_code)
        where = e.ctx.command_path if e.ctx is not None else _command_path()
        print(f"error: {' '.join(e.format_message().split())} — see {where} --help", file=sys.stderr)
        sys.exit(2)
    except ce.ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except NetinvError as e:
        if os.environ.get("NETINV_DEBUG") == "1":
            raise
        print(format_error(e), file=sys.stderr)
        sys.exit(2)
    except MemoryError:  # a file far larger inside than on disk (a zip bomb, a forged image count) or a huge model
        if os.environ.get("NETINV_DEBUG") == "1":
            raise
        print("error: out of memory — the input (a data set, model or candidate file) holds more than this machine "
              "can load; check its size, or use a smaller subset", file=sys.stderr)
        sys.exit(2)
    if code == 130:  # typer turns Ctrl-C (and SIGTERM, through _terminate) into a silent exit 130
        from .._utils import checkpoint

        resumable = (set(sys.argv[1:2]) & {"train", "reconstruct", "invert", "tldr", "ood", "sweep", "audit",
                                             "adversarial"}) or sys.argv[1:3] in (["sat", "count"], ["sat", "sample"])
        print("interrupted" + ("" if not resumable else ": the last checkpoint is kept in the output folder; run the "
                               "same command with --resume to continue" if checkpoint.STATE_ON_DISK else
                               ": before the first checkpoint, so there is nothing to resume; run the command again"),
              file=sys.stderr)
        # every state is on disk (written atomically); skip interpreter teardown, where torch's C++ threads left
        # by interrupted worker threads (sweep --jobs N) can abort the process ("terminate called ...", 134)
        sys.stdout.flush()
        sys.stderr.flush()
        hard_exit(130)
    sys.exit(code)  # the command's own exit code (None: 0)
