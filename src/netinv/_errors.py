"""Errors a user can act on: each names the problem and the fix, and the CLI prints it as one line (exit 2)."""

from __future__ import annotations

import math
import re


class NetinvError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        text = f"{problem} — {fix}" if fix else problem
        flag = next((f for f in _FLAG.findall(fix) if f != "help"), None)
        if flag:  # the CLI prints problem and fix; a Python caller reads str(e), so the flag is translated once
            name = _PYTHON_NAMES.get(flag, flag.replace("-", "_"))
            text += f" (from Python: --{flag} is {name}, as an argument or a config field)"
        super().__init__(text)


_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
#: CLI flags whose Python argument is not the flag's own name
_PYTHON_NAMES = {"m": "n", "train": "train (train_npz in evaluate_dir)",
                 "heldout": "heldout (heldout_npz in evaluate_dir)"}


class DataError(NetinvError):
    """A data set is missing, corrupt, unsafe or of the wrong shape."""


class ModelError(NetinvError):
    """A model cannot be built, loaded or used with the given data."""


class ConfigError(NetinvError):
    """An option or configuration value is invalid."""


class DivergedError(ConfigError):
    """A training loop or attack diverged (its loss turned NaN or infinite): a result of those settings, which a
    sweep records and goes on from, unlike every other error."""


class SolverError(NetinvError):
    """A SAT/counting back end is unavailable or failed."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (its type name when there is none), at most ``limit`` chars:
    what a one-line error quotes of an error from torch or numpy (a cut line ends in '…')."""
    return _cut(([ln.strip() for ln in str(error).splitlines() if ln.strip()] or [type(error).__name__])[0], limit)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[:limit - 1] + "…"


def informative_line(error: BaseException, limit: int = 200) -> str:
    """The line of a multi-line error message that says what went wrong: the last ``SomeError: …`` line (TorchScript
    puts the real error last), else the first line that is not a header ending in ':' (``load_state_dict`` lists its
    mismatches under one), else the first line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln):
            return _cut(ln, limit)
    return _cut(next((ln for ln in lines if not ln.endswith(":")), lines[0]), limit)


def check_finite_loss(loss: float, what: str, fix: str, *, at: str = "", setting: str = "") -> None:
    """A training loop whose loss turned NaN/inf stops here with one line (``{what} diverged at {at} (loss nan) with
    {setting}``) instead of running on, and saving, NaN weights."""
    if not math.isfinite(loss):
        raise DivergedError(f"{what} diverged{f' at {at}' if at else ''} (loss {loss})"
                          f"{f' with {setting}' if setting else ''}", fix)
