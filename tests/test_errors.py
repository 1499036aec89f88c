"""Errors: the CLI prints problem and fix on one line; a Python caller reading str(e) gets the flag translated."""

from __future__ import annotations

import pytest

from netinv import ConfigError, DivergedError, TrainConfig
from netinv.cli._errors import format_error


def test_a_fix_that_names_a_flag_says_its_python_name_outside_the_cli():
    e = ConfigError("device 'cuda' requested but no CUDA GPU is available", "use --device cpu or auto")
    assert str(e).endswith("— use --device cpu or auto (from Python: --device is device, as an argument or a config "
                           "field)")
    assert format_error(e) == "error: device 'cuda' requested but no CUDA GPU is available — use --device cpu or auto"
    assert str(ConfigError("bad", "see netinv train --help")) == "bad — see netinv train --help"  # not a setting
    assert str(ConfigError("bad", "give e.g. --lr-x 0.01")).endswith("--lr-x is lr_x, as an argument or a config "
                                                                     "field)")
    with pytest.raises(ConfigError, match=r"from Python: --epochs is epochs"):
        TrainConfig(epochs=0).validate()


def test_divergence_is_its_own_config_error():
    from netinv._errors import check_finite_loss

    with pytest.raises(DivergedError, match="the attack diverged at iteration 3 \\(loss nan\\)") as info:
        check_finite_loss(float("nan"), "the attack", "lower lr_x", at="iteration 3")
    assert isinstance(info.value, ConfigError)
    check_finite_loss(1.0, "the attack", "lower lr_x")  # a finite loss passes
