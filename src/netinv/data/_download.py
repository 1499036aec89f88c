"""Downloads with a checksum: try mirrors in order, write to a temporary file, verify md5, rename into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from .._errors import DataError


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in chunks (the published checksums are md5: integrity, not security)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_file(urls: list[str] | tuple[str, ...], dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download the first of ``urls`` that works and matches ``md5`` to ``dest`` (temp file, then rename).

    Raises:
        DataError: no URL gave the file (network down, HTTP error or a checksum mismatch on every mirror).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        # temp file in the destination folder so os.replace is an atomic rename on the same file system
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
                for chunk in iter(lambda r=resp: r.read(1 << 20), b""):
                    out.write(chunk)
            got = file_md5(Path(tmp))
            if got != md5:
                errors.append(f"{url}: md5 {got} != {md5}")
                continue
            os.replace(tmp, dest)
            return dest
        except (OSError, http.client.HTTPException) as e:  # URLError/timeouts are OSErrors; IncompleteRead is not
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {dest.name} ({'; '.join(errors)})",
                    f"check the network, or put the file in {dest.parent} yourself")
