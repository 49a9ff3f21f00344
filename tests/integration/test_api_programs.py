"""A researcher's own network as a torch.export program (.pt2) through the real API (Redis + Celery worker +
uvicorn): a custom CNN with BatchNorm and a residual block, uploaded, evaluated by the worker, normalized, aligned
and walked along a geodesic exactly as the in-process core does it; a GELU MLP keeps its permutations only, and
says so; programs the server cannot feed are refused with advice (docs/models.md)."""

from __future__ import annotations

import io

import httpx
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from torch import nn

from tests.integration.conftest import wait_job
from toroid.worker.landscape import geodesic_distance, load_dataset, normalize, path_profile
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.pt2 import save_pt2_bytes
from toroid.worker.landscape.symmetry import align, random_symmetry

pytestmark = pytest.mark.integration


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU stem, one residual block (conv-BN-ReLU-conv-BN + skip), max pooling, a linear head."""

    def __init__(self, channels: int = 8, classes: int = 10):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(channels * 16, classes)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.head(torch.flatten(self.pool(F.relu(x + y)), 1))


class GeluMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 24), nn.Linear(24, 10)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(torch.flatten(x, 1))))


def trained(model: nn.Module, seed: int, epochs: int = 3) -> nn.Module:
    """A few epochs of SGD on digits: a minimum of the researcher's own making."""
    data = load_dataset("digits")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        order = torch.randperm(len(data.x_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(data.x_train[batch]), data.y_train[batch]).backward()
            optimizer.step()
    return model.eval()


def export(model: nn.Module, dynamic: bool = True) -> bytes:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    return save_pt2_bytes(torch.export.export(model.eval(), (torch.randn(4, 1, 8, 8),), dynamic_shapes=shapes))


def upload(url: str, payload: bytes, name: str, **fields) -> httpx.Response:
    return httpx.post(f"{url}/api/minima", files={"file": (f"{name}.pt2", payload)},
                      data={"dataset": "digits", "name": name, **fields}, timeout=120)


def uploaded(url: str, payload: bytes, name: str) -> dict:
    response = upload(url, payload, name)
    assert response.status_code == 201, response.text
    record = response.json()
    assert wait_job(url, record["evaluation_job_id"])["state"] == "succeeded"
    return httpx.get(f"{url}/api/minima/{record['id']}").json()


def program_of(payload: bytes) -> nn.Module:
    """The test's own archive, loaded the plain way (it is trusted: the test wrote it)."""
    return torch.export.load(io.BytesIO(payload)).module()


@pytest.fixture(scope="module")
def cnns() -> list[nn.Module]:
    return [trained(ResidualCNN(), seed) for seed in (0, 1)]


def test_a_residual_cnn_program_is_uploaded_evaluated_and_described(api_stack, cnns):
    url, data = api_stack.url, load_dataset("digits")
    a = uploaded(url, export(cnns[0]), "cnn-a")
    b = uploaded(url, export(cnns[1]), "cnn-b")
    assert a["architecture"] == b["architecture"] == "export"
    assert a["config"] == b["config"] and len(a["config"]["structure"]) == 64  # one family: same structure
    assert a["program_sha256"] and a["program_sha256"] != b["program_sha256"]
    expected = Evaluator(cnns[0], data).evaluate_state(cnns[0], "both")
    assert a["test_error"] == pytest.approx(expected["test_error"], abs=1e-9)
    assert a["train_error"] == pytest.approx(expected["train_error"], abs=1e-9)

    groups = {g["name"]: g for g in a["symmetries"]["groups"]}
    assert groups["conv1"]["permuted"] and groups["conv1"]["rescaled"]  # followed by BatchNorm and ReLU
    stream = next(g for g in a["symmetries"]["groups"] if g["size"] == 8 and g["name"] != "conv1")
    assert stream["permuted"] and not stream["rescaled"]  # stem + conv2 write into one residual stream
    assert not a["symmetries"]["unsupported"]

    for body, phrase in [({"kind": "one_bend"}, "retrain the bend"), ({"kind": "geodesic", "bn": "recompute"},
                                                                       "fixed at export")]:
        refused = httpx.post(f"{url}/api/analyses/path", json={"a": a["id"], "b": b["id"], **body}, timeout=60)
        assert refused.status_code == 422 and phrase in refused.json()["detail"], refused.text

    canonical = load_safetensors(httpx.get(f"{url}/api/minima/{a['id']}/checkpoint?form=canonical").content)
    module = program_of(export(cnns[0]))
    module.load_state_dict(canonical)
    with torch.no_grad():  # docs/method.md §2: normalization keeps the predictions
        assert torch.equal(module(data.x_test).argmax(1), cnns[0](data.x_test).argmax(1))


def test_a_permuted_rescaled_copy_aligns_back_and_paths_match_the_core(api_stack, cnns):
    url, data = api_stack.url, load_dataset("digits")
    copy, moves = random_symmetry(cnns[0], seed=3, flip=False, rescale=(0.5, 2.0))
    assert moves["permutations"] and moves["scales"]
    records = [uploaded(url, export(m), name) for m, name in ((cnns[0], "cnn-ref"), (copy, "cnn-copy"),
                                                              (cnns[1], "cnn-other"))]
    ids = [r["id"] for r in records]
    answer = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": ids}, timeout=60).json()
    job = wait_job(url, answer["job"]["id"])
    assert job["state"] == "succeeded", job
    geodesic = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]["matrices"]["geodesic"]
    assert geodesic[0][1] < 1e-5  # the copy is the same point of the landscape once symmetries are removed
    assert geodesic[0][2] > 1e-2

    answer = httpx.post(f"{url}/api/analyses/path", json={"a": ids[0], "b": ids[2], "kind": "geodesic",
                                                          "points": 5}, timeout=60).json()
    job = wait_job(url, answer["job"]["id"])
    assert job["state"] == "succeeded", job
    served = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
    local = path_profile(program_of(export(cnns[0])), program_of(export(cnns[1])), data, kind="geodesic",
                         points=5, bn="interpolate").to_dict()
    assert served["barrier"] == pytest.approx(local["barrier"], abs=1e-6)
    assert served["train_error"] == pytest.approx(local["train_error"], abs=1e-6)
    na = normalize(program_of(export(cnns[0])))
    assert geodesic[0][2] == pytest.approx(
        geodesic_distance(na, align(na, normalize(program_of(export(cnns[1]))))), rel=1e-4)


def test_a_gelu_program_keeps_its_permutations_only_and_says_so(api_stack):
    url = api_stack.url
    record = uploaded(url, export(trained(GeluMLP(), 0, epochs=2)), "gelu")
    (hidden,) = [g for g in record["symmetries"]["groups"] if g["name"] == "fc1"]
    assert hidden["permuted"] and not hidden["rescaled"]
    assert any("gelu" in reason for reason in hidden["reasons"]), hidden


def test_programs_the_server_cannot_feed_are_refused_with_advice(api_stack, cnns):
    url = api_stack.url
    before = api_stack.count("SELECT COUNT(*) FROM minima"), api_stack.artifacts()
    static = upload(url, export(cnns[0], dynamic=False), "static")
    assert static.status_code == 422 and "dynamic batch" in static.json()["detail"], static.text
    assert "torch.export.Dim('batch')" in static.json()["detail"]
    wrong = upload(url, export(cnns[0]), "wrong dataset", dataset="hmm")
    assert wrong.status_code == 422 and "input has shape" in wrong.json()["detail"], wrong.text
    for fields, phrase in [({"architecture": "mlp"}, "its own architecture"), ({"config": '{"widths": [8]}'},
                           "takes no config"), ({"key_map": "auto"}, "leave it out")]:
        response = upload(url, export(cnns[0]), "fields", **fields)
        assert response.status_code == 422 and phrase in response.json()["detail"], response.text
    assert (api_stack.count("SELECT COUNT(*) FROM minima"), api_stack.artifacts()) == before


def test_the_same_network_uploaded_by_name_and_as_a_program_is_one_family(api_stack, digits_minima):
    """docs/models.md: the family is the network's structure, whatever file it came from."""
    import json

    from toroid.worker.landscape.io import state_dict_bytes

    url, model = api_stack.url, digits_minima[0]
    by_name = httpx.post(f"{url}/api/minima", files={"file": ("m.safetensors", state_dict_bytes(model))},
                         data={"architecture": "mlp", "config": json.dumps({"widths": [32]}), "dataset": "digits",
                               "name": "by name"}, timeout=60)
    assert by_name.status_code == 201, by_name.text
    program = uploaded(url, export(model), "as program")
    record = by_name.json()
    assert record["structure"] == program["structure"] and record["family"] == program["family"]
    answer = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": [record["id"], program["id"]]},
                        timeout=60).json()
    job = wait_job(url, answer["job"]["id"])
    assert job["state"] == "succeeded", job
    matrices = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]["matrices"]
    assert matrices["geodesic"][0][1] < 1e-6 and matrices["raw"][0][1] < 1e-6  # the same weights, two sources


def test_crafted_archives_are_422_through_the_api_and_run_nothing(api_stack, tmp_path):
    """The archives of tests/security/test_pt2_archives.py, each of which runs code through a plain
    torch.export.load, sent to the real server: 422 naming what was refused, no marker file, nothing stored."""
    import json

    from tests.security import test_pt2_archives as crafted

    torch.manual_seed(0)
    base = crafted.exported(crafted.SmallCNN().eval(), torch.randn(2, 1, 8, 8))[2]
    marker = tmp_path / "payload-ran"

    def custom_op(program: dict) -> None:
        crafted.nodes(program)[0]["target"] = "torch.ops.mylib.evil.default"

    files = crafted.unpack(base)
    files[crafted.CONSTANTS] = json.dumps({"config": {"evil": {
        "path_name": "custom_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}).encode()
    files["data/constants/custom_obj_0"] = crafted.evil_pickle(marker)
    cases = {
        "pickled weight": (crafted.pickled_weight(base, marker), "pickle"),
        "pickled constant": (crafted.pickled_constant(base, marker, "opaque_obj_0"), "pickle"),
        "malicious sample inputs": (crafted.pickled_sample(base, marker), "sample"),
        "torchbind object": (crafted.pack(files), "custom"),
        "custom op": (crafted.edited(base, crafted.MODEL, custom_op), "'mylib::evil'"),
        "zip bomb": (crafted.pack(crafted.unpack(base), compress={"extra/zeros": bytes(8 << 20)}), "zip bomb"),
    }
    before = api_stack.count("SELECT COUNT(*) FROM minima"), api_stack.artifacts()
    for case, (payload, phrase) in cases.items():
        response = upload(api_stack.url, payload, case.replace(" ", "-"))
        assert response.status_code == 422, (case, response.text)
        assert phrase in response.json()["detail"], (case, response.json()["detail"])
        assert not marker.exists(), f"{case}: a payload of the archive ran on the server"
    assert (api_stack.count("SELECT COUNT(*) FROM minima"), api_stack.artifacts()) == before
