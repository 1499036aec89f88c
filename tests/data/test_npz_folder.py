"""npz and image-folder sources: layouts, scaling, labels and the inputs each must refuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netinv._errors import DataError
from netinv.data import Dataset, load_data
from netinv.data.folder import load_folder
from netinv.data.npz import load_npz

# --- npz ------------------------------------------------------------------------------------------------------


def test_npz_nchw_float(tmp_path):
    x = np.random.default_rng(0).random((4, 3, 5, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1]))
    ds = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.x.numpy(), x)
    assert ds.y.tolist() == [0, 1, 2, 1] and ds.classes == ["0", "1", "2"]
    assert ds.source["layout"] == "N×C×H×W" and "label_map" not in ds.source


def test_npz_uint8_nhw_scaled(tmp_path):
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) * 8
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1, 0], np.uint8))
    ds = load_npz(tmp_path / "d.npz")
    assert ds.x.shape == (2, 1, 4, 4) and ds.x.dtype == torch.float32
    np.testing.assert_allclose(ds.x[:, 0].numpy(), x / 255.0, rtol=1e-6)


def test_npz_channels_last_only_when_clear(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", x=x, y=np.array([0, 1]))
    ds = load_npz(tmp_path / "hwc.npz")
    assert ds.x.shape == (2, 3, 8, 7) and ds.source["layout"] == "N×H×W×C"
    assert ds.x[1, 2, 5, 4] == x[1, 5, 4, 2] / 255.0
    # N×3×8×3 is ambiguous: axis 1 is a channel count, so it stays channels-first
    np.savez(tmp_path / "chw.npz", x=np.zeros((2, 3, 8, 3), np.float32), y=np.array([0, 1]))
    assert load_npz(tmp_path / "chw.npz").x.shape == (2, 3, 8, 3)


def test_npz_tabular_and_label_remap(tmp_path):
    np.savez(tmp_path / "t.npz", x=np.full((3, 5), 0.5), y=np.array([7, 3, 7]))
    ds = load_npz(tmp_path / "t.npz")
    assert ds.x.shape == (3, 5) and ds.source["layout"] == "N×D"
    assert ds.classes == ["3", "7"] and ds.y.tolist() == [1, 0, 1]
    assert ds.source["label_map"] == {3: 0, 7: 1}


def test_npz_with_classes_and_roundtrip(tmp_path):
    x = np.random.default_rng(2).random((3, 1, 2, 2)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x, y=np.array([2, 0, 2]), classes=np.array(["cat", "dog", "emu"]))
    ds = load_npz(tmp_path / "c.npz")
    assert ds.classes == ["cat", "dog", "emu"] and ds.y.tolist() == [2, 0, 2]
    sub = ds.subset([2, 0])
    back = load_data(str(sub.save_npz(tmp_path / "sub.npz")))  # '.npz' name dispatches to npz
    assert torch.equal(back.x, sub.x) and torch.equal(back.y, sub.y) and back.classes == ds.classes
    assert back.source["parent_indices"] == [2, 0] and back.indices == [0, 1]


@pytest.mark.parametrize("bad, match, fix", [
    (1.5, r"1 values outside \[0, 1\] \(e.g. 1.5\)", "x / 1.5 if that is its full scale"),
    (200.0, r"outside \[0, 1\]", "x / 255 for 0..255 data"),
    (-0.1, r"outside \[0, 1\]", "(x + 1) / 2 for [-1, 1] data"),
    (np.nan, r"1 NaN or infinite values", "remove or repair them"),
])
def test_npz_float_out_of_range(tmp_path, bad, match, fix):
    x = np.zeros((2, 4), np.float32)
    x[1, 2] = bad
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match=match) as e:
        load_npz(tmp_path / "d.npz")
    assert fix in e.value.fix


def test_npz_object_array_rejected(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="cannot be read without unpickling"):
        load_npz(tmp_path / "o.npz")


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((2, 3))}, "not x and y"),
    ({"x": np.zeros((2, 3)), "y": np.array([0.0, 1.0])}, "not 1-D integers"),
    ({"x": np.zeros((2, 3)), "y": np.array([0, 1, 1])}, "2 inputs but 3 labels"),
    ({"x": np.zeros((2, 3), np.int64), "y": np.array([0, 1])}, "dtype int64"),
    ({"x": np.zeros((2, 1, 1, 1, 1)), "y": np.array([0, 1])}, r"shape \(2, 1, 1, 1, 1\)"),
    ({"x": np.zeros((0, 3)), "y": np.zeros(0, np.int64)}, "no rows"),
    ({"x": np.zeros((2, 3)), "y": np.array([0, 2]), "classes": np.array(["a", "b"])}, r"outside 0..1"),
])
def test_npz_bad_arrays(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_npz(tmp_path / "d.npz")


def test_npz_not_an_npz(tmp_path):
    with pytest.raises(DataError, match="no npz file"):
        load_npz(tmp_path / "absent.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_npz(tmp_path / "a.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_npz(tmp_path / "junk.npz")


# --- folder ---------------------------------------------------------------------------------------------------


def _save(path, arr, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)


def test_folder_grayscale_stays_one_channel(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    _save(tmp_path / "zebra" / "1.png", a, "L")
    _save(tmp_path / "ant" / "x.bmp", 255 - a, "L")
    _save(tmp_path / "ant" / "y.PNG", a, "L")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = load_folder(tmp_path)
    assert ds.classes == ["ant", "zebra"] and ds.y.tolist() == [0, 0, 1]
    assert ds.x.shape == (3, 1, 3, 4)
    np.testing.assert_allclose(ds.x[0, 0].numpy(), (255 - a) / 255.0, rtol=1e-6)
    assert ds.source["files"] == ["ant/x.bmp", "ant/y.PNG", "zebra/1.png"]


def test_folder_mixed_modes_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    gray = np.full((5, 6), 77, np.uint8)
    _save(tmp_path / "a" / "rgb.png", rgb, "RGB")
    _save(tmp_path / "b" / "gray.png", gray, "L")
    ds = load_folder(tmp_path)
    assert ds.x.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(ds.x[0].numpy(), rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert torch.all(ds.x[1] == 77 / 255.0)


def test_folder_size_mismatch_names_file(tmp_path):
    _save(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8), "L")
    _save(tmp_path / "b" / "odd.png", np.zeros((4, 5), np.uint8), "L")
    with pytest.raises(DataError, match=r"b/odd.png is 5×4 but .*a/1.png is 4×4"):
        load_folder(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        load_folder(tmp_path / "absent")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty has no images"):
        load_folder(tmp_path)
    (tmp_path / "empty" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        load_folder(tmp_path)
    (tmp_path / "empty" / "bad.png").unlink()
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "empty" / "wide.png")
    with pytest.raises(DataError, match="more than 8-bit"):
        load_folder(tmp_path)


def test_folder_via_load_data(tmp_path):
    _save(tmp_path / "c" / "1.png", np.zeros((2, 2), np.uint8), "L")
    ds = load_data("folder", path=tmp_path)
    assert isinstance(ds, Dataset) and len(ds) == 1 and ds.source["name"] == "folder"


def test_npz_model_labels_are_kept_as_class_indices(tmp_path):
    """Members of a 10-class model that lack class 0 keep labels 1..9 (renumbering them would score every margin
    against the wrong class); ±1 labels of a binary model become 0/1; a column of labels is accepted."""
    x = np.full((4, 1, 2, 2), 0.5, np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([1, 9, 3, 9]))
    assert load_npz(tmp_path / "a.npz").y.tolist() == [0, 2, 1, 2]  # a new task: renumbered, as for training
    ds = load_data("npz", path=tmp_path / "a.npz", relabel=False)
    assert ds.y.tolist() == [1, 9, 3, 9] and ds.num_classes == 10
    assert ds.source["load_args"]["relabel"] is False and "label_map" not in ds.source
    np.savez(tmp_path / "b.npz", x=x, y=np.array([[1], [-1], [1], [1]]))
    assert load_npz(tmp_path / "b.npz", relabel=False).y.tolist() == [1, 0, 1, 1]
    np.savez(tmp_path / "c.npz", x=x, y=np.array([0, -2, 1, 1]))
    with pytest.raises(DataError, match="negative labels"):
        load_npz(tmp_path / "c.npz", relabel=False)
    np.savez(tmp_path / "d.npz", x=x, y=np.eye(4, dtype=np.int64))
    with pytest.raises(DataError, match=r"argmax\(1\)"):
        load_npz(tmp_path / "d.npz")


def test_npz_uint8_on_a_small_scale_is_refused(tmp_path):
    """scikit-learn's digits stored raw as uint8 (0..16), or 0/1 masks, would enter at 16/255 or 1/255 of full
    scale (an audit of such members read AUC 0.02 against 0.59 when scaled): refused, with the division to do."""
    np.savez(tmp_path / "d.npz", x=np.array([[[0, 16], [8, 3]]] * 2, np.uint8), y=np.array([0, 1]))
    with pytest.raises(DataError, match="maximum 16.*store x / 16 as float32"):
        load_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "m.npz", x=np.array([[[0, 1]]] * 2, np.uint8), y=np.array([0, 1]))
    with pytest.raises(DataError, match="x / 1 as float32"):
        load_npz(tmp_path / "m.npz")
    np.savez(tmp_path / "f.npz", x=np.array([[[0, 16.0]]] * 2, np.float32), y=np.array([0, 1]))
    with pytest.raises(DataError, match="e.g. x / 16 if"):
        load_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "n.npz", x=np.array([[[0, np.nan]]] * 2, np.float32), y=np.array([0, 1]))
    with pytest.raises(DataError, match="2 NaN or infinite values"):
        load_npz(tmp_path / "n.npz")
    np.savez(tmp_path / "e.npz", x=np.array([[[0, 255]]] * 2, np.uint8), y=np.array([0, 1]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_npz(tmp_path / "e.npz")
    with pytest.raises(DataError, match="check the path"):
        load_npz(tmp_path / "missing.npz")


def test_model_data_folders_keep_integer_class_names(tmp_path):
    """Class folders 2/ and 10/ of a model's members are classes 2 and 10 (sorted names would make them 0 and 1,
    and "10" < "2"); other names cannot be a model's class indices and are refused."""
    from netinv.data import load_model_data

    for name in ("2", "10"):
        _save(tmp_path / "m" / name / "a.png", np.full((2, 2), int(name), np.uint8), "L")
    assert load_data("folder", path=tmp_path / "m").y.tolist() == [0, 1]  # a new task: sorted names "10", "2"
    ds = load_model_data(tmp_path / "m")
    assert ds.y.tolist() == [10, 2] and ds.num_classes == 11
    assert ds.x[0].max() == pytest.approx(10 / 255) and ds.x[1].max() == pytest.approx(2 / 255)
    _save(tmp_path / "n" / "cat" / "a.png", np.zeros((2, 2), np.uint8), "L")
    with pytest.raises(DataError, match="not by the model's class indices"):
        load_model_data(tmp_path / "n")
    np.savez(tmp_path / "a.npz", x=np.full((2, 1, 2, 2), 0.5), y=np.array([3, 7]))
    assert load_model_data(tmp_path / "a.npz").y.tolist() == [3, 7] and load_model_data(ds) is ds


def test_a_split_without_non_members_warns():
    """Training works on such a split, but nothing can measure leakage on it: say so when the split is made."""
    from netinv.data import make_task

    with pytest.warns(UserWarning, match="leaves 0 held-out images"):
        make_task(load_data("digits"), "classes:0,1", n_per_class=10, heldout_per_class=0, seed=0)


def test_a_forged_class_index_is_refused_not_allocated(tmp_path):
    """y = 2**40 in a model's member file made a list of 2**40 class names (MemoryError traceback)."""
    np.savez(tmp_path / "y.npz", x=np.zeros((2, 4), np.float32), y=np.array([0, 2**40]))
    with pytest.raises(DataError, match="class index 1099511627776"):
        load_npz(tmp_path / "y.npz", relabel=False)
    (tmp_path / "f" / "0").mkdir(parents=True)
    (tmp_path / "f" / str(2**40)).mkdir()
    with pytest.raises(DataError, match="not a plausible class index"):
        load_data("folder", path=tmp_path / "f", relabel=False)


def test_class_names_that_are_not_utf8_do_not_crash(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 4), np.float32), y=np.array([0, 1]),
             classes=np.array([b"ok", b"\xff\xfe"]))
    assert load_npz(tmp_path / "c.npz").classes[0] == "ok"


def test_a_file_that_is_not_numpy_is_named_so(tmp_path):
    (tmp_path / "passwd.npz").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(DataError, match="is not an npz file"):
        load_npz(tmp_path / "passwd.npz")


def test_dark_uint8_images_warn():
    """uint8 with maximum 17..63: maybe raw data on a small scale (an audit then reads nonsense): warned."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "u.npz", x=np.array([[[0, 32]]] * 2, np.uint8), y=np.array([0, 1]))
        with pytest.warns(UserWarning, match="maximum 32, read as 32/255 of full scale"):
            load_npz(Path(d) / "u.npz")


def test_an_npz_that_inflates_too_far_is_refused_before_reading(tmp_path, monkeypatch):
    from netinv.data import npz

    np.savez_compressed(tmp_path / "z.npz", x=np.zeros((64, 1, 64, 64), np.float32), y=np.zeros(64, np.int64))
    monkeypatch.setattr(npz, "MAX_INFLATED_BYTES", 1 << 20)  # 1 MiB here; 8 GiB by default
    with pytest.raises(DataError, match="inflates to 0.0 GiB from .* MiB, more than"):
        load_npz(tmp_path / "z.npz")
    monkeypatch.setattr(npz, "MAX_INFLATED_BYTES", 1 << 33)
    assert len(load_npz(tmp_path / "z.npz")) == 64


def test_every_npz_reader_names_a_torn_or_pickled_file_in_one_data_error(tmp_path):
    """Candidates, warm starts and SAT inputs go through the one safe reader (they used to raise BadZipFile raw)."""
    from netinv.attacks.base import load_candidates
    from netinv.data.npz import read_arrays
    from netinv.metrics import evaluate_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "candidates.npz").write_bytes(b"PK\x03\x04garbage")
    for call in (lambda: evaluate_dir(run), lambda: load_candidates(run)):
        with pytest.raises(DataError, match="cannot read candidates .*candidates.npz"):
            call()
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="the warm start .* cannot be read without unpickling"):
        read_arrays(tmp_path / "obj.npz", what="the warm start")
    np.save(tmp_path / "one.npy", np.arange(3))
    assert read_arrays(tmp_path / "one.npy", allow_npy=True)[""].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="is a single .npy array, not an npz"):
        read_arrays(tmp_path / "one.npy")
    # a 200-byte .npy whose header claims 10¹¹ float64 values: refused before numpy allocates 745 GiB
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    (tmp_path / "forged.npy").write_bytes(buf.getvalue() + b"\0" * 64)
    with pytest.raises(DataError, match="claims an array of shape \\(100000000000,\\).*truncated or forged"):
        read_arrays(tmp_path / "forged.npy", allow_npy=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue() + b"\0" * 64)
        z.writestr("notes.txt", b"hello")
    with pytest.raises(DataError, match="\\(x.npy\\) claims an array"):
        read_arrays(tmp_path / "forged.npz")
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("x.npy", (lambda b: (np.save(b, np.zeros(3)), b.getvalue())[1])(io.BytesIO()))
        z.writestr("notes.txt", b"hello")  # numpy returns such a member as bytes
    with pytest.raises(DataError, match="member 'notes.txt' is not a numpy array"):
        read_arrays(tmp_path / "raw.npz")
    assert read_arrays(tmp_path / "raw.npz", keys=("x",))["x"].tolist() == [0, 0, 0]
    # a data set with an extra object array it does not use still loads: only x, y, classes, indices are read
    np.savez(tmp_path / "extra.npz", x=np.zeros((4, 1, 2, 2), np.float32), y=np.array([0, 1, 0, 1]),
             names=np.array([{"a": 1}] * 4, dtype=object))
    assert len(load_npz(tmp_path / "extra.npz")) == 4
    # every reader goes through it: a torn warm start, SAT inputs, a sweep pool member, a plain BNN
    from typer.testing import CliRunner

    from netinv.attacks.sweep import pool_candidates
    from netinv.cli._errors import format_error
    from netinv.cli.app import app
    from netinv.sat import PlainBNN

    torn = tmp_path / "torn.npz"
    torn.write_bytes(b"PK\x03\x04garbage")
    from netinv.cli.reconstruct import read_start

    with pytest.raises(DataError, match="cannot read the warm start .*torn.npz"):
        read_start(torn)
    r = CliRunner().invoke(app, ["sat", "infer", str(torn), "--inputs", str(torn)])
    assert format_error(r.exception).startswith("error: cannot read --inputs") and "\n" not in format_error(
        r.exception)
    with pytest.raises(DataError, match="cannot read a trial's candidates"):
        pool_candidates([run], [0])
    from netinv._errors import ModelError

    with pytest.raises(ModelError, match="cannot read plain BNN"):
        PlainBNN.load(torn)
