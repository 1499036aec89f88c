"""load_data dispatch and task views (make_task / parse_task) on the offline digits set."""

from __future__ import annotations

import pytest
import torch

from netinv._errors import ConfigError, DataError
from netinv.data import SOURCES, load_data, make_task, parse_task


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_digits(digits):
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == torch.float32
    assert float(digits.x.min()) == 0.0 and float(digits.x.max()) == 1.0
    assert digits.classes == [str(i) for i in range(10)]
    assert digits.source["load_args"]["name"] == "digits"


def test_dispatch_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data source 'imagenet'") as e:
        load_data("imagenet")
    assert all(s in e.value.fix for s in SOURCES)
    for name in ("npz", "folder"):
        with pytest.raises(DataError, match=f"source '{name}' needs a path"):
            load_data(name)
    # the downloadable sources reach their loaders, which name the missing files under root
    with pytest.raises(DataError, match="mnist test files missing: t10k-images"):
        load_data("mnist", root=tmp_path, split="test")
    with pytest.raises(DataError, match="FashionMNIST"):
        load_data("fashion-mnist", root=tmp_path)
    with pytest.raises(DataError, match="cifar10 train files missing"):
        load_data("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="no npz file"):
        load_data(str(tmp_path / "nothing.npz"))


def _check_rows(split, data):
    """Each row of a split is the source row its recorded index points at."""
    idx = torch.tensor(split.indices)
    assert torch.equal(split.x, data.x[idx])
    return idx


def test_parity_balanced_disjoint_indexed(digits):
    ts = make_task(digits, "parity", n_per_class=30, heldout_per_class=20, seed=1)
    assert ts.train.classes == ["even", "odd"] and ts.heldout.classes == ["even", "odd"]
    assert torch.bincount(ts.train.y).tolist() == [30, 30]
    assert torch.bincount(ts.heldout.y).tolist() == [20, 20]
    tr, ho = _check_rows(ts.train, digits), _check_rows(ts.heldout, digits)
    assert not set(tr.tolist()) & set(ho.tolist())
    assert torch.equal(ts.train.y, digits.y[tr] % 2) and torch.equal(ts.heldout.y, digits.y[ho] % 2)
    assert ts.task["seed"] == 1 and ts.task["groups"] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert ts.train.source["split"] == "train" and ts.heldout.source["split"] == "heldout"


def test_seed_determinism(digits):
    a = make_task(digits, "parity", n_per_class=10, heldout_per_class=5, seed=7)
    b = make_task(digits, "parity", n_per_class=10, heldout_per_class=5, seed=7)
    c = make_task(digits, "parity", n_per_class=10, heldout_per_class=5, seed=8)
    assert a.train.indices == b.train.indices and a.heldout.indices == b.heldout.indices
    assert a.train.indices != c.train.indices


def test_classes_form(digits):
    ts = make_task(digits, "classes:5,1,9", n_per_class=4, heldout_per_class=3)
    assert ts.train.classes == ["5", "1", "9"]
    tr = _check_rows(ts.train, digits)
    original = torch.tensor([5, 1, 9])[ts.train.y]  # new label k is source class [5, 1, 9][k]
    assert torch.equal(original, digits.y[tr]) and torch.bincount(ts.train.y).tolist() == [4, 4, 4]
    assert set(digits.y[_check_rows(ts.heldout, digits)].tolist()) == {1, 5, 9}


def test_groups_form(digits):
    ts = make_task(digits, "groups:0,2,4/1,3,5", n_per_class=6, heldout_per_class=2, seed=3)
    assert ts.train.classes == ["0+2+4", "1+3+5"]
    tr = _check_rows(ts.train, digits)
    assert set(digits.y[tr].tolist()) <= {0, 1, 2, 3, 4, 5}
    assert torch.equal(ts.train.y, digits.y[tr] % 2)
    assert parse_task("groups:0,2,4/1,3,5", digits.classes) == (["0+2+4", "1+3+5"], [[0, 2, 4], [1, 3, 5]])


def test_default_sizes_hold_out_a_fifth(digits):
    ts = make_task(digits, "all")
    assert len(ts.train) + len(ts.heldout) == len(digits)
    counts = torch.bincount(digits.y)
    assert torch.equal(torch.bincount(ts.heldout.y, minlength=10), counts // 5)
    assert not set(ts.train.indices) & set(ts.heldout.indices)
    # with n_per_class alone, every remaining row of the class is held out
    ts = make_task(digits, "classes:0,1", n_per_class=100)
    assert len(ts.heldout) == int(counts[0] + counts[1]) - 200


@pytest.mark.parametrize("task, match", [
    ("nonsense", "unknown task 'nonsense'"),
    ("classes:", "unknown task"),
    ("classes:0,12", "class '12' is not in this data set"),
    ("groups:0,1,2", "two or more disjoint groups"),
    ("groups:0,1/1,2", "two or more disjoint groups"),
    ("vehicles-animals", "does not fit classes"),
])
def test_bad_task_strings(digits, task, match):
    with pytest.raises(ConfigError, match=match):
        make_task(digits, task)


def test_too_many_per_class(digits):
    with pytest.raises(DataError, match="class 'even' has .* rows, 2000 \\+ .* were asked for"):
        make_task(digits, "parity", n_per_class=2000)
    with pytest.raises(DataError, match="held out were asked for"):
        make_task(digits, "classes:0", n_per_class=150, heldout_per_class=100)
