"""Data sources behind one call, :func:`load_data`, all returning :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

import torch

from .._errors import DataError, first_line
from ._dataset import Dataset
from .tasks import TaskSplit, make_task, parse_task, task_view

#: source name -> one-line description (``netinv data list``).
SOURCES: dict[str, str] = {
    "digits": "scikit-learn's bundled 8×8 digits, 1 797 images, offline",
    "mnist": "MNIST IDX files in <root>/MNIST/raw (torchvision layout), download with md5 check",
    "fashion-mnist": "Fashion-MNIST IDX files in <root>/FashionMNIST/raw, download with md5 check",
    "cifar10": "CIFAR-10 python batches in <root>/cifar-10-batches-py, restricted unpickler",
    "npz": "an .npz with arrays x (N×C×H×W or N×D, in [0,1]) and y (int labels); --path FILE",
    "folder": "one sub-folder per class of image files (Pillow); --path DIR",
}


def default_root() -> Path:
    """Where downloads go: ``$NETINV_DATA`` or ``~/.cache/netinv``."""
    import os

    return Path(os.environ.get("NETINV_DATA", Path.home() / ".cache" / "netinv"))


def load_data(name: str = "digits", *, root: str | Path | None = None, path: str | Path | None = None,
              split: str = "train", download: bool = False, check_md5: bool = False,
              relabel: bool = True) -> Dataset:
    """Load a data set by source name.

    Args:
        name: one of :data:`SOURCES`. Default: ``digits``.
        root: folder of downloaded data (mnist, fashion-mnist, cifar10). Default: :func:`default_root`.
        path: the file or folder for ``npz`` and ``folder``; a path ending in ``.npz`` also works as ``name``.
        split: ``train`` or ``test`` where the source has both (digits has one split).
        download: fetch missing files (with checksum) when a network exists.
        check_md5: compare every file read with its published md5 before reading it (``cifar10``, whose batches
            have published checksums; any other source refuses it rather than skip the check).
        relabel: ``npz`` and ``folder``: map labels that are not 0..k−1 (folder names: their sorted order) onto
            0..k−1, a new task, as for training. False keeps them as the class indices of a given model (integer
            folder names): what member / non-member files of a model need (:func:`load_model_data`).

    Returns:
        A :class:`Dataset` whose ``source['load_args']`` reloads it (checkpoints record it, ``check_md5`` included
        when set).

    Raises:
        DataError: an unknown source, missing/corrupt files (the message says what to put where), a file that does
            not match its md5, or ``check_md5`` for a source without published checksums.
    """
    if path is None and str(name).endswith(".npz"):
        name, path = "npz", name
    if check_md5 and name not in _MD5_SOURCES:
        raise DataError(f"--check-md5 applies to {', '.join(_MD5_SOURCES)} only, not to source {name!r}",
                        "drop --check-md5 (downloads are md5-checked anyway)")
    ds = _load(name, root=root, path=path, split=split, download=download, check_md5=check_md5, relabel=relabel)
    ds.source["load_args"] = {"name": name, "root": str(Path(root).resolve()) if root is not None else None,
                              "path": str(Path(path).resolve()) if path is not None else None, "split": split}
    if check_md5:
        ds.source["load_args"]["check_md5"] = True
    if not relabel:
        ds.source["load_args"]["relabel"] = False
    return ds


def load_model_data(data: str | Path | Dataset) -> Dataset:
    """A given model's members or non-members: an ``.npz`` file or a class-folder tree whose labels are the
    model's own class indices, kept as they are (``relabel=False``); a :class:`Dataset` is returned unchanged.

    Raises:
        DataError: a missing or unreadable file, labels that are not class indices.
    """
    if isinstance(data, Dataset):
        return data
    if not isinstance(data, str | Path):
        raise DataError(f"got a {type(data).__name__} for a data set",
                        "pass a Dataset (e.g. Dataset(x, y, classes, {})) or the path of an npz / class folder")
    p = Path(data)
    return load_data("folder" if p.is_dir() else "npz", path=p, relabel=False)


def split_from_record(record: dict) -> TaskSplit:
    """Rebuild the members / non-members of a checkpoint's ``meta['data']`` (reloads the source, same indices; files
    the record names are read, never downloaded: fetch them yourself with ``netinv data show NAME --download``).

    Raises:
        DataError: the record is incomplete or does not fit its source (an edited or foreign checkpoint), or the
            source does not load.
    """
    fix = "give the sets yourself (--train T.npz --heldout H.npz), or restore the checkpoint's meta.json"
    try:
        args = dict(record["load_args"])
        unknown = set(args) - {"name", "root", "path", "split", "download", "check_md5", "relabel"}
        if unknown:
            raise ValueError(f"unknown load_args {sorted(unknown)}")
        args["download"] = False  # a record is data from anyone: it never makes netinv fetch files to where it says
        task = record["task"].get("task")
        src = load_data(**args)
        names, groups = parse_task(task, src.classes)
        lut = torch.full((src.num_classes,), 0, dtype=torch.int64)
        for new, g in enumerate(groups):
            lut[torch.tensor(g)] = new
        data = src if task in (None, "all") else src.relabel(lut[src.y], names)  # rows stay where the indices say
        idx = {k: [int(i) for i in record[k]] for k in ("train_indices", "heldout_indices")}
        bad = [i for v in idx.values() for i in v if not 0 <= i < len(data)]
        if bad:
            raise ValueError(f"index {bad[0]} outside the {len(data)} rows of its source")
        return TaskSplit(data.subset(idx["train_indices"], split="train"),
                         data.subset(idx["heldout_indices"], split="heldout"), record["task"])
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"the checkpoint's record of its data is unusable: {first_line(e)}", fix) from None


#: the sources whose files have published md5 checksums (``load_data(check_md5=True)``)
_MD5_SOURCES = ("cifar10",)


def _load(name: str, *, root: str | Path | None, path: str | Path | None, split: str, download: bool,
          check_md5: bool = False, relabel: bool = True) -> Dataset:
    rootp = Path(root) if root is not None else default_root()
    if name in SOURCES and split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}", "use train or test")
    if split != "train" and name in ("digits", "npz", "folder"):
        raise DataError(f"{name} has one split, not {split!r}", "drop --split (netinv makes the held-out split)")
    if name == "digits":
        from .digits import load_digits

        return load_digits()
    if name in ("mnist", "fashion-mnist"):
        from .mnist import load_mnist

        return load_mnist(rootp, split=split, variant=name, download=download)
    if name == "cifar10":
        from .cifar10 import load_cifar10

        return load_cifar10(rootp, split=split, download=download, check_md5=check_md5)
    if name in ("npz", "folder"):
        if path is None:
            raise DataError(f"source {name!r} needs a path", "pass --path FILE_OR_DIR")
        if name == "npz":
            from .npz import load_npz

            return load_npz(Path(path), relabel=relabel)
        from .folder import load_folder

        return load_folder(Path(path), relabel=relabel)
    raise DataError(f"unknown data source {name!r}", f"use one of: {', '.join(SOURCES)}")


__all__ = ["SOURCES", "Dataset", "TaskSplit", "default_root", "load_data", "load_model_data", "make_task",
           "parse_task", "split_from_record", "task_view"]
