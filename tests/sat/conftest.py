"""Fixtures for the SAT tests: a BNN trained on digits (once per session) and small hand-made BNNs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def digits_all():
    from netinv.data import load_data, make_task

    return make_task(load_data("digits"), "all", seed=0)


@pytest.fixture(scope="session")
def bnn_digits(digits_all, tmp_path_factory):
    """A 64-32-10 BNN trained on digits with netinv.train; returns (LoadedModel, checkpoint dir)."""
    from netinv.train import TrainConfig, train

    out = tmp_path_factory.mktemp("bnn") / "ckpt"
    cfg = TrainConfig(optimizer="adam", loss="ce", batch_size=128, lr=2e-2, epochs=10, log_every=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is ~10x faster than two on the shared, loaded machine
    try:
        model = train(digits_all, "bnn:32", cfg, out=out, device="cpu", show_progress=False)
    finally:
        torch.set_num_threads(threads)
    return model, out
