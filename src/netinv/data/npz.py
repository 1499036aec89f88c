"""A data set from an ``.npz`` file: array ``x`` (inputs), ``y`` (integer labels) and optionally ``classes``.

Layouts of ``x``: N×C×H×W; N×H×W (one channel added); N×H×W×C, read as channels-last only when it is
unambiguous (last axis 1 or 3 and axis 1 neither); N×D tabular rows. uint8 is divided by 255 (refused when its
maximum is 16 or less, as for 0/1 masks or digits stored raw: store x / max as float; a warning below 64); floats
must already lie in [0, 1] (a model on another range gets them mapped onto its ``input_range`` by
:meth:`netinv.models.LoadedModel.from_unit`). ``y``: N integer labels (an N×1 column is accepted). Loaded with
``allow_pickle=False``, so an object array is refused instead of unpickled.
"""

from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError, first_line
from ._dataset import Dataset

MAX_INFLATED_BYTES = 1 << 33  # 8 GiB: an npz that inflates beyond this is refused before it is read
MAX_CLASS_INDEX = 1 << 20  # a model's class index above this is a corrupt or forged label, not a class


def numpy_file_kind(path: str | Path) -> str | None:
    """``npz`` (a zip archive), ``npy`` (one array) or None by the file's first bytes: numpy itself calls any other
    file "pickled data", which misdescribes it."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    return "npz" if magic.startswith(b"PK\x03\x04") else "npy" if magic.startswith(b"\x93NUMPY") else None


def _check_inflated_size(infos: list[zipfile.ZipInfo], path: Path) -> None:
    """Refuse an npz whose arrays would inflate beyond :data:`MAX_INFLATED_BYTES` (read from the zip directory, before
    anything is decompressed): a few MB of compressed zeros can hold gigabytes."""
    inflated, packed = sum(i.file_size for i in infos), sum(i.compress_size for i in infos)
    if inflated > MAX_INFLATED_BYTES:
        raise DataError(f"{path} inflates to {inflated / 2**30:.1f} GiB from {packed / 2**20:.1f} MiB, more than "
                        f"netinv reads ({MAX_INFLATED_BYTES / 2**30:.0f} GiB)", "split the data set, or check the "
                        "file: a small archive holding gigabytes is usually not image data")


def read_arrays(path: str | Path, *, what: str = "file", allow_npy: bool = False, keys: tuple[str, ...] | None = None,
                fix: str = "save it with np.savez (numeric arrays, no pickles)") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (``keys``: only those present of these; default all) — with ``allow_npy``, the one
    array of an ``.npy`` under the key ``""`` — read without unpickling: the one reader behind every npz netinv takes
    (data sets, candidates, warm starts, sweep pools, SAT inputs, plain BNNs), so a missing, truncated, pickled or
    inflating file is the same one-line error everywhere. Each array's header is checked against the bytes that
    hold it before anything is allocated (a 200-byte file may claim 10¹¹ values).

    Raises:
        DataError: ``what`` at ``path`` is missing, not a numpy file, corrupt, holds object arrays or a member that
            is not an array, or would inflate beyond :data:`MAX_INFLATED_BYTES`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no {what} at {path}", "check the path: it should name an existing file")
    kind = numpy_file_kind(path)
    if kind is None or (kind == "npy" and not allow_npy):
        raise DataError(f"{what} {path} is " + ("a single .npy array, not an npz" if kind == "npy" else
                                                "not an npz file (it is neither a zip archive nor a .npy array)"), fix)
    try:
        if kind == "npy":
            with open(path, "rb") as fh:
                _check_header(fh, path.stat().st_size, what, path, fix)
            return {"": np.load(path, allow_pickle=False)}
        with zipfile.ZipFile(path) as z:  # the directory and each array's header, before numpy reads anything
            _check_inflated_size(z.infolist(), path)
            for info in z.infolist():
                if keys is None or info.filename.removesuffix(".npy") in keys:
                    with z.open(info) as fh:
                        _check_header(fh, info.file_size, what, path, fix, info.filename)
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in f.files if keys is None or k in keys}
    except ValueError as e:  # allow_pickle=False: numpy refuses object arrays and pickles, never runs them
        msg = first_line(e, 120)
        if "allow_pickle" in msg or "pickle" in msg.lower():
            raise DataError(f"{what} {path} holds object arrays, which cannot be read without unpickling", fix) \
                from None
        raise DataError(f"cannot read {what} {path}: {msg}", fix) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError) as e:
        raise DataError(f"cannot read {what} {path}: {first_line(e, 120) or type(e).__name__}", fix) from None
    bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise DataError(f"{what} {path}: member {bad[0]!r} is not a numpy array", fix)
    return out


def _check_header(fh: Any, size: int, what: str, path: Path, fix: str, member: str = "") -> None:
    """Refuse a .npy (or npz member) whose header claims more bytes than the file holds: a forged shape would
    otherwise be allocated before numpy notices the data is missing."""
    if not member.endswith(".npy") and member:
        return  # not an array: reported after loading
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    except ValueError:
        return  # numpy's own load reports a malformed header below
    if dtype.hasobject:
        return  # refused by allow_pickle=False below, with its own message
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > size:
        raise DataError(f"{what} {path}{f' ({member})' if member else ''} claims an array of shape {shape} "
                        f"({claimed / 2**20:.3g} MiB) in {size} bytes: truncated or forged", fix)


def _inputs(x: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """x as float32 in [0, 1] with its layout normalised to N×C×H×W or N×D, and the layout it had."""
    if x.dtype == np.uint8:
        if x.size and 0 < int(x.max()) <= 16:  # 0/1 masks, scikit-learn's digits (0..16) stored as uint8
            raise DataError(f"x in {path} is uint8 with maximum {int(x.max())}: uint8 is read as 0..255, so these "
                            f"images would enter at {int(x.max())}/255 of full scale",
                            f"store x / {int(x.max())} as float32 in [0, 1] if {int(x.max())} is its full scale")
        if x.size and int(x.max()) < 64:  # 8-bit images whose brightest pixel is below a quarter of full scale
            warnings.warn(f"x in {path} is uint8 with maximum {int(x.max())}, read as {int(x.max())}/255 of full "
                          f"scale: if {int(x.max())} is its full scale, store x / {int(x.max())} as float32 in [0, 1]",
                          UserWarning, stacklevel=3)
        xf = x.astype(np.float32) / 255.0
    elif x.dtype.kind == "f":
        xf = x.astype(np.float32)
        finite = np.isfinite(xf)
        if not finite.all():
            raise DataError(f"x in {path} has {int((~finite).sum())} NaN or infinite values", "remove or repair them")
        bad = (xf < 0) | (xf > 1)
        if bad.any():
            example, hi = float(xf[bad].flat[0]), float(xf.max())
            scale = ("(x + 1) / 2 for [-1, 1] data" if float(xf.min()) < 0 else
                     "x / 255 for 0..255 data" if hi > 16 else f"x / {hi:g} if that is its full scale")
            raise DataError(f"x in {path} has {int(bad.sum())} values outside [0, 1] (e.g. {example:g})",
                            f"rescale x to [0, 1] (e.g. {scale}) or store 8-bit images as "
                            "uint8; for a model on another range give its --input-range LO,HI, and netinv maps [0, 1] "
                            "onto it")
    else:
        raise DataError(f"x in {path} has dtype {x.dtype}", "store x as uint8 (0..255) or float in [0, 1]")
    if xf.ndim == 2:
        return xf, "N×D"
    if xf.ndim == 3:
        return xf[:, None], "N×H×W"
    if xf.ndim == 4:
        # channels-last only when unambiguous: N×32×32×3 is HWC, N×3×32×32 (or N×3×32×3) stays CHW
        if xf.shape[3] in (1, 3) and xf.shape[1] not in (1, 3):
            return np.ascontiguousarray(xf.transpose(0, 3, 1, 2)), "N×H×W×C"
        return xf, "N×C×H×W"
    raise DataError(f"x in {path} has shape {x.shape}", "give x as N×C×H×W, N×H×W, N×H×W×C or N×D")


def _labels(y: np.ndarray, n: int, classes: list[str] | None, path: Path,
            relabel: bool = True) -> tuple[np.ndarray, list[str], dict[int, int] | None]:
    """(labels 0..k-1, class names, mapping original label -> index or None when unchanged)."""
    if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind in "iu":
        y = y[:, 0]  # a column of labels
    if y.dtype.kind not in "iu" or y.ndim != 1:
        fix = ("store one integer class index per input (for one-hot rows: y.argmax(1))" if y.ndim == 2 else
               "store y as integer class labels, e.g. y.astype(np.int64)")
        raise DataError(f"y in {path} is {y.dtype} with shape {y.shape}, not 1-D integers", fix)
    if len(y) != n:
        raise DataError(f"{path} has {n} inputs but {len(y)} labels", "give one label per input")
    y = y.astype(np.int64)
    if classes is not None:
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(f"labels in {path} lie outside 0..{len(classes) - 1} ({len(classes)} classes)",
                            "give y as indices into classes")
        return y, classes, None
    uniq = np.unique(y)
    if not relabel:  # a model's own class indices: kept as they are
        if y.size and y.min() < 0:
            if set(uniq.tolist()) <= {-1, 1}:  # ±1 labels of a binary task
                return (y > 0).astype(np.int64), ["0", "1"], None
            raise DataError(f"y in {path} has negative labels", "give the model's class indices 0..K-1 (binary: 0/1)")
        if y.size and int(y.max()) >= MAX_CLASS_INDEX:
            raise DataError(f"y in {path} has class index {int(y.max())}", f"class indices are 0..K-1 with K below "
                            f"{MAX_CLASS_INDEX}: give the model's own indices")
        return y, [str(i) for i in range(int(y.max()) + 1 if y.size else 0)], None
    if np.array_equal(uniq, np.arange(len(uniq))):
        return y, [str(int(u)) for u in uniq], None
    # labels such as {3, 7} become 0, 1; the mapping is recorded so results can be traced back
    return np.searchsorted(uniq, y), [str(int(u)) for u in uniq], {int(u): i for i, u in enumerate(uniq)}


def load_npz(path: Path, *, relabel: bool = True) -> Dataset:
    """Load ``x``, ``y`` and optional ``classes`` from an npz (see the module docstring for accepted layouts).

    Args:
        path: the file.
        relabel: map labels that are not 0..k−1 (e.g. {3, 7}) onto 0..k−1, recording the map (a new task, as for
            training). False keeps them as class indices of a given model (members / non-members of a model).

    Raises:
        DataError: missing file or arrays, pickled object arrays, bad dtypes, shapes, ranges or labels.
    """
    path = Path(path)
    arrays = read_arrays(path, what="npz file", keys=("x", "y", "classes", "indices"),
                         fix="save the data with np.savez(path, x=x, y=y) (numeric x and y, a string array classes, "
                             "no object arrays)")
    if not {"x", "y"} <= set(arrays):
        raise DataError(f"{path} has arrays {sorted(arrays)}, not x and y", "save with np.savez(path, x=x, y=y)")
    x, layout = _inputs(arrays["x"], path)
    if len(x) == 0:
        raise DataError(f"{path} has no rows", "store at least one input")
    classes = None
    if "classes" in arrays:
        c = arrays["classes"]
        if c.dtype.kind not in "US" or c.ndim != 1:
            raise DataError(f"classes in {path} is {c.dtype} {c.shape}, not a list of names",
                            "store classes as np.array(['cat', 'dog'])")
        classes = [s.decode("utf-8", errors="replace") if isinstance(s, bytes) else str(s) for s in c.tolist()]
    y, names, mapping = _labels(arrays["y"], len(x), classes, path, relabel)
    src: dict[str, Any] = {"name": "npz", "path": str(path), "layout": layout}
    if mapping is not None:
        src["label_map"] = mapping
    if "indices" in arrays:  # written by Dataset.save_npz: rows of the set this file was cut from
        src["parent_indices"] = arrays["indices"].astype(np.int64).tolist()
    return Dataset(torch.from_numpy(x), torch.from_numpy(y), names, src)
