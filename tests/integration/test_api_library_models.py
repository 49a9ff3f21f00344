"""Library architectures by name through the real API: a torchvision ResNet-18 (random weights, CIFAR-shaped
synthetic data written by the test in the npz layout) uploaded as `torchvision:resnet18` and as a `.pt2` program;
a permuted, rescaled copy aligns back to the same point of the landscape in both forms; a timm network is built by
name too; names that would download weights are refused; a lab's own package, installed beside the server,
registers an architecture through the `toroid.architectures` entry points that the API lists and the worker trains
(docs/models.md)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
import torchvision

from tests.core.test_registry import write_distribution
from tests.integration.conftest import ApiStack, wait_job
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.pt2 import save_pt2_bytes
from toroid.worker.landscape.symmetry import random_symmetry

pytestmark = pytest.mark.integration
CIFAR_SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    home = tmp_path_factory.mktemp("library") / "home"
    rng = np.random.default_rng(0)  # CIFAR-shaped synthetic data, in the npz layout under the data root
    (home / "datasets").mkdir(parents=True)
    np.savez(home / "datasets" / "cifar-like.npz",
             x_train=rng.standard_normal((48, *CIFAR_SHAPE)).astype(np.float32), y_train=rng.integers(0, 10, 48),
             x_test=rng.standard_normal((32, *CIFAR_SHAPE)).astype(np.float32), y_test=rng.integers(0, 10, 32))
    plugins = write_distribution(tmp_path_factory.mktemp("site"), {"lab_mlp": "lab_models:spec"})
    started = ApiStack(home, {"TOROID_MAX_UPLOAD_MB": "200", "PYTHONPATH": str(plugins)})
    try:
        started.wait_worker()
        yield started
    finally:
        started.stop()


FORM = {"dataset": "npz", "dataset_options": json.dumps({"path": "cifar-like.npz", "num_classes": 10})}


def upload(stack: ApiStack, payload: bytes, filename: str, **fields) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/minima", files={"file": (filename, payload)}, data={**FORM, **fields},
                      timeout=300)


def evaluated(stack: ApiStack, response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    record = response.json()
    job = wait_job(stack.url, record["evaluation_job_id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    return httpx.get(f"{stack.url}/api/minima/{record['id']}").json()


def geodesic(stack: ApiStack, ids: list[str]) -> list[list[float]]:
    answer = httpx.post(f"{stack.url}/api/analyses/distances", json={"minimum_ids": ids}, timeout=120).json()
    job = wait_job(stack.url, answer["job"]["id"], timeout_s=600)
    assert job["state"] == "succeeded", job
    return httpx.get(f"{stack.url}/api/results/{job['result_id']}").json()["data"]["matrices"]["geodesic"]


@pytest.fixture(scope="module")
def resnets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # BatchNorm statistics away from their defaults, so rescaling moves them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    copy, moves = random_symmetry(model, seed=1, flip=False, rescale=(0.5, 2.0))
    assert len(moves["permutations"]) >= 10 and moves["scales"]
    return model, copy.eval()


def test_a_torchvision_resnet18_by_name_aligns_a_permuted_rescaled_copy(stack, resnets):
    model, copy = resnets
    layout = httpx.get(f"{stack.url}/api/architectures/torchvision:resnet18/layout",
                       params={"dataset": FORM["dataset"], "dataset_options": FORM["dataset_options"]}).json()
    assert layout["config"] == {"num_classes": 10} and layout["tensors"][0]["key"] == "conv1.weight"
    records = [evaluated(stack, upload(stack, state_dict_bytes(m), f"{name}.safetensors",
                                       architecture="torchvision:resnet18", name=name))
               for m, name in ((model, "resnet18"), (copy, "resnet18-copy"))]
    assert records[0]["architecture"] == "torchvision:resnet18" and records[0]["config"] == {"num_classes": 10}
    assert records[0]["test_error"] == records[1]["test_error"]  # the same function
    distances = geodesic(stack, [r["id"] for r in records])
    assert distances[0][1] < 1e-5, distances


def test_the_same_resnet18_as_a_pt2_program_aligns_too(stack, resnets):
    model, copy = resnets

    def program(m: torch.nn.Module) -> bytes:
        return save_pt2_bytes(torch.export.export(m, (torch.randn(2, *CIFAR_SHAPE),),
                                                  dynamic_shapes=({0: torch.export.Dim("batch")},)))

    records = [evaluated(stack, upload(stack, program(m), f"{name}.pt2", name=name))
               for m, name in ((model, "resnet18-program"), (copy, "resnet18-program-copy"))]
    assert records[0]["config"] == records[1]["config"]  # one family: the same structure
    assert not records[0]["symmetries"]["unsupported"], records[0]["symmetries"]
    assert geodesic(stack, [r["id"] for r in records])[0][1] < 1e-5


def test_timm_models_are_built_by_name_and_downloads_are_refused(stack):
    from toroid.worker.landscape.nets import build_model

    net = build_model("timm:resnet10t", {}, (CIFAR_SHAPE, 10), seed=0)
    assert net(torch.randn(2, *CIFAR_SHAPE)).shape == (2, 10)
    for config, phrase in [({"pretrained": True}, "never downloads"), ({"weights": "DEFAULT"}, "never downloads"),
                           ({"num_classes": 1000}, "cannot be read on a dataset of 10 classes")]:
        response = httpx.get(f"{stack.url}/api/architectures/torchvision:resnet18/layout",
                             params={**FORM, "config": json.dumps(config)})
        assert response.status_code == 422 and phrase in response.json()["detail"], response.text
    missing = httpx.get(f"{stack.url}/api/architectures/torchvision:resnet_nope/layout", params=FORM)
    assert missing.status_code == 422 and "has no model" in missing.json()["detail"]
    digits = httpx.get(f"{stack.url}/api/architectures/torchvision:resnet18/layout", params={"dataset": "digits"})
    assert digits.status_code == 422 and "cannot read inputs of shape (1, 8, 8)" in digits.json()["detail"], \
        digits.text


def test_a_labs_package_registers_an_architecture_the_api_lists_and_the_worker_trains(stack):
    listed = {a["name"]: a for a in httpx.get(f"{stack.url}/api/architectures").json()}
    assert listed["lab_mlp"]["source"] == "plugin" and listed["lab_mlp"]["defaults"] == {"hidden": 24}
    assert listed["mlp"]["source"] == "builtin"
    job = httpx.post(f"{stack.url}/api/minima/train", json={
        "architecture": "lab_mlp", "config": {"hidden": 8}, **{k: json.loads(v) if k == "dataset_options" else v
                                                              for k, v in FORM.items()},
        "sampler": "sgd", "seed": 0, "epochs": 2, "name": "lab"}, timeout=60)
    assert job.status_code == 202, job.text
    done = wait_job(stack.url, job.json()["id"], timeout_s=300)
    assert done["state"] == "succeeded", done
    minimum = httpx.get(f"{stack.url}/api/minima/{done['minimum_id']}").json()
    assert (minimum["architecture"], minimum["config"]) == ("lab_mlp", {"hidden": 8})
    checkpoint = httpx.get(f"{stack.url}/api/minima/{minimum['id']}/checkpoint").content
    from safetensors.torch import load as load_safetensors

    assert sorted(load_safetensors(checkpoint)) == ["decoder.bias", "decoder.weight", "encoder.bias", "encoder.weight"]
