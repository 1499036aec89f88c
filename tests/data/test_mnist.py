"""MNIST / Fashion-MNIST: IDX parsing (gz and raw), header checks, missing files and md5-checked download."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import urllib.error
import urllib.request

import numpy as np
import pytest

from netinv._errors import DataError
from netinv.data import mnist
from netinv.data.mnist import load_mnist


def idx(arr: np.ndarray, magic: int) -> bytes:
    """The IDX encoding of a uint8 array: big-endian magic, dimensions, then the bytes."""
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def make_split(raw, split="train", n=5, gz=True, seed=0):
    """Write n random images and labels for ``split`` into ``raw``; returns (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    raw.mkdir(parents=True, exist_ok=True)
    img_name, lab_name = mnist.FILES[split]
    for name, data in ((img_name, idx(images, 0x803)), (lab_name, idx(labels, 0x801))):
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_exact_values(tmp_path, gz, split):
    images, labels = make_split(tmp_path / "MNIST" / "raw", split, gz=gz)
    ds = load_mnist(tmp_path, split=split)
    assert ds.x.shape == (5, 1, 28, 28) and ds.x.dtype.is_floating_point
    np.testing.assert_array_equal(ds.x[:, 0].numpy(), images.astype(np.float32) / 255.0)
    assert ds.y.tolist() == labels.tolist()
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.source["name"] == "mnist" and ds.source["split"] == split
    assert all(f.endswith(".gz") == gz for f in ds.source["files"])


def test_fashion_mnist_folder_and_names(tmp_path):
    make_split(tmp_path / "FashionMNIST" / "raw", "test", n=3)
    ds = load_mnist(tmp_path, split="test", variant="fashion-mnist")
    assert len(ds) == 3 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.source["name"] == "fashion-mnist"


def test_uncompressed_file_preferred_over_gz(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=True, seed=1)
    images, labels = make_split(raw, gz=False, seed=2)
    ds = load_mnist(tmp_path)
    assert ds.y.tolist() == labels.tolist()
    assert not any(f.endswith(".gz") for f in ds.source["files"])


def test_wrong_magic_number(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=False)
    # a label file where the image file should be
    (raw / "train-images-idx3-ubyte").write_bytes(idx(np.zeros(5, np.uint8), 0x801))
    with pytest.raises(DataError, match=r"wrong IDX magic number 0x00000801 .*not an MNIST image file"):
        load_mnist(tmp_path)


def test_truncated_raw_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=False)
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"bytes but its IDX header \(5, 28, 28\) needs"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=True)
    f = raw / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"cannot read .*train-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=False)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx(np.zeros(4, np.uint8), 0x801))
    with pytest.raises(DataError, match="5 images in .* but 4 labels"):
        load_mnist(tmp_path)


def test_wrong_image_size_and_bad_label(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw, gz=False)
    (raw / "train-images-idx3-ubyte").write_bytes(idx(np.zeros((5, 10, 10), np.uint8), 0x803))
    with pytest.raises(DataError, match="10×10 images, not 28×28"):
        load_mnist(tmp_path)
    make_split(raw, gz=False)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx(np.full(5, 11, np.uint8), 0x801))
    with pytest.raises(DataError, match="label 11 .* not a class 0..9"):
        load_mnist(tmp_path)


def test_missing_files_named(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz") as e:
        load_mnist(tmp_path, split="test")
    assert str(tmp_path / "MNIST" / "raw") in str(e.value) and "--download" in e.value.fix
    # only the labels missing: only they are named
    raw = tmp_path / "MNIST" / "raw"
    make_split(raw)
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing: train-labels-idx1-ubyte.gz \\(") as e:
        load_mnist(tmp_path)
    assert "train-images" not in str(e.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_mnist(tmp_path, split="val")
    with pytest.raises(DataError, match="unknown MNIST variant"):
        load_mnist(tmp_path, variant="kmnist")


# --- download, with urllib replaced by a fake that serves bytes per URL ---------------------------------------

def _no_network(*a, **k):
    raise AssertionError("no network access expected")


def _serve(files: dict[str, bytes]):
    def urlopen(url, timeout=None):
        if url not in files:
            raise urllib.error.URLError(f"unreachable {url}")
        return io.BytesIO(files[url])
    return urlopen


def _gz_split(split="train"):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3], np.uint8)
    names = mnist.FILES[split]
    return images, labels, {f"{names[0]}.gz": gzip.compress(idx(images, 0x803)),
                            f"{names[1]}.gz": gzip.compress(idx(labels, 0x801))}


def test_download_falls_back_to_second_mirror(tmp_path, monkeypatch):
    images, labels, blobs = _gz_split()
    second = mnist.MIRRORS["mnist"][1]
    monkeypatch.setitem(mnist.MD5, "mnist", {k: hashlib.md5(v).hexdigest() for k, v in blobs.items()})
    monkeypatch.setattr(urllib.request, "urlopen", _serve({second + k: v for k, v in blobs.items()}))
    ds = load_mnist(tmp_path, download=True)
    assert ds.y.tolist() == labels.tolist()
    np.testing.assert_array_equal((ds.x[:, 0] * 255).round().numpy().astype(np.uint8), images)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(blobs)


def test_download_md5_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _, _, blobs = _gz_split()
    mirror = mnist.MIRRORS["mnist"][0]
    monkeypatch.setattr(urllib.request, "urlopen", _serve({mirror + k: v for k, v in blobs.items()}))
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz .*md5"):
        load_mnist(tmp_path, download=True)
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []  # no partial or unverified file


def test_download_network_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _serve({}))
    with pytest.raises(DataError, match="could not download .*unreachable") as e:
        load_mnist(tmp_path, variant="fashion-mnist", download=True)
    assert "check the network" in e.value.fix


def test_download_skips_present_files(tmp_path, monkeypatch):
    make_split(tmp_path / "MNIST" / "raw")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert len(load_mnist(tmp_path, download=True)) == 5


def test_download_connection_dropped(tmp_path, monkeypatch):
    class Dropped(io.BytesIO):
        def read(self, n=-1):
            raise http.client.IncompleteRead(b"partial")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Dropped())
    with pytest.raises(DataError, match="could not download .*IncompleteRead"):
        load_mnist(tmp_path, download=True)
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []


def test_a_gzip_bomb_is_refused_after_reading_only_what_its_header_promises(tmp_path):
    """A small .gz that inflates far beyond its IDX header is refused without inflating all of it."""
    import tracemalloc

    header = (mnist.IMAGES_MAGIC).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(header)
        for _ in range(64):
            f.write(bytes(1 << 22))  # 256 MiB of zeros, ~250 KB compressed
    tracemalloc.start()
    with pytest.raises(DataError, match="has more bytes but its IDX header"):
        mnist.read_idx(bomb, mnist.IMAGES_MAGIC)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20, peak  # not the 256 MiB it inflates to
