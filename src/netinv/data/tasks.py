"""Task views: binary groupings, class subsets, a balanced training set of n per class and disjoint held-out
non-members (the evaluation needs them), all chosen by seed with the exact indices recorded."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .._errors import ConfigError, DataError
from ._dataset import Dataset

#: Named binary groupings: task name -> (group names, class-name groups) for the sources they fit.
NAMED_TASKS: dict[str, tuple[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "parity": (("even", "odd"), (("0", "2", "4", "6", "8"), ("1", "3", "5", "7", "9"))),
    "vehicles-animals": (("vehicle", "animal"), (("airplane", "automobile", "ship", "truck"),
                                                 ("bird", "cat", "deer", "dog", "frog", "horse"))),
}


@dataclass
class TaskSplit:
    """A training set (members) and a disjoint held-out set (non-members) of the same task."""

    train: Dataset
    heldout: Dataset
    task: dict[str, Any]


def parse_task(task: str | None, classes: list[str]) -> tuple[list[str], list[list[int]]]:
    """Resolve a task string to (new class names, list of source-class groups).

    Forms: ``None``/``all`` (every class), ``parity``, ``vehicles-animals``, ``classes:0,1,5`` (a subset, relabelled
    0..k-1) and ``groups:0,2,4/1,3,5`` (any grouping; each ``/``-separated group becomes one class).
    """
    by_name = {c: i for i, c in enumerate(classes)}

    def idx(tok: str) -> int:
        tok = tok.strip()
        if tok in by_name:
            return by_name[tok]
        if tok.isdigit() and int(tok) < len(classes):
            return int(tok)
        raise ConfigError(f"class {tok!r} is not in this data set", f"use indices 0..{len(classes) - 1} or names")

    if task is None or task == "all":
        return list(classes), [[i] for i in range(len(classes))]
    if task in NAMED_TASKS:
        names, groups = NAMED_TASKS[task]
        try:
            return list(names), [[by_name[c] for c in g] for g in groups]
        except KeyError:
            raise ConfigError(f"task {task!r} does not fit classes {classes[:4]}...",
                              "use groups:A,B/C,D to group this data set's classes") from None
    kind, _, spec = task.partition(":")
    if kind == "classes" and spec:
        ids = [idx(t) for t in spec.split(",")]
        return [classes[i] for i in ids], [[i] for i in ids]
    if kind == "groups" and spec:
        groups = [[idx(t) for t in g.split(",")] for g in spec.split("/")]
        flat = [i for g in groups for i in g]
        if len(groups) < 2 or len(set(flat)) != len(flat):
            raise ConfigError(f"task {task!r} needs two or more disjoint groups", "write groups:0,2,4/1,3,5")
        return ["+".join(classes[i] for i in g) for g in groups], groups
    raise ConfigError(f"unknown task {task!r}",
                      "use all, parity, vehicles-animals, classes:0,1,2 or groups:0,2/1,3")


def task_view(data: Dataset, task: str | None) -> Dataset:
    """``data`` relabelled for ``task`` (the class indices a model trained on that task predicts); rows of classes
    outside the task are left out.

    Example:
        >>> from netinv.data import load_data
        >>> v = task_view(load_data("digits"), "classes:3,7")
        >>> v.classes, sorted(set(v.y.tolist())), len(v)
        (['3', '7'], [0, 1], 362)
    """
    if task in (None, "all"):
        return data
    names, groups = parse_task(task, data.classes)
    lut = torch.full((data.num_classes,), -1, dtype=torch.int64)
    for new, g in enumerate(groups):
        lut[torch.tensor(g)] = new
    new_y = lut[data.y]
    view = data.relabel(new_y.clamp_min(0), names, task=task)
    keep = torch.nonzero(new_y >= 0).flatten()
    return view if len(keep) == len(data) else view.subset(keep)


def make_task(data: Dataset, task: str | None = None, *, n_per_class: int | None = None,
              heldout_per_class: int | None = None, seed: int = 0) -> TaskSplit:
    """Relabel ``data`` for ``task``, draw ``n_per_class`` members per task class and disjoint held-out non-members.

    Args:
        data: the source data set.
        task: see :func:`parse_task`.
        n_per_class: members per task class (``None``: all but the held-out share, see below).
        heldout_per_class: non-members per task class (``None``: every remaining row of the task's classes; when
            ``n_per_class`` is also ``None``, one fifth of each class is held out).
        seed: chooses the rows.

    Returns:
        TaskSplit whose datasets record their indices into ``data`` in ``source['indices']``.

    Raises:
        DataError: a class has fewer rows than asked for.
    """
    names, groups = parse_task(task, data.classes)
    lut = torch.full((data.num_classes,), -1, dtype=torch.int64)
    for new, g in enumerate(groups):
        lut[torch.tensor(g)] = new
    new_y = lut[data.y]
    gen = torch.Generator().manual_seed(seed)
    train_idx, held_idx = [], []
    for c in range(len(names)):
        rows = torch.nonzero(new_y == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_tr = n_per_class if n_per_class is not None else len(rows) - len(rows) // 5
        # max(.., 0): a negative remainder would let n_tr > len(rows) pass the check below and silently shrink
        n_ho = heldout_per_class if heldout_per_class is not None else max(len(rows) - n_tr, 0)
        if n_tr <= 0 or n_ho < 0:
            raise DataError(f"{n_tr} members and {n_ho} held out per class were asked for",
                            "give --n-per-class >= 1 and --heldout-per-class >= 0")
        if n_tr + n_ho > len(rows):
            raise DataError(f"class {names[c]!r} has {len(rows)} rows, {n_tr} + {n_ho} held out were asked for",
                            "lower --n-per-class / --heldout-per-class")
        train_idx.append(rows[:n_tr])
        held_idx.append(rows[n_tr:n_tr + n_ho])
    tr = torch.sort(torch.cat(train_idx)).values
    ho = torch.sort(torch.cat(held_idx)).values
    if len(ho) < 2:  # training works, but nothing can measure leakage or held-out accuracy on this split
        warnings.warn(f"the split leaves {len(ho)} held-out images (non-members): the leakage evaluation needs "
                      "at least two; lower --n-per-class or give more data", UserWarning, stacklevel=2)
    info = {"task": task or "all", "classes": names, "groups": groups, "seed": seed, "n_per_class": n_per_class,
            "heldout_per_class": heldout_per_class}
    # rows of classes outside the task map to -1 and are never drawn; clamp keeps the labels valid
    relabelled = data if task in (None, "all") else data.relabel(new_y.clamp(min=0), names, task=info["task"])
    return TaskSplit(relabelled.subset(tr, split="train"), relabelled.subset(ho, split="heldout"), info)
