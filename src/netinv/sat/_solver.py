"""Time limits that really stop: PySAT solvers with ``interrupt`` run in-process under a timer; everything else
(CaDiCaL, ApproxMC, UniGen) runs in a forked child process that is killed at the deadline."""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pysat.solvers import Solver, SolverNames

from .._errors import ConfigError, SolverError, informative_line
from .._utils import signals

#: Back ends whose PySAT wrapper implements interrupt() (checked: glucose, minisat, maple family).
INTERRUPTIBLE = {"g3", "g4", "g42", "glucose3", "glucose4", "glucose42", "m22", "minisat22", "mgh", "minisatgh",
                 "mcb", "maplechrono", "mcm", "maplecm", "mpl", "maplesat", "mc", "minicard", "gc3", "gc4"}
#: Default back end (ours, measured in benchmarks/sat_bnn.py: Glucose 4.2 with interrupt vs CaDiCaL in a child).
DEFAULT_SOLVER = "g42"


def check_solver(name: str) -> str:
    known = {n for names in vars(SolverNames).values() if isinstance(names, tuple) for n in names}
    if name not in known:
        raise ConfigError(f"unknown SAT solver {name!r}", "use e.g. g42 (Glucose 4.2), cd195 (CaDiCaL), m22")
    return name


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _child(conn: Any, fn: Callable, args: tuple) -> None:
    # the parent handles Ctrl-C and kills this process; SIGTERM sent to it alone ends it (the fork copied the
    # parent's holding handlers, below)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        conn.send(("done", fn(*args, lambda item: conn.send(("item", item)))))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {informative_line(e)}"))  # one line
    finally:
        conn.close()


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Ctrl-C / SIGTERM arriving during a fork ran their handler inside Python's after-fork hooks, which ignore
    exceptions: the KeyboardInterrupt was dropped and the run went on. Their handlers only record them here, and the
    recorded signals are raised again right after. (Blocking the signals in this thread did not do it: another thread,
    torch's or the CLI's signal relay, took them, and the handler still ran inside the hooks.)"""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers run (and are set) in the main thread
        yield
        return
    old = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    if any(h is None for h in old.values()):  # a handler set outside Python: cannot be put back, leave it
        yield
        return
    for s in _STOP_SIGNALS:
        signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in held:
            signal.raise_signal(s)


def run_forked(fn: Callable, args: tuple, time_limit: float, on_item: Callable[[Any], None] | None = None
               ) -> tuple[bool, Any]:
    """Run ``fn(*args, emit)`` in a forked child; ``emit(item)`` streams partial results to ``on_item``.

    Returns:
        ``(finished, value)``; ``(False, None)`` when the child was killed at ``time_limit`` seconds.

    Raises:
        SolverError: the child failed or died.
    """
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    try:  # a stop signal held during the fork is raised as the `with` ends: the child must be killed then too
        with _stop_signals_held():
            proc.start()
        send.close()
        deadline = time.monotonic() + max(time_limit, 0.0)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, None
            if recv.poll(min(left, 0.05)):
                try:
                    kind, val = recv.recv()
                except EOFError:
                    raise SolverError("the solver process died", "check memory, or use a smaller model") from None
                if kind == "item":
                    if on_item is not None:
                        on_item(val)
                elif kind == "done":
                    return True, val
                else:
                    raise SolverError(f"the solver process failed: {val}", "report this with the model")
            elif not proc.is_alive() and not recv.poll():
                raise SolverError(f"the solver process exited ({proc.exitcode})", "check memory limits")
    finally:
        send.close()
        if proc.pid is not None:  # started
            if proc.is_alive():
                proc.kill()
            proc.join(1.0)
        recv.close()


def _solve_child(name: str, clauses: list, assumptions: list, phases: list, emit: Callable) -> Any:
    with Solver(name=name, bootstrap_with=clauses) as s:
        if phases:
            s.set_phases(phases)
        ok = s.solve(assumptions=assumptions)
        return ok, (s.get_model() if ok else None)


class _Watchdog:
    """One thread per solver that interrupts it at a deadline. A ``threading.Timer`` per solve cost 0.2–0.3 ms to
    start and join, a tenth of a typical solve (audit measurement), so ``infer`` over many inputs paid it each time."""

    def __init__(self, interrupt: Callable[[], None]) -> None:
        self._interrupt = interrupt
        self._cv = threading.Condition()
        self._deadline: float | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="netinv-sat-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._cv:
            while not self._stop:
                if self._deadline is None:
                    self._cv.wait()
                elif (left := self._deadline - time.monotonic()) > 0:
                    self._cv.wait(min(left, threading.TIMEOUT_MAX))
                else:  # under the lock: once disarm() returns, no interrupt can land
                    self.interrupt_now()

    def arm(self, seconds: float) -> None:
        with self._cv:
            self._deadline = time.monotonic() + seconds
            self._cv.notify()
        signals.register(id(self), self.interrupt_now)  # Ctrl-C / SIGTERM stop the solve at once (CLI)

    def disarm(self) -> None:
        signals.unregister(id(self))
        with self._cv:
            self._deadline = None
            self._cv.notify()

    def interrupt_now(self) -> None:
        """Interrupt the running solve now (a signal arrived); nothing when none runs."""
        with self._cv:
            if self._deadline is not None:
                self._interrupt()
                self._deadline = None

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join()


class LimitedSolver:
    """A PySAT solver whose ``solve`` gives up at a deadline (returns None).

    Interruptible back ends stay in-process and incremental; others are re-run from the clauses in a child.
    """

    def __init__(self, clauses: list[list[int]], name: str = DEFAULT_SOLVER) -> None:
        self.name = check_solver(name)
        self.clauses = list(clauses)
        self.inproc = name in INTERRUPTIBLE
        self._s = Solver(name=name, bootstrap_with=self.clauses) if self.inproc else None
        self._model: list[int] | None = None
        self._phases: list[int] = []
        self._watchdog: _Watchdog | None = None

    def add_clause(self, clause: list[int]) -> None:
        self.clauses.append(clause)
        if self._s is not None:
            self._s.add_clause(clause)

    def set_phases(self, lits: list[int]) -> None:
        self._phases = list(lits)
        if self._s is not None:
            self._s.set_phases(self._phases)

    def solve(self, assumptions: list[int] = (), time_limit: float = 60.0) -> bool | None:
        """True (SAT), False (UNSAT) or None (stopped at ``time_limit`` seconds)."""
        self._model = None
        if time_limit <= 0:
            return None
        if self._s is not None:
            if self._watchdog is None:
                self._watchdog = _Watchdog(self._s.interrupt)
            self._watchdog.arm(time_limit)
            try:
                ok = self._s.solve_limited(assumptions=list(assumptions), expect_interrupt=True)
            finally:
                self._watchdog.disarm()  # an interrupt already firing lands before disarm returns
                self._s.clear_interrupt()
            if ok:
                self._model = self._s.get_model()
            return ok
        done, val = run_forked(_solve_child, (self.name, self.clauses, list(assumptions), self._phases), time_limit)
        if not done:
            return None
        ok, self._model = val
        return ok

    def get_model(self) -> list[int]:
        if self._model is None:
            raise SolverError("no model: the last solve was not SAT", "call solve() first")
        return self._model

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._s is not None:
            self._s.delete()
            self._s = None

    def __enter__(self) -> LimitedSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
