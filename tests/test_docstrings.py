"""Every docstring example in the package runs and prints what it shows (an example that drifts is a wrong doc)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import netinv

MODULES = sorted(m.name for m in pkgutil.walk_packages(netinv.__path__, "netinv.")
                 if not m.name.startswith("netinv.cli") and m.name != "netinv.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional dependency (pysat, optuna) that this machine lacks
        pytest.skip(f"{name}: {e}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail"
