"""Progress bars with a live loss (rich), silent when not attached to a terminal unless asked (``NETINV_PROGRESS=1``:
then a plain line every 10% or 30 s, which a log file keeps; ``NETINV_PROGRESS=0`` silences a terminal too)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _enabled(show: bool | None) -> bool:
    if show is not None:
        return show
    if os.environ.get("NETINV_PROGRESS", "") == "0":
        return False
    return sys.stderr.isatty() or os.environ.get("NETINV_PROGRESS", "") == "1"


#: set by a sweep on Ctrl-C: every loop running in a worker thread stops at its next bar update (Python delivers
#: Ctrl-C to the main thread only; worker threads left inside torch at exit abort the interpreter)
STOP = threading.Event()


def _fields_text(fields: dict[str, float | str]) -> str:
    """``loss=0.0123  acc=1``: the live values a bar shows."""
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._p, self._t = progress, task

    def update(self, advance: int = 1, **fields: float | str) -> None:
        """Advance the bar and show ``fields`` (e.g. ``loss=0.12``); in a worker thread, stop when :data:`STOP`."""
        if STOP.is_set() and threading.current_thread() is not threading.main_thread():
            raise KeyboardInterrupt
        if self._p is None or self._t is None:
            return
        self._p.update(self._t, advance=advance, info=_fields_text(fields))


class _LineBar(_Bar):
    """Progress for a log (stderr not a terminal): ``kkt 300/1500 (20%) 12 s loss=0.0123`` every 10% or 30 s."""

    def __init__(self, total: int, description: str, completed: int) -> None:
        super().__init__(None, None)
        self.total, self.description, self.done = total, description, completed
        self.t0 = self.last_t = time.monotonic()
        self.last_step = completed

    def update(self, advance: int = 1, **fields: float | str) -> None:
        super().update(advance)
        self.done += advance
        now = time.monotonic()
        if self.done - self.last_step >= max(1, self.total // 10) or now - self.last_t >= 30 or self.done == self.total:
            pct = f" ({self.done / self.total:.0%})" if self.total else ""
            print(f"{self.description} {self.done}/{self.total}{pct} {now - self.t0:.0f} s  {_fields_text(fields)}"
                  .rstrip(),
                  file=sys.stderr, flush=True)
            self.last_t, self.last_step = now, self.done


@contextmanager
def progress_bar(total: int, description: str, *, completed: int = 0, show: bool | None = None) -> Iterator[_Bar]:
    """A context manager yielding a bar; ``bar.update(loss=...)`` advances it and shows the live values."""
    if not _enabled(show):
        yield _Bar(None, None)
        return
    if not sys.stderr.isatty():
        yield _LineBar(total, description, completed)
        return
    from rich.console import Console

    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*cols, console=Console(stderr=True), transient=False) as p:
        t = p.add_task(description, total=total, completed=completed, info="")
        yield _Bar(p, t)
