"""MNIST / Fashion-MNIST IDX files, torchvision layout (``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``).

The IDX header is checked in full (magic number, dimensions, file size, image/label counts) so a corrupt or
mislabelled file is reported instead of being read as wrong data. Downloads are md5-checked and written
atomically.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError
from ._dataset import Dataset
from ._download import fetch_file

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MIRRORS = {"mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
           "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)}
# md5 of the .gz files, as published in torchvision's MNIST / FashionMNIST ``resources``.
MD5 = {
    "mnist": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    "fashion-mnist": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
}
CLASSES = {"mnist": [str(i) for i in range(10)],
           "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                             "Sneaker", "Bag", "Ankle boot"]}


def _read_at_most(f: Any, n: int, chunk: int = 1 << 24) -> bytes:
    """Up to ``n`` bytes in 16 MiB pieces (``f.read(n)`` would allocate ``n`` bytes up front for a forged header)."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file (gzipped when ``path`` ends in .gz) whose header must carry ``magic``; uint8 array."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            head = f.read(4 + 4 * 4)  # the magic number and at most four dimensions
            ndim = head[3] if len(head) >= 4 else 0
            dims = [int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(min(ndim, 4))]
            # never read more than the header promises (+1 byte to notice a longer file): a small forged .gz must
            # not decompress into gigabytes before its size is checked
            body = _read_at_most(f, max(math.prod(dims) + 4 * ndim + 4 - len(head), 0) + 1) if len(head) >= 4 else b""
        raw = head + body
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncated gzip is an EOFError
        raise DataError(f"cannot read {path}: {e}", "re-download the file") from None
    kind = "image" if magic == IMAGES_MAGIC else "label"
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "(file too short)"
        raise DataError(f"wrong IDX magic number {found} in {path} — the file is not an MNIST {kind} file",
                        "re-download it")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header", "re-download it")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)  # Python ints: a forged header cannot overflow
    if len(raw) != expected:
        size = f"{len(raw)} bytes" if len(raw) < expected else "more bytes"
        raise DataError(f"{path} has {size} but its IDX header {dims} needs {expected}",
                        "the file is truncated or corrupt; re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(raw_dir: Path, name: str) -> Path | None:
    """The uncompressed file if present (faster to read), else the .gz, else None."""
    for p in (raw_dir / name, raw_dir / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def load_mnist(root: Path, split: str = "train", variant: str = "mnist", download: bool = False) -> Dataset:
    """Load one split of MNIST or Fashion-MNIST as N×1×28×28 images in [0, 1].

    Args:
        root: data folder; the files live in ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``.
        split: ``train`` (60 000 images) or ``test`` (10 000).
        variant: ``mnist`` or ``fashion-mnist``.
        download: fetch missing files from the standard mirrors (md5-checked).

    Raises:
        DataError: unknown split/variant, missing files (the message names them), corrupt files, a failed
            download.
    """
    if variant not in FOLDERS:
        raise DataError(f"unknown MNIST variant {variant!r}", f"use one of: {', '.join(FOLDERS)}")
    if split not in FILES:
        raise DataError(f"unknown split {split!r} for {variant}", "use train or test")
    raw_dir = Path(root) / FOLDERS[variant] / "raw"
    names = FILES[split]
    if download:
        for name in names:
            if _find(raw_dir, name) is None:
                gz = f"{name}.gz"
                fetch_file([m + gz for m in MIRRORS[variant]], raw_dir / gz, MD5[variant][gz])
    paths = [_find(raw_dir, n) for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if p is None]
    if missing:
        listed = ", ".join(f"{n}.gz" for n in missing)
        raise DataError(f"{variant} {split} files missing: {listed} (gzipped or not) in {raw_dir}",
                        f"put {listed} in {raw_dir}, or rerun with --download")
    img_path, lab_path = paths
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lab_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{img_path} holds {images.shape[1]}×{images.shape[2]} images, not 28×28",
                        "use the original MNIST files")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images in {img_path} but {len(labels)} labels in {lab_path}",
                        "the two files belong to different sets; re-download both")
    if labels.size and labels.max() > 9:
        raise DataError(f"label {int(labels.max())} in {lab_path} is not a class 0..9",
                        "re-download the file")
    x = images.astype(np.float32)
    x /= 255.0  # in place: one float copy of the images, not two
    x = torch.from_numpy(x).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    src = {"name": variant, "split": split, "root": str(root), "files": [str(img_path), str(lab_path)]}
    return Dataset(x, y, list(CLASSES[variant]), src)
