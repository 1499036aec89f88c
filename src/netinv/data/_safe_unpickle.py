"""Load CIFAR's python pickles without letting them run code.

A pickle can name any importable callable and call it (``os.system`` via ``__reduce__``). The CIFAR
batches only need numpy's array reconstruction (``_frombuffer`` when re-pickled at protocol 5) and, for bytes
written by Python 3 at protocol 2, ``_codecs.encode``; every other global is refused in :meth:`find_class`,
before it is imported or called, so nothing in a crafted file executes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError

# numpy's own array-rebuild function, taken from a live array so it works on numpy 1.x and 2.x alike
_reconstruct = np.ndarray((0,)).__reduce__()[0]


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: Python 3 pickles bytes as ``encode(str, 'latin1')``; nothing else."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise DataError(f"pickle calls _codecs.encode with {type(text).__name__}, {encoding!r}",
                        "use the original CIFAR-10 files")
    return text.encode("latin1")


def _frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """Stand-in for numpy's ``_frombuffer``, which pickle protocol 5 uses to rebuild an array from its bytes: plain
    numeric data only (a copy, so the array owns its memory)."""
    ok = (isinstance(buf, bytes | bytearray | memoryview | pickle.PickleBuffer) and isinstance(dtype, np.dtype)
          and dtype.kind in "biuf" and isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)
          and order in ("C", "F"))
    if not ok:
        raise DataError("pickle rebuilds an array from bytes with unexpected arguments",
                        "use the original CIFAR-10 files")
    try:
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()
    except ValueError as e:
        raise DataError(f"pickle rebuilds an array from bytes that do not fit it: {e}",
                        "use the original CIFAR-10 files") from None


# (module, name) as written in the pickle -> the object it may resolve to
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # files written by numpy 1.x (the originals)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # files written by numpy 2.x
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5 (numpy 1.x / 2.x): bytes -> array
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED``; any other raises :class:`DataError`."""

    def __init__(self, file: Any, path: Path, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path} asks to load {module}.{name}, which a CIFAR batch never contains",
                            "the file is not a genuine CIFAR-10 batch; delete it and re-download") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.path} uses persistent ids, which a CIFAR batch never contains",
                        "delete it and re-download")


def safe_load(path: Path) -> Any:
    """Unpickle ``path`` allowing only numpy globals; Python 2 strings become bytes (``encoding='bytes'``).

    Raises:
        DataError: the file is unreadable, corrupt, or names anything outside the allowed numpy globals.
    """
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path, encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ValueError, TypeError, ...
        raise DataError(f"cannot unpickle {path}: {type(e).__name__}: {e}",
                        "delete it and re-download") from None
