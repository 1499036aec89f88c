"""Every user-model format loads and predicts the same as the original module; bad inputs give one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netinv import ModelError, load_model
from netinv.models.loaded import LoadedModel
from netinv.models.loading import check_compatible


def make_net() -> nn.Module:
    """Factory used by the tests (tests.models.test_loading:make_net)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 64, 10)).eval()


@pytest.fixture
def net():
    m = make_net()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    return m


X = torch.rand(7, 1, 8, 8)


@pytest.mark.parametrize("batch,dynamic", [(4, False), (1, False), (3, True)])
def test_torch_export_archive(net, tmp_path, batch, dynamic):
    dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
    ep = torch.export.export(net, (torch.rand(batch, 1, 8, 8),), dynamic_shapes=dyn)
    torch.export.save(ep, tmp_path / "m.pt2")
    lm = load_model(tmp_path / "m.pt2", device="cpu")
    assert lm.input_shape == (1, 8, 8) and lm.num_outputs == 10  # read from the archive
    assert torch.allclose(lm.logits(X), net(X), atol=1e-5)
    assert torch.equal(lm.predict(X), net(X).argmax(1))
    lm.module.train()  # mode switches must not crash on exported graphs
    params = [p for p in lm.module.parameters()]
    grads = torch.autograd.grad(lm.logits(X).sum(), params, create_graph=True)  # KKT needs double backward
    assert grads[0].requires_grad


class _MixesTheBatch(torch.nn.Module):
    """Centres each batch on its own mean: at batch 1 the output is 0 for a duplicated row too, so only two
    different probe batches show that it is not a per-input function."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))
        return z - z.mean(0, keepdim=True) + self.lin.bias


class _ViewAtBatchOne(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.reshape(x.shape[0], 64))  # traced at batch 1: the graph's view is (1, 64)


def test_a_batch_1_export_is_made_generic_only_when_it_is_per_input_and_chunking_is_said(tmp_path):
    for name, net in (("mix", _MixesTheBatch()), ("view", _ViewAtBatchOne())):
        torch.export.save(torch.export.export(net.eval(), (torch.rand(1, 1, 8, 8),)), tmp_path / f"{name}.pt2")
        with pytest.warns(UserWarning, match=f"{name}.pt2 runs only on batches of exactly 1 .* dynamic_shapes"):
            lm = load_model(tmp_path / f"{name}.pt2", device="cpu")
        assert lm.source["runs_in_chunks_of"] == 1
        with torch.no_grad():  # chunked: each input alone, as the export computes it
            assert torch.allclose(lm.logits(X), torch.cat([net(x[None]) for x in X]), atol=1e-5)
    torch.export.save(torch.export.export(_ViewAtBatchOne().eval(), (torch.rand(2, 1, 8, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), tmp_path / "dyn.pt2")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a dynamic export runs whole batches: nothing to say
        assert load_model(tmp_path / "dyn.pt2", device="cpu").source["runs_in_chunks_of"] is None


def test_torchscript(net, tmp_path):
    torch.jit.save(torch.jit.script(net), tmp_path / "m.ts")
    import warnings

    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.load; a user's -W error must not break loading
        warnings.simplefilter("error", DeprecationWarning)
        lm = load_model(tmp_path / "m.ts", input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(lm.logits(X), net(X), atol=1e-6)
    with pytest.raises(ModelError, match="input shape .* is unknown"):
        load_model(tmp_path / "m.ts", device="cpu")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_factory_with_weights(net, tmp_path, fmt):
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    lm = load_model("tests.models.test_loading:make_net", weights=path, input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(lm.logits(X), net(X), atol=1e-6)


def test_nn_module_and_mean(net, tmp_path):
    mean = np.full((1, 8, 8), 0.25, dtype=np.float32)
    np.save(tmp_path / "mean.npy", mean)
    lm = load_model(net, input_shape=(1, 8, 8), mean=tmp_path / "mean.npy", input_range=(0, 1), device="cpu")
    assert torch.allclose(lm.logits(X), net(X - 0.25), atol=1e-6)
    ramp = np.linspace(0, 0.5, 64, dtype=np.float32).reshape(1, 8, 8)  # an image mean for a model on flat rows
    np.save(tmp_path / "ramp.npy", ramp)
    flat = load_model(nn.Sequential(nn.Unflatten(1, (1, 8, 8)), net), input_shape=(64,), mean=tmp_path / "ramp.npy",
                      device="cpu")
    assert flat.mean.shape == (64,) and torch.allclose(flat.logits(X.flatten(1)), net(X - torch.from_numpy(ramp)),
                                                       atol=1e-6)
    np.save(tmp_path / "cut.npy", ramp.reshape(2, 32))
    with pytest.raises(ModelError, match="mean image shaped \\(2, 32\\) does not fit"):
        load_model(net, input_shape=(1, 8, 8), mean=tmp_path / "cut.npy", device="cpu")


def test_weights_only_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"0.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="refusing weights .*pickled Python objects \\(_?io.open\\)") as e:
        load_model("tests.models.test_loading:make_net", weights=tmp_path / "evil.pt", input_shape=(1, 8, 8))
    assert not (tmp_path / "pwned").exists()
    assert "Re-running" not in str(e.value) and "safetensors" in e.value.fix  # not torch's "set it to False"


class _Evil:
    """Unpickling it creates the file ``_Evil.target``: the sign that a loader ran code from a file."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


def _rewrite(src, dst, edit) -> None:
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))


@pytest.mark.parametrize("variant", ["pickled weight", "pickled sample inputs", "opaque constant",
                                     "opaque constant in a folder, not flagged"])
def test_a_pt2_archive_that_would_unpickle_objects_is_refused(net, tmp_path, variant):
    """torch.export.load unpickles flagged weights, sample inputs that fail the weights-only load and opaque
    constants (torch 2.13): each would run code on `netinv info`; the archive is checked before torch sees it."""
    import io
    import json
    import pickle

    torch.export.save(torch.export.export(net, (X[:2],)), tmp_path / "good.pt2")
    _Evil.target = str(tmp_path / "pwned")
    buf = io.BytesIO()
    torch.save(_Evil(), buf)

    def edit(name: str, data: bytes) -> bytes:
        if variant == "pickled weight" and name.endswith("weights/model_weights_config.json"):
            cfg = json.loads(data)
            next(iter(cfg["config"].values()))["use_pickle"] = True
            return json.dumps(cfg).encode()
        if variant == "pickled weight" and name.endswith("weights/weight_0"):
            return buf.getvalue()
        if variant == "pickled sample inputs" and name.endswith("sample_inputs/model.pt"):
            return buf.getvalue()
        if variant == "opaque constant" and name.endswith("constants/model_constants_config.json"):
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                                "tensor_meta": None}}}).encode()
        if variant.startswith("opaque constant in") and name.endswith("constants/model_constants_config.json"):
            # torch unpickles by the path_name prefix whatever use_pickle says (an audit's bypass of a name check)
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_x/evil", "is_param": False,
                                                "use_pickle": False, "tensor_meta": None}}}).encode()
        return data

    _rewrite(tmp_path / "good.pt2", tmp_path / "evil.pt2", edit)
    if variant.startswith("opaque constant"):
        import zipfile

        with zipfile.ZipFile(tmp_path / "evil.pt2", "a") as z:
            root = z.namelist()[0].split("/")[0]
            where = "opaque_obj_0" if variant == "opaque constant" else "opaque_obj_x/evil"
            z.writestr(f"{root}/data/constants/{where}", pickle.dumps(_Evil()))
    with pytest.raises(ModelError, match="refusing .*(pickled|tensors-only)"):
        load_model(tmp_path / "evil.pt2", device="cpu")
    assert not (tmp_path / "pwned").exists()
    assert load_model(tmp_path / "good.pt2", device="cpu").num_outputs == 10  # a plain export still loads


def test_bad_inputs(net, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"junk")
    with pytest.raises(ModelError, match="neither a torch.export archive nor a TorchScript"):
        load_model(tmp_path / "junk.pt2")
    with pytest.raises(ModelError, match="fails on inputs shaped"):
        load_model(net, input_shape=(3, 32, 32), device="cpu")
    with pytest.raises(ModelError, match="needs weights"):
        load_model("tests.models.test_loading:make_net", input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match="cannot import factory"):
        load_model("tests.nowhere:make", input_shape=(1, 8, 8))
    nan = make_net()
    with torch.no_grad():
        nan[5].weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN or inf"):
        load_model(nan, input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match="mean image shaped"):
        load_model(net, input_shape=(1, 8, 8), mean=np.zeros((3, 8, 8), dtype=np.float32))


def test_shape_mismatch_with_data(parity_victim):
    from netinv.data import Dataset

    model, _ = parity_victim
    data = Dataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), ["a", "b"])
    with pytest.raises(ModelError, match=r"takes inputs shaped \(1, 8, 8\), the data is \(1, 28, 28\)"):
        check_compatible(model, data)


def test_auto_leaves_a_callers_model_where_it_is(net, monkeypatch):
    """``device="auto"`` (the default of evaluate_dir and audit) does not move a caller's in-memory LoadedModel or
    nn.Module (moved in place, so the caller's object would change device under them) to the GPU; an explicit device
    does. Simulated: CUDA claimed present, LoadedModel.to recorded."""
    lm = LoadedModel(net, (1, 8, 8), 10)
    moved = []
    real_to = LoadedModel.to
    monkeypatch.setattr(LoadedModel, "to", lambda self, device: moved.append(str(device)) or real_to(self, "cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load_model(lm) is lm and moved == [] and lm.device.type == "cpu" and lm.num_outputs == 10
    assert load_model(lm, device="cuda") is lm and moved == ["cuda"]
    assert load_model(lm, device="cpu") is lm and moved == ["cuda", "cpu"]
    assert load_model(net, input_shape=(1, 8, 8)) is not lm and moved == ["cuda", "cpu"]  # a raw module stays too
    assert load_model(net, input_shape=(1, 8, 8), device="cuda").module is net and moved[-1] == "cuda"


class _Normalised(nn.Module):
    """Tensors made in ``forward``: lifted to plain graph attributes; ``zeros(device=...)`` burns a device in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - torch.tensor([0.25])) / torch.tensor([0.5])
        return self.fc(x.flatten(1)) + torch.zeros(x.shape[0], 3, device=x.device)


@pytest.mark.parametrize("dynamic", [True, False])
def test_export_graph_constants_follow_the_module(tmp_path, dynamic):
    """Moving an archive's model moves its graph's tensor constants and burnt-in devices too (the ``meta`` device
    stands in for a GPU: a CPU tensor mixed in fails there as on CUDA)."""
    torch.manual_seed(0)
    net = _Normalised().eval()
    dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(net, (torch.rand(4, 1, 8, 8),), dynamic_shapes=dyn), tmp_path / "m.pt2")
    lm = load_model(tmp_path / "m.pt2", device="cpu")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(lm.logits(x), net(x))
    lm.to("meta")
    consts = [v for m in lm.module.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    assert consts and all(t.device.type == "meta" for t in consts)
    out = lm.logits(x.to("meta"))
    assert out.device.type == "meta" and out.shape == (5, 3)


def test_a_model_with_tensors_left_on_another_device_is_named_so():
    class Offset(nn.Module):  # a plain tensor attribute: module.to() leaves it behind
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.offset = nn.Linear(64, 2), torch.ones(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)) + self.offset

    from netinv.models.loading import _probe_outputs  # load_model's forward pass (its NaN check needs values)

    lm = LoadedModel(Offset().to("meta"), (1, 8, 8), 0)  # on "meta", standing in for a GPU
    with pytest.raises(ModelError, match="fails on meta: it keeps tensors on another device") as e:
        _probe_outputs(lm)
    assert "--input-shape" not in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_archive_saved_on_a_gpu_is_refused_in_one_line_without_cuda(net, tmp_path):
    """``torch.export.load`` has no map_location: an archive whose tensors were saved on a GPU fails inside torch
    here. Simulated by marking a CPU archive's tensors as saved on cuda:0."""
    import zipfile

    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 8, 8),)), tmp_path / "m.pt2")
    cpu_dev, cuda_dev = b'"device": {"type": "cpu", "index": null}', b'"device": {"type": "cuda", "index": 0}'
    marked = 0
    with zipfile.ZipFile(tmp_path / "m.pt2") as zi, zipfile.ZipFile(tmp_path / "gpu.pt2", "w") as zo:
        for info in zi.infolist():
            data = zi.read(info.filename)
            if info.filename.endswith("_config.json"):
                marked += data.count(cpu_dev)
                data = data.replace(cpu_dev, cuda_dev)
            zo.writestr(info, data)
    if not marked:
        pytest.skip("this torch writes archives in another layout")
    with pytest.raises(ModelError, match="weights saved on a GPU") as e:
        load_model(tmp_path / "gpu.pt2", device="cpu")
    assert "re-export after model.cpu()" in e.value.fix and "\n" not in str(e.value)


def test_a_checkpoint_records_its_absolute_path_and_refuses_another_range(parity_victim, monkeypatch):
    """A checkpoint named by a relative path is recorded absolutely (``netinv evaluate`` runs from anywhere); an
    --input-range that contradicts the range it was trained on is refused rather than mixing two scales."""
    _, ckpt = parity_victim
    monkeypatch.chdir(ckpt.parent)
    lm = load_model(ckpt.name, device="cpu")
    assert lm.source["path"] == str(ckpt.resolve()) and lm.record()["input_range"] == [0.0, 1.0]
    assert load_model(ckpt.name, input_range=(0, 1), device="cpu").input_range == (0.0, 1.0)
    with pytest.raises(ModelError, match="contradicts the checkpoint") as e:
        load_model(ckpt.name, input_range=(0, 16), device="cpu")
    assert "drop --input-range" in e.value.fix


def test_a_two_input_export_and_labels_beyond_the_model_are_named(net, tmp_path):
    class TwoInputs(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a.flatten(1)[:, :3] + b.flatten(1)[:, :3]

    torch.export.save(torch.export.export(TwoInputs(), (torch.rand(2, 64), torch.rand(2, 64))), tmp_path / "two.pt2")
    with pytest.raises(ModelError, match="takes 2 inputs; netinv inverts a classifier of one input tensor"):
        load_model(tmp_path / "two.pt2", input_shape=(64,), device="cpu")
    from netinv.data import Dataset

    lm = load_model(net, input_shape=(1, 8, 8), device="cpu")  # 10 classes
    data = Dataset(torch.rand(3, 1, 8, 8), torch.tensor([5, 9, 14]), [str(i) for i in range(15)])
    with pytest.raises(ModelError, match="labels outside 0..9 for a model with 10 classes \\(the data has label 14\\)"):
        check_compatible(lm, data)


@pytest.mark.parametrize("shape", [(100000, 100000, 100000), (1, -8, 8), (0,), ("a", 2)])
def test_an_implausible_input_shape_is_one_model_error(net, shape):
    """A forged run.json or a typo must not reach an allocator traceback."""
    with pytest.raises(ModelError, match="input shape"):
        load_model(net, input_shape=shape, device="cpu")


_EVIL = """
import sys, torch
from torch import nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(64, 2, bias=False)
    def forward(self, x):
        t = torch.from_file({marker!r}, shared=True, size=8)  # maps (and creates) any file the user can write
        t.fill_(1.0)
        return self.l(x.flatten(1)) + t.sum() * 0
m = M().eval()
if {kind!r} == "ts":
    torch.jit.save(torch.jit.script(m), {out!r})
else:
    lib = torch.library.Library("aten", "IMPL")  # what an attacker runs on their own machine to export it
    lib.impl("from_file", lambda f, shared=None, size=0, **k: torch.empty(size, device="meta"), "Meta")
    ep = torch.export.export(m, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({{0: torch.export.Dim("batch")}},))
    torch.export.save(ep, {out!r})
"""


@pytest.mark.parametrize("kind", ["ts", "pt2"])
def test_a_model_file_that_reaches_the_file_system_is_refused_before_it_runs(tmp_path, kind):
    """A TorchScript or .pt2 model is a program: torch.from_file in its forward wrote into any file the user can
    write (an audit overwrote a shell script through netinv.load_model). Refused before the model runs."""
    import subprocess
    import sys

    marker, out = tmp_path / "MARKER", tmp_path / f"evil.{kind}"
    script = tmp_path / "make_evil.py"  # scripting needs the class's source in a file
    script.write_text(_EVIL.format(marker=str(marker), out=str(out), kind=kind))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not out.exists():
        pytest.skip(f"this torch cannot build the crafted {kind} model: {r.stderr[-300:]}")
    assert not marker.exists()  # building it did not run it
    with pytest.raises(ModelError, match="from_file.*which netinv does not run from a file"):
        load_model(out, input_shape=(1, 8, 8) if kind == "ts" else None, device="cpu")
    assert not marker.exists()  # and neither did loading it


def test_the_model_file_screen_reads_names_not_spellings_and_operator_arguments(tmp_path):
    """Bypasses a review found: `torch . save` (TorchScript tokenises its code, so the spaced call is the same one), a
    __setstate__ (it runs inside torch.jit.load), code padded past a size limit, and an operator passed as the
    argument of a higher-order op in a .pt2 graph. And a legitimate module named grpc_models is not refused."""
    import types
    import zipfile

    from netinv.models.screen import _export_ops, check_torchscript_archive

    def archive(name: str, code: str) -> Path:
        with zipfile.ZipFile(tmp_path / name, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("m/code/__torch__/grpc_models.py", code)
        return tmp_path / name

    ok = archive("ok.pt", "class MLP(Module):\n  rpc_scale : float\n  def forward(self: __torch__.grpc_models.MLP, x: "
                          "Tensor) -> Tensor:\n    return torch.linear(x, self.w)\n")
    check_torchscript_archive(ok)  # names that merely contain rpc_ or grpc are not calls
    for name, code, match in (
            ("spaced.pt", "def forward(self, x):\n    _0 = torch . save(x, 'p')\n    return x\n", "torch.save"),
            ("setstate.pt", "def __setstate__(self, s: Tuple[int]) -> NoneType:\n    return None\n", "__setstate__"),
            ("big.pt", "# " + "x" * (1 << 26) + "\n", "larger than 64 MiB")):
        with pytest.raises(ModelError, match=match):
            check_torchscript_archive(archive(name, code))

    g = torch.fx.Graph()
    x = g.placeholder("x")
    hop = torch.ops.higher_order.run_and_save_rng_state
    g.call_function(hop, (torch.ops.aten.from_file.default, "/tmp/victim", True, 8))
    g.output(x)
    ep = types.SimpleNamespace(graph_module=torch.fx.GraphModule(torch.nn.Module(), g))
    assert _export_ops(ep) == {"aten.from_file.default", "run_and_save_rng_state"}
    g2 = torch.fx.Graph()
    y = g2.call_function(torch.ops.aten.relu.default, (g2.placeholder("x"),))
    g2.output(g2.call_function(__import__("operator").getitem, ((y,), 0)))
    assert _export_ops(types.SimpleNamespace(graph_module=torch.fx.GraphModule(torch.nn.Module(), g2))) == set()


def test_an_export_archive_is_screened_before_torch_reads_it(tmp_path):
    """A second review ran code inside torch.export.load itself: a symbolic size is read with sympy.sympify (eval),
    and a data/aotinductor/ member is dlopen'ed. Both are refused before torch sees the archive; so are a getattr on
    torch in TorchScript code and operators that change process-wide state (the RNG, autograd)."""
    import types
    import zipfile

    from netinv.models.screen import _export_ops, check_torchscript_archive

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    ep = torch.export.export(net, (torch.rand(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "ok.pt2")
    assert load_model(tmp_path / "ok.pt2", device="cpu").num_outputs == 3  # a dynamic batch: symbolic sizes

    def rewrite(name: str, edit) -> Path:
        with zipfile.ZipFile(tmp_path / "ok.pt2") as zi, zipfile.ZipFile(tmp_path / name, "w") as zo:
            for info in zi.infolist():
                zo.writestr(info, edit(info.filename, zi.read(info)))
            if name == "aoti.pt2":
                root = zi.namelist()[0].split("/")[0]
                zo.writestr(f"{root}/data/aotinductor/model/x.wrapper.so", b"\x7fELF")
        return tmp_path / name

    marker = tmp_path / "MARKER"

    def evil_size(member: str, data: bytes) -> bytes:
        if not member.endswith("models/model.json"):
            return data
        text = data.decode()
        assert "expr_str" in text
        return text.replace('"Symbol(', f'"__import__(\'os\').system(\'touch {marker}\') and 0 or Symbol(', 1).encode()

    with pytest.raises(ModelError, match="symbolic size .* not a plain expression"):
        load_model(rewrite("sympify.pt2", evil_size), device="cpu")
    with pytest.raises(ModelError, match="holds .*data/aotinductor/model/x.wrapper.so"):
        load_model(rewrite("aoti.pt2", lambda member, data: data), device="cpu")
    assert not marker.exists()

    with zipfile.ZipFile(tmp_path / "g.pt", "w") as z:
        z.writestr("m/code/__torch__/m.py", "def forward(self, x):\n    f = getattr(torch, 'save')\n    return x\n")
    with pytest.raises(ModelError, match="getattr on torch"):
        check_torchscript_archive(tmp_path / "g.pt")
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.call_function(torch.ops.aten.manual_seed.default, (1234,))
    g.output(x)
    assert _export_ops(types.SimpleNamespace(graph_module=torch.fx.GraphModule(nn.Module(), g))) == {
        "aten.manual_seed.default"}


def test_torch_reads_the_bytes_netinv_checked_and_case_tricks_are_refused(tmp_path, net):
    """A third review hid members from the checks: a second central directory (Python's zipfile and PyTorch's
    reader then see different archives) and names in another case (torch looks them up ignoring case). Torch now
    loads a canonical copy of what was checked; case-duplicates and unexpected TorchScript members are refused."""
    import zipfile

    torch.jit.save(torch.jit.script(net.eval()), tmp_path / "ok.pt")
    ok = load_model(tmp_path / "ok.pt", input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(ok.logits(X), net(X), atol=1e-5)
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    code = next(n for n in members if n.endswith(".py"))
    for name, extra, match in (
            ("case_dup.pt", {code.upper(): b"x = 1\n"}, "member names repeat \\(ignoring case\\)"),
            ("upper.pt", {code.rsplit("/", 1)[0] + "/EXTRA.PY": b"x = 1\n"}, "unexpected member .*EXTRA.PY")):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for n, data in {**members, **extra}.items():
                z.writestr(n, data)
        with pytest.raises(ModelError, match=match):
            load_model(tmp_path / name, input_shape=(1, 8, 8), device="cpu")
    prepended = tmp_path / "prepended.pt"  # leading bytes: zipfile adjusts its offsets, so the copy is what it read
    prepended.write_bytes(b"\0" * 1000 + (tmp_path / "ok.pt").read_bytes())
    again = load_model(prepended, input_shape=(1, 8, 8), device="cpu")
    assert torch.allclose(again.logits(X), net(X), atol=1e-5)


def test_input_guards_and_attribute_names_of_a_pt2_cannot_carry_code(tmp_path):
    """A fourth review ran code through two more fields torch turns into Python: `guards_code` (exec'ed on every
    forward) and a parameter name (written unescaped into the generated forward). Both are refused."""
    import json
    import zipfile

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    ep = torch.export.export(net, (torch.rand(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "ok.pt2")
    marker = tmp_path / "MARKER"

    def rewrite(name: str, edit) -> Path:
        with zipfile.ZipFile(tmp_path / "ok.pt2") as zi, zipfile.ZipFile(tmp_path / name, "w") as zo:
            for info in zi.infolist():
                data = zi.read(info)
                if info.filename.endswith(".json"):
                    data = json.dumps(edit(info.filename, json.loads(data))).encode()
                zo.writestr(info, data)
        return tmp_path / name

    def guard(member: str, d: dict) -> dict:
        if member.endswith("models/model.json"):
            d["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]
        return d

    evil = "1.weight\"),__import__('os'),getattr(self,\"1"

    def rename(member: str, d: object) -> object:
        return json.loads(json.dumps(d).replace('"1.weight"', json.dumps(evil)))

    with pytest.raises(ModelError, match="input guard .* not a plain comparison"):
        load_model(rewrite("guard.pt2", guard), device="cpu")
    with pytest.raises(ModelError, match="names the attribute .* not a dotted name"):
        load_model(rewrite("name.pt2", rename), device="cpu")

    def arg_name(member: str, d: object) -> object:  # a fifth review: forward's argument names, unescaped too
        def plant(o: object) -> None:
            if isinstance(o, dict):
                if "forward_arg_names" in o:  # the review's payload: a default argument, then a string that
                    # swallows the text up to the name's second copy, so the generated forward still compiles
                    o["forward_arg_names"] = [f"input=__import__('os').system('touch {marker}') and None):\n"
                                              '    _ = ("""' + ",(["]
                for v in o.values():
                    plant(v)
            elif isinstance(o, list):
                for v in o:
                    plant(v)

        if member.endswith("models/model.json"):
            assert "forward_arg_names" in json.dumps(d)
            plant(d)
        return d

    with pytest.raises(ModelError, match="names the attribute \"input=__import__"):
        load_model(rewrite("argname.pt2", arg_name), device="cpu")

    def string_input(member: str, d: object) -> object:  # an eighth review: a string input becomes a guard
        if not member.endswith("models/model.json"):
            return d
        text = json.dumps(d)
        user = json.dumps(d["graph_module"]["signature"]["input_specs"][-1]["user_input"]["arg"])
        return json.loads(text.replace(user, json.dumps({"as_string": "a' or __import__('os') or 'b"})))

    with pytest.raises(ModelError, match="takes a as_string input, not a tensor"):
        load_model(rewrite("string.pt2", string_input), device="cpu")
    assert not marker.exists()
    assert load_model(tmp_path / "ok.pt2", device="cpu").num_outputs == 3
    from netinv.models.screen import _plain_guard

    # the guards honest exports hold (a shape branch; an automatic spatial dimension) pass
    assert _plain_guard("L['x'].size()[0] > 2") and _plain_guard("(8*L['x'].size()[2]) == 64")
    assert not _plain_guard("L['x'].size.__globals__") and not _plain_guard("open('f', 'w') is None")


class _BatchBranch(nn.Module):
    """A shape branch: exported with an automatic batch, the program only accepts batches of 3 or more."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.lin(x) * 2 if x.shape[0] > 2 else self.lin(x)


def test_an_export_that_accepts_only_some_batch_sizes_names_the_re_export(tmp_path):
    ep = torch.export.export(_BatchBranch().eval(), (torch.rand(4, 1, 8, 8),),
                             dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(ep, tmp_path / "b.pt2")  # its guards_code holds an honest size guard, which passes the screen
    with pytest.raises(ModelError, match="Guard failed|Expected input at") as e:
        load_model(tmp_path / "b.pt2", device="cpu")
    assert "Dim('batch', min=1)" in e.value.fix


def test_pytree_specs_and_guard_strings_cannot_carry_code():
    """A sixth review: torch's treespec reader imports the module an `__enum__` context names, codegen writes a
    spec's dict keys raw, and torch pastes a guard into a quoted message, so a string constant with a quote closes
    it. Specs must be plain tuples / lists / dicts with identifier keys; a guard's strings only L['name'] keys."""
    import json

    from netinv.models.screen import _plain_guard, _plain_spec

    leaf = {"type": None, "context": None, "children_spec": []}
    args = {"type": "builtins.tuple", "context": "null", "children_spec": [leaf]}
    kwargs = {"type": "builtins.dict", "context": json.dumps(["x"]), "children_spec": [leaf]}
    honest = json.dumps([1, {"type": "builtins.tuple", "context": "null", "children_spec": [args, kwargs]}])
    assert _plain_spec(honest) and _plain_spec(json.dumps([1, leaf])) and _plain_spec(None)
    evil_key = json.loads(honest)
    evil_key[1]["children_spec"][1]["context"] = json.dumps(["x=__import__('os').system('touch M')#'\n"])
    enum = json.loads(honest)
    enum[1]["children_spec"][1]["context"] = json.dumps([{"__enum__": True, "fqn": "this:s", "name": "a"}])
    other = json.loads(honest)
    other[1]["children_spec"][0]["type"] = "collections.defaultdict"
    for spec in (evil_key, enum, other, [2, leaf]):
        assert not _plain_spec(json.dumps(spec)), spec
    assert _plain_guard("L['x'].size()[0] > 2")
    assert not _plain_guard("L['input'].size()[0] != \"+str(__import__('os').system('touch M'))+\"")
    assert not _plain_guard("L['x y'].size()[0] > 2")


def test_torchscript_pickles_may_name_only_module_classes_and_tensor_rebuilders(tmp_path, net):
    """A seventh review: torch.jit's unpickler builds any registered C++ class a pickle names, and
    __torch__.torch.classes.aten.OpaqueObject's __setstate__ unpickles a Python payload: code ran from data.pkl of a
    model whose code and graph were clean. The pickles' globals are allowlisted before torch.jit.load."""
    import pickle
    import zipfile

    from netinv.models.screen import _odd_pickle_globals

    torch.jit.save(torch.jit.script(net.eval()), tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    assert all(not _odd_pickle_globals(data) for name, data in members.items() if name.endswith("pkl"))
    payload = (b"\x80\x02c__torch__.torch.classes.aten\nOpaqueObject\n)\x81X\x04\x00\x00\x00AAAAb."
               )  # GLOBAL, EMPTY_TUPLE, NEWOBJ, a string state, BUILD
    assert _odd_pickle_globals(payload) == ["__torch__.torch.classes.aten OpaqueObject"]
    assert _odd_pickle_globals(pickle.dumps(print, protocol=4)) == ["STACK_GLOBAL"]
    data_pkl = next(n for n in members if n.endswith("/data.pkl"))
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        for name, data in members.items():
            z.writestr(name, payload if name == data_pkl else data)
    with pytest.raises(ModelError, match="pickled state names .*OpaqueObject"):
        load_model(tmp_path / "evil.pt", input_shape=(1, 8, 8), device="cpu")


class _Hooked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def _pre_hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
    return None


def test_torchscript_hooks_and_foreign_operator_namespaces_are_refused(tmp_path):
    """A ninth review: a scripted forward pre-hook (restored as a Python hook by torch.jit.load, outside the forward
    graph the check walks) called torch.ops.inductor._reinterpret_tensor and read past a buffer. Code naming an
    operator namespace outside the tensor library is refused in any method, and so is a model with hooks."""
    import zipfile

    from netinv.models.screen import check_torchscript_archive

    with zipfile.ZipFile(tmp_path / "ns.pt", "w") as z:
        z.writestr("m/code/__torch__.py", "def hook(self, x: Tuple[Tensor]):\n"
                                          "    _0 = ops.inductor._reinterpret_tensor(self.buf, [64], [1], 0)\n")
    with pytest.raises(ModelError, match="ops.inductor._reinterpret_tensor"):
        check_torchscript_archive(tmp_path / "ns.pt")
    m = _Hooked().eval()
    m.register_forward_pre_hook(_pre_hook)
    try:
        scripted = torch.jit.script(m)
    except Exception as e:  # a torch that cannot script hooks cannot save them either
        pytest.skip(f"this torch does not script forward hooks: {e}")
    torch.jit.save(scripted, tmp_path / "hooked.pt")
    with pytest.raises(ModelError, match="forward hooks"):
        load_model(tmp_path / "hooked.pt", input_shape=(1, 8, 8), device="cpu")
    torch.jit.save(torch.jit.script(_Hooked().eval()), tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="input shape of .* is unknown"):  # its attributes are never asked
        load_model(tmp_path / "plain.pt", device="cpu")


class _Alias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 3)
        self.register_buffer("buf", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        peek = torch.ops.aten._reshape_alias(self.buf, [4], [1])  # a file can forge the size: no bounds check
        return self.lin(x.flatten(1)) + peek.sum() * 0


def test_operators_without_bounds_checks_are_refused(tmp_path):
    """A tenth review: aten._reshape_alias with a size forged in the file read and wrote outside a tensor's memory
    (a segfault in load_model), in both formats. Such operators are refused by name."""
    from netinv.models.screen import _unsafe_name

    for name in ("_reshape_alias", "as_strided", "resize_", "_sparse_coo_tensor_unsafe", "_unsafe_view", "set_",
                 "_nested_view_from_buffer", "from_file"):
        assert _unsafe_name(name), name
    for name in ("linear", "conv2d", "relu", "view", "reshape", "flatten", "sum", "cat", "batch_norm", "set"):
        assert _unsafe_name(name) == (name == "set"), name
    torch.jit.save(torch.jit.script(_Alias().eval()), tmp_path / "alias.pt")
    with pytest.raises(ModelError, match="_reshape_alias"):
        load_model(tmp_path / "alias.pt", input_shape=(1, 8, 8), device="cpu")


def test_a_model_that_returns_probabilities_is_refused_and_log_probabilities_are_not(tmp_path):
    """Audit G: an exported CNN ending in softmax ran softmax twice (a generator reported confidence 0.2 that was not
    the model's, PGD succeeded 28% of the time against 92%) without a word."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    probs = nn.Sequential(body, nn.Softmax(-1)).eval()
    path = tmp_path / "p.pt2"
    torch.export.save(torch.export.export(probs, (torch.rand(3, 1, 8, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), path)
    with pytest.raises(ModelError, match="returns probabilities .*not logits") as e:
        load_model(path, device="cpu")
    assert "remove the final softmax" in e.value.fix
    assert load_model(nn.Sequential(body, nn.LogSoftmax(-1)), input_shape=(1, 8, 8)).num_outputs == 10
    assert load_model(body, input_shape=(1, 8, 8)).num_outputs == 10
