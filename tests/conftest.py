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


class FixedBatchCNN(torch.nn.Module):
    """``x.view(x.shape[0], -1)`` bakes the example's batch size into a statically exported graph (the loader then
    chunks inputs to that batch)."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.conv, self.fc1, self.fc2 = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).view(x.shape[0], -1)
        return self.fc2(torch.relu(self.fc1(h)))


@pytest.fixture
def fixed_batch_cnn() -> type[FixedBatchCNN]:
    """The class of a small CNN whose static export is tied to its example batch (shared by the export tests)."""
    return FixedBatchCNN
