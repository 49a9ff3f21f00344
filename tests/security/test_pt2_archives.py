"""Hostile ``torch.export`` archives (``.pt2``) are refused before anything in them runs; genuine ones load and run.

Genuine archives come from real ``torch.export.export`` programs: a small CNN with BatchNorm and a residual block, and
an MLP. The hostile ones are those archives with their zip entries edited so that a plain ``torch.export.load`` (or
the module it returns) would run code, or would read something other than what was checked (zip bombs, two models,
damaged files): every payload's code creates a marker file in ``tmp_path``, and every test asserts the refusal (a
ValueError worded as advice) and that the marker was never created. ``test_payloads_are_real``
shows, in ``tmp_path`` only, that the same payloads do create their markers when handed to pickle, sympy or a plain
``torch.export.load``, so the refusals are not vacuous.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.pt2 import inspect_pt2, is_pt2, load_pt2, program_module, save_pt2_bytes

ROOT = "archive/"  # torch.export.save into a buffer puts every entry under this folder
WEIGHTS = "data/weights/model_weights_config.json"
CONSTANTS = "data/constants/model_constants_config.json"
MODEL = "models/model.json"
SAMPLE = "data/sample_inputs/model.pt"
TOUCHED: list[Path] = []  # where the custom op below writes when it runs


@torch.library.custom_op("toroid_pt2_test::touch", mutates_args=())
def touch_op(x: torch.Tensor) -> torch.Tensor:
    """A custom op with a side effect: what a registered op named by a hostile graph could do."""
    for path in TOUCHED:
        path.write_text("the custom op ran")
    return x.clone()


@touch_op.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Touch:
    """Unpickling this opens (creates) a file: the smallest pickle that runs code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(Touch(marker), protocol=2)


def evil_torch_save(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Touch(marker), buffer)  # pickles the reduce; nothing runs until it is loaded
    return buffer.getvalue()


def evil_expr(marker: Path) -> str:
    return f"(lambda: __import__('builtins').open('{marker}', 'w'))()"


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.block = Residual(6)
        self.head = nn.Linear(6, 10)
        self.register_buffer("shift", torch.linspace(0, 1, 10), persistent=False)  # a constant, not in state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(torch.relu(self.bn(self.stem(x))))
        return self.head(y.mean(dim=(2, 3))) * torch.tensor([2.0]) + self.shift  # torch.tensor: a lifted constant


class Touching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ops.toroid_pt2_test.touch(x))


def exported(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor, bytes]:
    return model, x, save_pt2_bytes(torch.export.export(model, (x,)))


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, torch.Tensor, bytes]:
    torch.manual_seed(0)
    model = SmallCNN()
    model.train()
    with torch.no_grad():  # a few batches so that the running statistics are not the defaults
        for _ in range(3):
            model(torch.randn(8, 1, 8, 8))
    return exported(model.eval(), torch.randn(2, 1, 8, 8))


@pytest.fixture(scope="module")
def mlp() -> tuple[nn.Module, torch.Tensor, bytes]:
    torch.manual_seed(1)
    return exported(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval(), torch.randn(4, 64))


@pytest.fixture(scope="module")
def touching() -> tuple[nn.Module, torch.Tensor, bytes]:
    torch.manual_seed(2)
    return exported(Touching().eval(), torch.randn(3, 4))


def unpack(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename.removeprefix(ROOT): archive.read(info) for info in archive.infolist()}


def pack(files: dict[str, bytes], compress: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in files.items():
            archive.writestr(ROOT + name, payload)
        for name, payload in (compress or {}).items():
            archive.writestr(ROOT + name, payload, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def edited(data: bytes, rel: str, change: Callable[[dict], object]) -> bytes:
    files = unpack(data)
    obj = json.loads(files[rel])
    change(obj)
    files[rel] = json.dumps(obj).encode()
    return pack(files)


def refused(data: bytes, marker: Path, *words: str) -> str:
    """Both entry points refuse with a message naming ``words``, and the marker was never created."""
    with pytest.raises(ValueError) as caught:
        inspect_pt2(data)
    message = str(caught.value)
    with pytest.raises(ValueError):
        load_pt2(data)
    for word in words:
        assert word in message, message
    assert "\x1b" not in message and "weights_only=False" not in message
    assert not marker.exists(), "a payload of the archive ran"
    return message


def nodes(program: dict) -> list[dict]:
    return program["graph_module"]["graph"]["nodes"]


def pickled_weight(data: bytes, marker: Path) -> bytes:
    """head.weight marked use_pickle, its file a pickle that runs code (torch.load(weights_only=False) in torch)."""
    files = unpack(data)
    config = json.loads(files[WEIGHTS])
    entry = config["config"]["head.weight"]
    entry["use_pickle"] = True
    files["data/weights/" + entry["path_name"]] = evil_pickle(marker)
    files[WEIGHTS] = json.dumps(config).encode()
    return pack(files)


def pickled_constant(data: bytes, marker: Path, path_name: str) -> bytes:
    """A constant marked use_pickle: a tensor_<n> file goes through torch.load, an opaque_obj_<n> one through
    pickle.loads."""
    files = unpack(data)
    config = json.loads(files[CONSTANTS])
    config["config"]["lifted_tensor_0"] = {"path_name": path_name, "is_param": False, "use_pickle": True,
                                           "tensor_meta": None}
    files[CONSTANTS] = json.dumps(config).encode()
    files["data/constants/" + path_name] = evil_pickle(marker)
    return pack(files)


def pickled_sample(data: bytes, marker: Path, payload: Callable[[Path], bytes] | None = None) -> bytes:
    """Sample inputs that fail weights_only=True, which torch then retries with weights_only=False."""
    files = unpack(data)
    files[SAMPLE] = (payload or evil_torch_save)(marker)
    return pack(files)


def guarded(data: bytes, marker: Path) -> bytes:
    """A guard expression: program.module() execs it as Python in the generated guard function."""
    return edited(data, MODEL, lambda program: program.update(guards_code=[f"open({str(marker)!r}, 'w') is not None"]))


# ---------------------------------------------------------------------------------------------- genuine archives


def test_genuine_archive_manifest_matches_the_model(cnn):
    model, x, data = cnn
    assert is_pt2(data)
    manifest = inspect_pt2(data)
    state = model.state_dict()
    assert manifest.model_name == "model" and manifest.archive_version == "0"
    assert manifest.state_shapes() == {k: tuple(v.shape) for k, v in state.items()}
    assert {t.name for t in manifest.buffers} >= {"bn.running_mean", "bn.running_var", "block.bn2.num_batches_tracked"}
    assert {t.name: t.dtype for t in manifest.buffers}["bn.num_batches_tracked"] == "int64"
    assert [(i.shape, i.dtype) for i in manifest.inputs] == [((2, 1, 8, 8), "float32")]
    assert {t.name: t.shape for t in manifest.constants} == {"shift": (10,), "lifted_tensor_0": (1,)}
    assert {"aten.conv2d.default", "aten.batch_norm.default", "aten.add.Tensor"} <= manifest.ops
    assert manifest.num_nodes >= 10 and manifest.weight_bytes == sum(v.numel() * v.element_size()
                                                                     for v in state.values())


@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_genuine_archive_loads_runs_and_takes_safetensors_weights(which, request):
    model, x, data = request.getfixturevalue(which)
    program = load_pt2(data, max_bytes=len(data) * 2, max_entries=100)
    module = program_module(program)
    with torch.no_grad():
        assert torch.allclose(module(x), model(x), atol=1e-6)
    assert set(module.state_dict()) == set(model.state_dict()) == set(program.state_dict)
    # weights stored as safetensors (as the server stores them) go back in under the same names, BN buffers included
    torch.manual_seed(3)
    twin = type(model)() if which == "cnn" else nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    twin.train()
    with torch.no_grad():
        twin(torch.randn(8, *x.shape[1:]))
    twin.eval()
    module.load_state_dict(load_safetensors(state_dict_bytes(twin)), strict=True)
    with torch.no_grad():
        assert torch.allclose(module(x), twin(x), atol=1e-6)
        assert not torch.allclose(module(x), model(x), atol=1e-3)
        assert torch.allclose(program_module(program)(x), model(x), atol=1e-6)  # the program kept its own weights


def test_dynamic_batch_archive_loads_without_its_guard_code(mlp):
    model = mlp[0]
    program = torch.export.export(model, (torch.randn(4, 64),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", max=256)},))
    data = save_pt2_bytes(program)
    assert inspect_pt2(data).inputs[0].shape[1] == 64 and isinstance(inspect_pt2(data).inputs[0].shape[0], str)
    x = torch.randn(9, 64)
    with torch.no_grad():
        assert torch.allclose(program_module(load_pt2(data))(x), model(x), atol=1e-6)


# ----------------------------------------------------------------------------------------------- hostile archives


def test_pickled_weight_is_refused(cnn, tmp_path):
    marker = tmp_path / "weight-ran"
    refused(pickled_weight(cnn[2], marker), marker, "'head.weight'", "pickle")


@pytest.mark.parametrize("path_name", ["tensor_9", "opaque_obj_0"])
def test_pickled_constant_is_refused(cnn, tmp_path, path_name):
    marker = tmp_path / "constant-ran"
    refused(pickled_constant(cnn[2], marker, path_name), marker, "'lifted_tensor_0'", "pickle")


@pytest.mark.parametrize("payload", [evil_torch_save, evil_pickle])
def test_pickled_sample_inputs_are_refused(cnn, tmp_path, payload):
    marker = tmp_path / "sample-ran"
    message = refused(pickled_sample(cnn[2], marker, payload), marker, "sample inputs")
    assert "'io.open'" in message


def test_torchbind_object_is_refused(cnn, tmp_path):
    marker = tmp_path / "torchbind-ran"
    files = unpack(cnn[2])
    files[CONSTANTS] = json.dumps({"config": {"evil": {
        "path_name": "custom_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}).encode()
    files["data/constants/custom_obj_0"] = evil_pickle(marker)
    refused(pack(files), marker, "'evil'", "custom")

    def call_torchbind(program: dict) -> None:  # the graph side: a script object input and a method call on it
        obj = {"name": "evil", "class_fqn": "__torch__.torch.classes.evil.Touch"}
        program["graph_module"]["signature"]["input_specs"].insert(
            0, {"custom_obj": {"arg": obj, "custom_obj_name": "evil"}})
        nodes(program).insert(0, {"target": "torch.ops.higher_order.call_torchbind", "inputs": [
            {"name": "obj", "arg": {"as_custom_obj": obj}, "kind": 1},
            {"name": "method", "arg": {"as_string": "touch"}, "kind": 1}],
            "outputs": [{"as_none": True}], "metadata": {}})

    refused(edited(cnn[2], MODEL, call_torchbind), marker, "torchbind")


def test_custom_op_is_refused(cnn, touching, tmp_path):
    marker = tmp_path / "op-ran"
    TOUCHED[:] = [marker]
    refused(touching[2], marker, "'toroid_pt2_test::touch'", "custom")

    def rename(program: dict) -> None:
        nodes(program)[0]["target"] = "torch.ops.mylib.evil.default"

    refused(edited(cnn[2], MODEL, rename), marker, "'mylib::evil'")

    def as_operator(program: dict) -> None:  # an operator passed as an argument (as auto_functionalized does)
        nodes(program)[0]["inputs"].append({"name": "op", "arg": {"as_operator": "torch.ops.mylib.evil.default"}})

    refused(edited(cnn[2], MODEL, as_operator), marker, "'mylib::evil'")


@pytest.mark.parametrize("attack", ["expr_str", "forward_arg_names", "in_spec", "quote"])
def test_code_in_the_graph_json_is_refused(cnn, tmp_path, attack):
    marker = tmp_path / "json-ran"

    def change(program: dict) -> None:
        graph = program["graph_module"]["graph"]
        signature = program["graph_module"]["module_call_graph"][0]["signature"]
        if attack == "expr_str":  # sympy.sympify evaluates this
            graph["tensor_values"]["x"]["sizes"][0] = {"as_expr": {"expr_str": evil_expr(marker), "hint": None}}
        elif attack == "forward_arg_names":  # becomes `def forward(self, x=open(...))` in the generated module
            signature["forward_arg_names"] = [f"x=open({str(marker)!r}, 'w')"]
        elif attack == "in_spec":  # the tree spec loader imports the module an enum names
            signature["in_spec"] = json.dumps([1, {"type": "builtins.dict", "context": json.dumps(
                [{"__enum__": True, "fqn": "os:sep", "name": "x"}]), "children_spec": []}])
        else:  # a weight name that would close the quotes of the generated getattr(self, "...")
            program["graph_module"]["signature"]["input_specs"][0]["parameter"]["parameter_name"] = (
                f'stem"); open({str(marker)!r}, "w"); ("')

    refused(edited(cnn[2], MODEL, change), marker, "refused")


@pytest.mark.parametrize("attack", ["guards_code", "stack_trace"])
def test_generated_code_from_the_archive_is_left_out(cnn, tmp_path, attack):
    """Guard expressions and stack traces become Python source in program.module(): load_pt2 drops them."""
    model, x, data = cnn
    marker = tmp_path / "generated-ran"

    def stack_trace(program: dict) -> None:
        nodes(program)[0]["metadata"]["stack_trace"] = f'File "m.py", line 1, in f\nx\r    open({str(marker)!r}, "w")'

    program = load_pt2(guarded(data, marker) if attack == "guards_code" else edited(data, MODEL, stack_trace))
    first = next(n for n in program.graph_module.graph.nodes if n.op == "call_function")
    assert program._guards_code == [] and "stack_trace" not in first.meta
    with torch.no_grad():
        assert torch.allclose(program_module(program)(x), model(x), atol=1e-6)
    assert not marker.exists()


def test_zip_bomb_and_limits_are_refused(cnn, tmp_path):
    marker = tmp_path / "never"
    bomb = pack(unpack(cnn[2]), compress={"extra/zeros": bytes(8 << 20)})
    refused(bomb, marker, "zip bomb")
    data = cnn[2]
    with pytest.raises(ValueError, match="at most"):
        inspect_pt2(data, max_bytes=len(data) // 2)
    with pytest.raises(ValueError, match="entries"):
        load_pt2(data, max_entries=5)
    files = unpack(data)  # a weight file with more bytes than its tensor needs
    path = json.loads(files[WEIGHTS])["config"]["head.bias"]["path_name"]
    files["data/weights/" + path] += bytes(1 << 16)
    refused(pack(files), marker, "'head.bias'", "needs 40 bytes")


def test_two_models_are_refused(cnn, mlp, tmp_path):
    files = unpack(cnn[2])
    for rel, payload in unpack(mlp[2]).items():
        if "/model" in rel:  # the program, its configs and sample inputs under the name "other"
            files[rel.replace("/model", "/other")] = payload
    refused(pack(files), tmp_path / "never", "'model'", "'other'", "exactly one")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "torch.save", "no-weights", "version", "aotinductor"])
def test_garbage_and_incomplete_archives_are_refused(cnn, tmp_path, kind):
    data = cnn[2]
    files = unpack(data)
    if kind == "garbage":
        bad = b"PK\x03\x04" + bytes(range(256)) * 8
    elif kind == "truncated":
        bad = data[: len(data) // 2]
    elif kind == "torch.save":
        buffer = io.BytesIO()
        torch.save(cnn[0].state_dict(), buffer)
        bad = buffer.getvalue()
    elif kind == "no-weights":
        del files[WEIGHTS]
        bad = pack(files)
    elif kind == "version":
        files["archive_version"] = b"1"
        bad = pack(files)
    else:
        files["data/aotinductor/model/model.so"] = b"\x7fELF"
        bad = pack(files)
    assert is_pt2(bad) == (kind in ("no-weights", "version", "aotinductor"))
    message = refused(bad, tmp_path / "never")
    assert {"version": "version 0", "no-weights": "weights_config", "aotinductor": "native code"}.get(
        kind, "") in message


# ------------------------------------------------------------------------------------------ the payloads are real


def test_payloads_are_real(cnn, touching, tmp_path):
    """Handed to the code the checks stand in front of, each crafted payload creates its marker (in tmp_path)."""
    import sympy

    markers = {name: tmp_path / name for name in (
        "pickle.loads", "torch.load", "sympify", "weight", "tensor constant", "opaque constant", "sample inputs",
        "guards", "custom op")}
    pickle.loads(evil_pickle(markers["pickle.loads"]))  # our own payloads, each writing only its marker in tmp_path
    torch.load(io.BytesIO(evil_torch_save(markers["torch.load"])), weights_only=False)
    sympy.sympify(evil_expr(markers["sympify"]))  # evaluates the text and returns the opened file
    model, x, data = cnn
    TOUCHED[:] = [markers["custom op"]]
    for archive, inputs in [(pickled_weight(data, markers["weight"]), x),
                            (pickled_constant(data, markers["tensor constant"], "tensor_9"), x),
                            (pickled_constant(data, markers["opaque constant"], "opaque_obj_0"), x),
                            (pickled_sample(data, markers["sample inputs"]), x),
                            (guarded(data, markers["guards"]), x), (touching[2], touching[1])]:
        with contextlib.suppress(Exception):  # most fail after their code ran (a file object is no tensor)
            torch.export.load(io.BytesIO(archive)).module()(inputs)  # a plain load, and the module it returns
    missing = [name for name, path in markers.items() if not path.exists()]
    assert not missing, f"payloads that did not run: {missing}"
