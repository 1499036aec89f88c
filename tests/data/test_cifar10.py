"""CIFAR-10: real-format batches (protocol 2, bytes keys), the restricted unpickler, md5 and safe extraction."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.request

import numpy as np
import pytest

from netinv._errors import DataError
from netinv.data import cifar10
from netinv.data._safe_unpickle import safe_load
from netinv.data.cifar10 import load_cifar10

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch_dict(n: int, seed: int) -> dict:
    """A batch shaped like the real ones: bytes keys, uint8 N×3072 data, int list labels."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": f"batch {seed}".encode(), b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def write_pickle(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar(root, n=2):
    """Five train batches of n images, a test batch of n + 1 and batches.meta; returns the batch dicts."""
    folder = root / "cifar-10-batches-py"
    batches = {f"data_batch_{i}": batch_dict(n, i) for i in range(1, 6)} | {"test_batch": batch_dict(n + 1, 9)}
    for name, d in batches.items():
        write_pickle(folder / name, d)
    write_pickle(folder / "batches.meta", {b"label_names": [s.encode() for s in NAMES],
                                           b"num_cases_per_batch": n, b"num_vis": 3072})
    return batches


def test_train_split_exact(tmp_path):
    batches = make_cifar(tmp_path)
    ds = load_cifar10(tmp_path)
    assert ds.x.shape == (10, 3, 32, 32) and ds.classes == NAMES
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.x.numpy(), data.reshape(-1, 3, 32, 32).astype(np.float32) / 255)
    # row layout: the first 1024 values are the red plane, row-major
    assert ds.x[0, 0, 0, 1] == data[0, 1] / 255 and ds.x[0, 1, 0, 0] == data[0, 1024] / 255
    assert ds.y.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.source["split"] == "train" and len(ds.source["files"]) == 5


def test_test_split_and_missing_meta(tmp_path):
    batches = make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    ds = load_cifar10(tmp_path, split="test")
    assert len(ds) == 3 and ds.y.tolist() == batches["test_batch"][b"labels"]
    assert ds.classes == NAMES and ds.source["label_names"] == "built-in"


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str opcodes (SHORT_BINSTRING / BINSTRING), as the original files have them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def test_python2_numpy1_style_pickle(tmp_path):
    """The original batches: numpy 1.x module path, str opcodes for bytes (no _codecs), dtype endian as str."""
    d = batch_dict(3, 0)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(d)
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    raw = raw.replace(b"X\x01\x00\x00\x00|", b"U\x01|")
    assert b"cnumpy.core.multiarray\n" in raw and b"_codecs" not in raw
    (tmp_path / "b").write_bytes(raw)
    out = safe_load(tmp_path / "b")
    np.testing.assert_array_equal(out[b"data"], d[b"data"])
    assert out[b"labels"] == d[b"labels"] and out[b"filenames"] == d[b"filenames"]


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Open:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("payload", [_System, _Open])
def test_malicious_pickle_rejected_without_side_effect(tmp_path, payload):
    marker = tmp_path / "pwned"
    make_cifar(tmp_path)
    # the payload hidden inside an otherwise valid batch
    d = batch_dict(2, 1) | {b"filenames": [payload(marker)]}
    write_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_3", d)
    with pytest.raises(DataError, match=r"data_batch_3 asks to load .*(system|open)") as e:
        load_cifar10(tmp_path)
    assert "re-download" in e.value.fix
    assert not marker.exists()


def test_payload_is_real(tmp_path):
    """Control: the same payload does create the file under plain pickle, so the test above is meaningful."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Open(marker), protocol=2)).close()
    assert marker.exists()


def test_codecs_encode_only_latin1(tmp_path):
    # _codecs.encode('a', 'rot13') written by hand: an allowed global used for something else
    (tmp_path / "b").write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match="_codecs.encode with str, 'rot13'"):
        safe_load(tmp_path / "b")


def test_corrupt_batches(tmp_path):
    make_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(U\x04da")  # cut off mid-way
    with pytest.raises(DataError, match="cannot unpickle .*test_batch"):
        load_cifar10(tmp_path, split="test")
    write_pickle(folder / "test_batch", batch_dict(2, 0) | {b"data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(DataError, match="not a uint8 N×3072 array"):
        load_cifar10(tmp_path, split="test")
    write_pickle(folder / "test_batch", batch_dict(2, 0) | {b"labels": [1, 2, 3]})
    with pytest.raises(DataError, match="2 images but 3 labels"):
        load_cifar10(tmp_path, split="test")
    write_pickle(folder / "test_batch", [1, 2])
    with pytest.raises(DataError, match="not a CIFAR-10 batch"):
        load_cifar10(tmp_path, split="test")
    write_pickle(folder / "test_batch", batch_dict(2, 0) | {b"labels": [0.7, 2.9]})  # would truncate to 0, 2
    with pytest.raises(DataError, match="labels' are not integers"):
        load_cifar10(tmp_path, split="test")


def test_missing_files_named(tmp_path):
    make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="cifar10 train files missing in .*: data_batch_4") as e:
        load_cifar10(tmp_path)
    assert e.value.problem.endswith(": data_batch_4")  # only the missing batch is named
    assert "--download" in e.value.fix and "cifar-10-python.tar.gz" in e.value.fix
    with pytest.raises(DataError, match="unknown split"):
        load_cifar10(tmp_path, split="valid")


def test_check_md5(tmp_path, monkeypatch):
    make_cifar(tmp_path)
    with pytest.raises(DataError, match="test_batch does not match the published md5"):
        load_cifar10(tmp_path, split="test", check_md5=True)
    folder = tmp_path / "cifar-10-batches-py"
    actual = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in ("test_batch", "batches.meta")}
    monkeypatch.setattr(cifar10, "MD5", actual)
    assert len(load_cifar10(tmp_path, split="test", check_md5=True)) == 3


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serve(monkeypatch, blob: bytes):
    monkeypatch.setattr(cifar10, "TGZ_MD5", hashlib.md5(blob).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(blob))


def test_download_and_extract(tmp_path, monkeypatch):
    src = tmp_path / "src"
    batches = make_cifar(src)
    folder = src / "cifar-10-batches-py"
    blob = _tgz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in folder.iterdir()})
    _serve(monkeypatch, blob)
    ds = load_cifar10(tmp_path / "dl", split="test", download=True)
    assert ds.y.tolist() == batches["test_batch"][b"labels"]
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == blob


def test_download_rejects_path_traversal(tmp_path, monkeypatch):
    _serve(monkeypatch, _tgz({"cifar-10-batches-py/../../evil.txt": b"x", "cifar-10-batches-py/test_batch": b""}))
    with pytest.raises(DataError, match="unsafe or unexpected entry '.*evil.txt'"):
        load_cifar10(tmp_path / "dl", split="test", download=True)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dl" / "cifar-10-batches-py").exists()


def test_check_md5_through_load_data_and_the_cli(tmp_path, monkeypatch):
    """``load_cifar10(check_md5=...)`` was unreachable from ``load_data`` and the CLI."""
    from typer.testing import CliRunner

    from netinv.cli.app import app
    from netinv.data import load_data, split_from_record

    make_cifar(tmp_path)
    assert len(load_data("cifar10", root=tmp_path, split="test")) == 3  # off by default: synthetic files load
    with pytest.raises(DataError, match="test_batch does not match the published md5"):
        load_data("cifar10", root=tmp_path, split="test", check_md5=True)
    runner = CliRunner()
    args = ["data", "show", "cifar10", "--root", str(tmp_path), "--split", "test"]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(app, [*args, "--check-md5"])
    assert isinstance(r.exception, DataError) and "published md5" in str(r.exception)
    folder = tmp_path / "cifar-10-batches-py"
    monkeypatch.setattr(cifar10, "MD5", {n: hashlib.md5((folder / n).read_bytes()).hexdigest()
                                         for n in ("test_batch", "batches.meta")})
    ds = load_data("cifar10", root=tmp_path, split="test", check_md5=True)
    assert len(ds) == 3 and ds.source["load_args"]["check_md5"] is True  # a checkpoint reloads it checked
    r = runner.invoke(app, [*args, "--check-md5"])
    assert r.exit_code == 0, r.output
    record = {"load_args": ds.source["load_args"], "task": {"task": "all"}, "train_indices": [0, 1],
              "heldout_indices": [2]}
    assert len(split_from_record(record).train) == 2
    with pytest.raises(DataError, match="applies to cifar10 only"):
        load_data("digits", check_md5=True)


@pytest.mark.parametrize("protocol", [4, 5])
def test_batches_repickled_at_newer_protocols_load(tmp_path, protocol):
    """numpy pickles arrays at protocol 5 through _frombuffer (bytes -> array): allowed, with plain numbers only."""
    batches = make_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name, d in batches.items():
        (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
    ds = load_cifar10(tmp_path, split="test")
    np.testing.assert_array_equal(ds.x.numpy(), batches["test_batch"][b"data"].reshape(-1, 3, 32, 32) / np.float32(255))


def test_frombuffer_refuses_object_arrays(tmp_path):
    from netinv.data._safe_unpickle import _frombuffer

    with pytest.raises(DataError, match="unexpected arguments"):
        _frombuffer(b"\0" * 8, np.dtype(object), (1,), "C")
    with pytest.raises(DataError, match="do not fit"):
        _frombuffer(b"\0" * 7, np.dtype(np.float64), (1,), "C")


def test_a_local_archive_with_another_md5_is_named_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")

    def offline(url, timeout=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz does not match the published md5") as e:
        load_cifar10(tmp_path, split="test", download=True)
    assert "replace it with the original archive" in e.value.fix


def test_a_relative_root_is_recorded_absolute(tmp_path, monkeypatch):
    """A checkpoint records where its data came from; a relative root broke every later command run elsewhere."""
    from netinv.data import load_data

    make_cifar(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    ds = load_data("cifar10", root="c", split="test")
    assert ds.source["load_args"]["root"] == str((tmp_path / "c").resolve())
