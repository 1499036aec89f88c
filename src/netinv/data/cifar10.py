"""CIFAR-10 from the python batches in ``<root>/cifar-10-batches-py``, read through a restricted unpickler.

Each batch is a pickled dict with ``b'data'`` (uint8, N×3072, channel-major 3×32×32 rows) and ``b'labels'``;
``batches.meta`` holds ``b'label_names'``. The download is md5-checked and extracted without path traversal.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from .._errors import DataError
from ._dataset import Dataset
from ._download import fetch_file, file_md5
from ._safe_unpickle import safe_load

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
# batch md5s as published in torchvision's CIFAR10 train_list / test_list / meta
MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
       "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
       "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
       "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _extract(tgz: Path, root: Path) -> None:
    """Extract only files and folders under ``cifar-10-batches-py/`` (no links, no ``..``, no absolute)."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                p = PurePosixPath(m.name)
                inside = not p.is_absolute() and ".." not in p.parts and p.parts[:1] == (FOLDER,)
                if not inside or not (m.isfile() or m.isdir()):
                    raise DataError(f"unsafe or unexpected entry {m.name!r} in {tgz}",
                                    "delete it and re-download")
                members.append(m)
            tar.extractall(root, members=members, filter="data")  # the 'data' filter re-checks the same rules
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot extract {tgz}: {e}", "delete it and re-download") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N×3072 data, int64 N labels) of one batch, validated."""
    d: Any = safe_load(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path} is not a CIFAR-10 batch (no b'data'/b'labels')", "re-download the data set")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' is not a uint8 N×3072 array", "re-download the data set")
    try:
        raw = np.asarray(labels)
        if raw.dtype.kind not in "iu":  # floats such as 2.9 would be truncated to 2
            raise TypeError(f"labels of dtype {raw.dtype}")
        y = raw.astype(np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: b'labels' are not integers", "re-download the data set") from None
    if y.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {y.size} labels", "re-download the data set")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels outside 0..9", "re-download the data set")
    return data, y


def _label_names(path: Path) -> list[str]:
    d: Any = safe_load(path)
    names = d.get(b"label_names") if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{path} has no list of 10 b'label_names'", "re-download the data set")
    return [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(root: Path, split: str = "train", download: bool = False,
                 check_md5: bool = False) -> Dataset:
    """Load one split of CIFAR-10 as N×3×32×32 images in [0, 1].

    Args:
        root: data folder holding ``cifar-10-batches-py``.
        split: ``train`` (data_batch_1..5, 50 000 images) or ``test`` (test_batch, 10 000).
        download: fetch and extract cifar-10-python.tar.gz (md5-checked) when batches are missing.
        check_md5: also compare each batch file with its published md5.

    Raises:
        DataError: unknown split, missing or corrupt files, a pickle naming anything but numpy, a failed
            download.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for cifar10", "use train or test")
    root = Path(root)
    folder = root / FOLDER
    names = SPLITS[split]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and download:
        tgz = root / "cifar-10-python.tar.gz"
        if not tgz.is_file() or file_md5(tgz) != TGZ_MD5:
            try:
                fetch_file([URL], tgz, TGZ_MD5)
            except DataError as e:
                if not tgz.is_file():
                    raise
                raise DataError(f"{tgz} does not match the published md5 {TGZ_MD5}, and downloading a fresh copy "
                                f"failed ({e.problem})", f"replace it with the original archive from {URL}") from None
        _extract(tgz, root)
        missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"cifar10 {split} files missing in {folder}: {', '.join(missing)}",
                        f"extract cifar-10-python.tar.gz ({URL}) into {root}, or rerun with --download")
    meta = folder / "batches.meta"
    if check_md5:
        for n in names + (["batches.meta"] if meta.is_file() else []):
            if file_md5(folder / n) != MD5[n]:
                raise DataError(f"{folder / n} does not match the published md5 {MD5[n]}",
                                "delete it and re-download")
    batches = [_read_batch(folder / n) for n in names]
    x = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)  # rows are R, G, B planes of 32×32
    y = np.concatenate([b[1] for b in batches])
    # the real archive always has batches.meta; without it the names are CIFAR-10's fixed, documented ones
    classes = _label_names(meta) if meta.is_file() else list(CLASSES)
    src = {"name": "cifar10", "split": split, "root": str(root), "files": [str(folder / n) for n in names],
           "label_names": str(meta) if meta.is_file() else "built-in"}
    xf = x.astype(np.float32)
    xf /= 255.0  # in place: one float copy of the images, not two
    return Dataset(torch.from_numpy(xf), torch.from_numpy(y), classes, src)
