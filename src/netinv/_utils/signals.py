"""Ctrl-C / SIGTERM reach code that is inside a long C call (a SAT solve releases the interpreter lock and returns only
at its answer or its time limit): Python runs its signal handlers between bytecodes, so the handler would wait.
:func:`start_relay` (the CLI calls it) points the interpreter's wakeup fd at a pipe read by one thread, which calls
every registered ``interrupt`` right away; the C call then returns and the handler runs as usual."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

_LOCK = threading.Lock()
_INTERRUPTS: dict[int, Callable[[], None]] = {}
_STARTED = False


def register(key: int, interrupt: Callable[[], None]) -> None:
    """Call ``interrupt`` when a signal arrives while registered (e.g. while a solve runs)."""
    with _LOCK:
        _INTERRUPTS[key] = interrupt


def unregister(key: int) -> None:
    with _LOCK:
        _INTERRUPTS.pop(key, None)


def start_relay() -> bool:
    """Start the relay once per process, from the main thread, unless another wakeup fd is set (an event loop's).
    Returns whether it runs."""
    global _STARTED
    if _STARTED:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r), os.close(w)
        return False
    if old != -1:  # someone else's: keep it
        signal.set_wakeup_fd(old)
        os.close(r), os.close(w)
        return False
    _STARTED = True
    threading.Thread(target=_relay, args=(r,), name="netinv-signal-relay", daemon=True).start()
    return True


_STOP = {int(signal.SIGINT), int(signal.SIGTERM)}  # other signals with Python handlers leave solves alone


def _relay(r: int) -> None:
    while data := os.read(r, 64):
        if not _STOP & set(data):
            continue
        with _LOCK:
            calls = list(_INTERRUPTS.values())
        for interrupt in calls:
            interrupt()
