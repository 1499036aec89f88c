"""Shared fixtures: seeded runs, a small digits task and a small trained victim (session-scoped, trained once)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("NETINV_PROGRESS", "0")  # no progress bars in test logs
torch.set_num_threads(1)  # small ops: one thread is faster and immune to a busy machine


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits_parity():
    from netinv.data import load_data, make_task

    return make_task(load_data("digits"), "parity", n_per_class=20, heldout_per_class=40, seed=0)


@pytest.fixture(scope="session")
def parity_victim(digits_parity, tmp_path_factory):
    """A bias-free 64-64-1 MLP trained to zero training error on 40 digits; returns (model, checkpoint dir)."""
    from netinv.train import TrainConfig, train

    out = tmp_path_factory.mktemp("victim") / "ckpt"
    model = train(digits_parity, "mlp:64", TrainConfig(lr=0.2, epochs=3000, target_loss=1e-2), out=out, bias="none",
                  device="cpu", show_progress=False)
    return model, out
