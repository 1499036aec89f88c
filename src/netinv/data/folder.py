"""A data set from a folder of images, one sub-folder per class (class order = sorted folder names).

Images are read with Pillow and must all have the same size. 8-bit grayscale (mode L, or 1/LA) stays one
channel when every image is grayscale; otherwise all images are converted to RGB. Values are divided by 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._errors import DataError
from ._dataset import Dataset
from .npz import MAX_CLASS_INDEX

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_GRAY = {"1", "L", "LA"}
# 16-bit / 32-bit / float modes: converting them to 8 bits would clip values silently, so they are refused
_WIDE = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def _read(f: Path) -> Image.Image:
    try:
        with Image.open(f) as im:
            im.load()  # GIF/WebP animations: the first frame
            return im.copy()
    except Exception as e:  # UnidentifiedImageError, truncated files, decompression bombs, ...
        raise DataError(f"cannot read image {f}: {e}", "remove or replace the file") from None


def load_folder(path: Path, *, relabel: bool = True) -> Dataset:
    """Load ``path/<class>/<image>`` files as N×C×H×W in [0, 1] with labels from the sorted class folders.

    Args:
        path: the folder.
        relabel: labels 0..k−1 in the sorted order of the folder names (a new task). False: folders named by
            integers keep those as labels, the class indices of a given model (``2/``, ``10/`` -> 2, 10); other
            names are refused.

    Raises:
        DataError: no class folders, an empty class, an unreadable or 16-bit image, or images of different
            sizes (the message names the odd file).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"no folder at {path}", "give --path to a folder with one sub-folder per class")
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{path} has no class sub-folders",
                        "put the images of each class in its own sub-folder")
    names = [d.name for d in class_dirs]
    ids = list(range(len(class_dirs)))
    if not relabel:
        if not all(n.isdigit() for n in names):
            raise DataError(f"class folders of {path} are named {names[:5]}, not by the model's class indices",
                            "name each folder by its class index (0, 1, …) so labels match the model")
        ids = [int(n) for n in names]
        if max(ids) >= MAX_CLASS_INDEX:
            raise DataError(f"class folder {max(ids)} of {path} is not a plausible class index",
                            f"name the folders by the model's class indices 0..K-1 (K below {MAX_CLASS_INDEX})")
        names = [str(i) for i in range(max(ids) + 1)]
    files: list[Path] = []
    labels: list[int] = []
    for label, d in zip(ids, class_dirs, strict=True):
        found = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not found:
            raise DataError(f"class folder {d} has no images",
                            f"add {', '.join(sorted(EXTENSIONS))} files or remove the folder")
        files += found
        labels += [label] * len(found)
    images = []
    for f in files:
        im = _read(f)
        if im.mode in _WIDE:
            raise DataError(f"{f} is a {im.mode} (more than 8-bit) image",
                            "save it as 8-bit grayscale or RGB")
        if images and im.size != images[0].size:
            raise DataError(f"{f} is {im.size[0]}×{im.size[1]} but {files[0]} is "
                            f"{images[0].size[0]}×{images[0].size[1]}", "resize all images to one size")
        images.append(im)
    gray = all(im.mode in _GRAY for im in images)
    # HWC uint8 per image -> N×C×H×W; grayscale gains its channel axis
    arr = np.stack([np.asarray(im.convert("L" if gray else "RGB")) for im in images])
    arr = arr[:, None] if gray else arr.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / 255.0)
    src = {"name": "folder", "path": str(path), "files": [str(f.relative_to(path)) for f in files]}
    return Dataset(x, torch.tensor(labels, dtype=torch.int64), names, src)
