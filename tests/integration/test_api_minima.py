"""Minima through the real API (Redis + Celery worker process + uvicorn + SQLite): registries, uploads validated
synchronously (bad ones leave the database and the artifact store unchanged) and evaluated by a job on the worker,
training with live progress, checkpoint downloads, deletion."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load as load_safetensors

from tests.integration.conftest import MINIMUM_CONFIG, wait_job
from toroid.worker.landscape import load_dataset, normalize
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.io import save_minimum, state_dict_bytes

pytestmark = pytest.mark.integration

FORM = {"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits"}


def upload(url: str, payload: bytes, filename: str = "m.safetensors", **fields) -> httpx.Response:
    return httpx.post(f"{url}/api/minima", files={"file": (filename, payload)}, data={**FORM, **fields}, timeout=60)


def snapshot(stack) -> tuple[int, int, set[str]]:
    """Minima, jobs and artifact files; the map's distances jobs, which the server queues by itself when a valid
    minimum joins a family (and which may still arrive from an earlier test), are not a refused request's doing."""
    return (stack.count("SELECT COUNT(*) FROM minima"),
            stack.count("SELECT COUNT(*) FROM jobs WHERE kind != 'distances'"), stack.artifacts())


def test_registries_list_the_core(api_stack):
    url = api_stack.url
    archs = {a["name"]: a for a in httpx.get(f"{url}/api/architectures").json()}
    assert archs["mlp"]["defaults"] == {"widths": [512, 512]} and archs["mlp"]["binary"] is False
    assert archs["binary_mlp"]["binary"] is True
    datasets = {d["name"]: d for d in httpx.get(f"{url}/api/datasets").json()}
    assert datasets["digits"]["available"] is True and "standardize" in datasets["digits"]["options"]
    samplers = {s["name"]: s for s in httpx.get(f"{url}/api/samplers").json()}
    assert {"sgd", "rsgd", "adv"} <= set(samplers) and samplers["sgd"]["defaults"]["lr"] == 0.02


def test_upload_safetensors_and_pt_evaluates_and_serves_checkpoints(api_stack, digits_minima):
    url, model = api_stack.url, digits_minima[0]
    data = load_dataset("digits")
    expected = Evaluator(model, data).evaluate_state(model, "both")

    response = upload(url, state_dict_bytes(model), name="sgd seed 0")
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["name"] == "sgd seed 0" and record["source"] == "upload" and record["sampler"] is None
    # the upload answers before any evaluation: the errors are pending until the worker's evaluation job ends
    assert (record["evaluation"], record["train_error"], record["test_error"]) == ("pending", None, None)
    job = wait_job(url, record["evaluation_job_id"])
    assert (job["kind"], job["state"], job["minimum_id"]) == ("evaluate", "succeeded", record["id"])
    record = httpx.get(f"{url}/api/minima/{record['id']}").json()
    assert record["evaluation"] == "done" and record["evaluation_error"] is None
    assert record["train_error"] == pytest.approx(expected["train_error"], abs=1e-12)
    assert record["test_error"] == pytest.approx(expected["test_error"], abs=1e-12)
    assert record["config"] == MINIMUM_CONFIG and record["dataset_options"] == {"standardize": "feature"}
    assert record["id"] in [m["id"] for m in httpx.get(f"{url}/api/minima").json()]

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    pt = upload(url, buffer.getvalue(), filename="weights.pt")
    assert pt.status_code == 201, pt.text
    assert pt.json()["name"] == "weights"  # the file's stem as display name
    assert pt.json()["checkpoint_sha256"] == record["checkpoint_sha256"]  # same tensors, same artifact

    original = httpx.get(f"{url}/api/minima/{record['id']}/checkpoint").content
    for key, tensor in load_safetensors(original).items():
        assert torch.equal(tensor, model.state_dict()[key])
    canonical = load_safetensors(httpx.get(f"{url}/api/minima/{record['id']}/checkpoint?form=canonical").content)
    for key, tensor in normalize(model).state_dict().items():
        torch.testing.assert_close(canonical[key], tensor)


def test_upload_with_the_sidecar_of_toroid_train(api_stack, digits_minima, tmp_path):
    checkpoint, sidecar = save_minimum(
        digits_minima[1], tmp_path / "rsgd-1.safetensors", architecture="mlp", config=MINIMUM_CONFIG,
        dataset="digits", provenance={"sampler": "rsgd", "seed": 1, "epochs": 8}, name="rsgd-1",
    )
    response = httpx.post(
        f"{api_stack.url}/api/minima",
        files={"file": ("x.safetensors", checkpoint.read_bytes()), "sidecar": ("x.json", sidecar.read_bytes())},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["name"], record["sampler"], record["seed"]) == ("rsgd-1", "rsgd", 1)
    assert record["provenance"]["epochs"] == 8


class Exploit:
    """A pickle whose loading would run code: ``__reduce__`` asks the unpickler to create a file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def bad_uploads(model: torch.nn.Module, tmp_path: Path) -> list[tuple[str, dict, int, str]]:
    """(case, request kwargs, status, phrase the message must contain)."""
    state = model.state_dict()
    narrow = {"config": json.dumps({"widths": [16]})}
    renamed = {("hidden.weight" if k == next(iter(state)) else k): v for k, v in state.items()}
    good = state_dict_bytes(state)
    non_tensor, exploit, whole = io.BytesIO(), io.BytesIO(), io.BytesIO()
    torch.save(model, whole)
    torch.save({"weights": [1.0, 2.0], "epoch": 3}, non_tensor)
    torch.save({"w": Exploit(tmp_path / "pwned")}, exploit)
    return [
        ("wrong shapes", {"payload": good, **narrow}, 422, "expected shape (16, 64), got shape (32, 64)"),
        ("wrong keys", {"payload": state_dict_bytes(renamed)}, 422, "is missing"),
        ("truncated", {"payload": good[: len(good) // 2]}, 422, "safetensors"),
        ("non-tensor pickle", {"payload": non_tensor.getvalue(), "filename": "m.pt"}, 422, "not a tensor"),
        ("code pickle", {"payload": exploit.getvalue(), "filename": "m.pt"}, 422, "names posix.system"),
        ("whole model pickle", {"payload": whole.getvalue(), "filename": "m.pt"}, 422,
         "torch.save(model) instead of torch.save(model.state_dict())"),
        ("not a checkpoint", {"payload": b"hello, world" * 100, "filename": "m.pt"}, 422,
         "not a safetensors, torch state_dict or torch.export file: save model.state_dict() with safetensors"),
        ("oversize", {"payload": os.urandom(2 * 2**20)}, 413, "exceeds the limit of 1 MiB"),
        ("unknown architecture", {"payload": good, "architecture": "transformer"}, 422, "'mlp'"),
        ("unknown dataset", {"payload": good, "dataset": "imagenet"}, 422, "'digits'"),
        ("malformed config JSON", {"payload": good, "config": "{widths: [32"}, 422, "not valid JSON"),
        ("dataset file outside the data folder", {"payload": good, "dataset": "npz",
                                                  "dataset_options": json.dumps({"path": "/etc/passwd"})}, 422,
         "must lie under"),
    ]


def test_bad_uploads_are_refused_and_leave_nothing(api_stack, digits_minima, tmp_path):
    url = api_stack.url
    before = snapshot(api_stack)
    for case, kwargs, status, phrase in bad_uploads(digits_minima[0], tmp_path):
        response = upload(url, **kwargs)
        assert response.status_code == status, (case, response.text)
        detail = response.json()["detail"]
        assert phrase in detail, (case, detail)
        assert "\x1b" not in detail and "weights_only=False" not in detail, (case, detail)  # advice, not torch's
        assert snapshot(api_stack) == before, case
    assert not (tmp_path / "pwned").exists(), "the pickle's code ran"


def test_oversize_is_refused_while_streaming(api_stack):
    """Without a Content-Length the limit applies to the bytes as they arrive; the upload stops there."""
    before = snapshot(api_stack)
    boundary = "toroidboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pt\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(64):  # 4 MiB in total, 4x the limit
            yield b"\0" * 2**16
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(f"{api_stack.url}/api/minima", content=body(), timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert "exceeds the limit of 1 MiB" in response.json()["detail"]
    assert snapshot(api_stack) == before


def test_bad_train_requests_are_refused(api_stack):
    url = api_stack.url
    before = snapshot(api_stack)
    malformed = httpx.post(f"{url}/api/minima/train", content=b'{"architecture": "mlp",',
                           headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and "JSON decode error" in malformed.json()["message"]
    cases = [
        ({"sampler": "adamw"}, "valid samplers"),
        ({"architecture": "mlp", "config": {"widths": [10**9]}}, "at most"),
        ({"hyperparameters": {"learning_rate": 0.1}}, "valid hyperparameters"),
        ({"dataset": "hmm", "dataset_options": {"N": "big"}}, "must be an integer"),
        ({"epochs": 0}, "greater than or equal to 1"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ]
    for body, phrase in cases:
        response = httpx.post(f"{url}/api/minima/train", json=body)
        assert response.status_code == 422, (body, response.text)
        assert phrase in json.dumps(response.json()), (body, response.json())
    assert snapshot(api_stack) == before


def test_train_through_the_api_reports_progress(api_stack):
    url = api_stack.url
    response = httpx.post(f"{url}/api/minima/train", json={
        "architecture": "mlp", "config": {"widths": [32]}, "dataset": "digits", "sampler": "sgd", "seed": 3,
        "epochs": 200, "target_error": 0.0,  # long enough for a progress write (at most one per 0.25 s) mid-run
    })
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued" and job["kind"] == "train" and job["params"]["name"] == "sgd-3"
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job['id']}").json()
        seen.append(job["progress"])
        time.sleep(0.03)
    assert job["state"] == "succeeded", job
    assert seen == sorted(seen), "progress went backwards"
    assert any(0.0 < p < 1.0 for p in seen), f"no intermediate progress observed: {sorted(set(seen))}"
    assert job["progress"] == 1.0 and job["attempts"] == 1
    assert job["partial"]["epoch"] == list(range(1, len(job["partial"]["epoch"]) + 1))
    assert len(job["partial"]["train_error"]) == len(job["partial"]["epoch"])
    minimum = httpx.get(f"{url}/api/minima/{job['minimum_id']}").json()
    assert (minimum["source"], minimum["sampler"], minimum["seed"], minimum["job_id"]) == ("train", "sgd", 3, job["id"])
    assert minimum["train_error"] == pytest.approx(job["partial"]["train_error"][-1], abs=1e-9)
    assert minimum["provenance"]["hyperparameters"]["epochs"] == 200


def test_train_with_target_error_null_runs_the_whole_budget(api_stack):
    """``target_error: null``: the paper's protocol, every epoch of the budget and its schedule (docs/samplers.md)."""
    url = api_stack.url
    response = httpx.post(f"{url}/api/minima/train", json={
        "config": {"widths": [16]}, "dataset": "digits", "sampler": "rsgd", "seed": 4, "epochs": 40,
        "target_error": None,
    })
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["params"]["target_error"] is None
    job = wait_job(url, job["id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    assert job["partial"]["epoch"] == list(range(1, 41))
    provenance = httpx.get(f"{url}/api/minima/{job['minimum_id']}").json()["provenance"]
    assert provenance["epochs_run"] == 40 and provenance["epochs"] == 40
    assert provenance["target_error"] is None and provenance["stop_rule"] == "budget"
    assert provenance["hyperparameters"]["replicas"] == 5


def test_delete_removes_the_record_and_an_unshared_artifact(api_stack, digits_minima):
    url = api_stack.url
    model = digits_minima[0]
    perturbed = {k: v + 0.001 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    record = upload(url, state_dict_bytes(perturbed)).json()
    sha = record["checkpoint_sha256"]
    assert f"{sha[:2]}/{sha}" in api_stack.artifacts()
    assert httpx.delete(f"{url}/api/minima/{record['id']}").status_code == 204
    assert httpx.get(f"{url}/api/minima/{record['id']}").status_code == 404
    assert f"{sha[:2]}/{sha}" not in api_stack.artifacts()
    assert httpx.delete(f"{url}/api/minima/{record['id']}").status_code == 404


def test_a_finished_job_cannot_be_cancelled(api_stack):
    url = api_stack.url
    job = httpx.post(f"{url}/api/minima/train", json={"config": {"widths": [8]}, "epochs": 1}).json()
    job = wait_job(url, job["id"])
    assert job["state"] == "succeeded"
    response = httpx.post(f"{url}/api/jobs/{job['id']}/cancel")
    assert response.status_code == 409 and "already succeeded" in response.json()["detail"]
    assert httpx.get(f"{url}/api/jobs/nope").status_code == 404


def test_a_failing_job_is_marked_failed_and_stores_nothing(api_stack):
    url = api_stack.url
    before = snapshot(api_stack)
    job = httpx.post(f"{url}/api/minima/train", json={
        "config": {"widths": [8]}, "hyperparameters": {"lr": 1e12}, "epochs": 2, "name": "diverges"}).json()
    job = wait_job(url, job["id"])
    assert job["state"] == "failed" and job["minimum_id"] is None, job
    assert "diverged" in job["error"] and "lower the learning rate" in job["error"]
    minima, jobs, artifacts = snapshot(api_stack)
    assert (minima, jobs - 1, artifacts) == before


# --- key mapping: the same network under other names ----------------------------------------------------------------


def sequential_copy(model: torch.nn.Module) -> torch.nn.Sequential:
    """The digits MLP as a researcher's own nn.Sequential: the same tensors under the keys 1.* and 3.*."""
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    weights = list(model.state_dict().values())
    seq.load_state_dict(dict(zip(seq.state_dict(), weights, strict=True)))
    return seq


def test_the_layout_of_an_architecture_lists_the_keys_an_upload_must_hold(api_stack):
    url = api_stack.url
    answer = httpx.get(f"{url}/api/architectures/mlp/layout", params={
        "dataset": "digits", "config": json.dumps(MINIMUM_CONFIG)})
    assert answer.status_code == 200, answer.text
    layout = answer.json()
    assert [(t["key"], t["shape"]) for t in layout["tensors"]] == [
        ("fc1.weight", [32, 64]), ("fc1.bias", [32]), ("out.weight", [10, 32]), ("out.bias", [10])]
    assert (layout["input_shape"], layout["num_classes"], layout["parameters"]) == ([1, 8, 8], 10, 64 * 32 + 32 + 330)
    for params, phrase in [({"dataset": "digits", "config": "{"}, "config is not valid JSON"),
                           ({"dataset": "nope"}, "unknown dataset"),
                           ({"dataset": "digits", "config": json.dumps({"widths": [10**12]})}, "at most")]:
        refused = httpx.get(f"{url}/api/architectures/mlp/layout", params=params)
        assert refused.status_code == 422 and phrase in refused.json()["detail"], refused.text
    assert httpx.get(f"{url}/api/architectures/nope/layout", params={"dataset": "digits"}).status_code == 422


@pytest.mark.parametrize("form", ["safetensors", "torch"])
def test_a_sequential_upload_gets_a_key_map_proposal_and_is_accepted_with_key_map_auto(api_stack, digits_minima,
                                                                                       form):
    url, model = api_stack.url, digits_minima[0]
    seq = sequential_copy(model)
    if form == "safetensors":  # safetensors stores tensors sorted: the proposal must not rely on the file's order
        payload = state_dict_bytes(seq)
    else:
        buffer = io.BytesIO()
        torch.save(seq.state_dict(), buffer)
        payload = buffer.getvalue()
    before = snapshot(api_stack)
    refused = upload(url, payload, name=f"seq {form}")
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["key_map"] == {"1.weight": "fc1.weight", "1.bias": "fc1.bias", "3.weight": "out.weight",
                               "3.bias": "out.bias"}
    assert "key_map=auto" in body["detail"] and "key 'fc1.weight' is missing" in body["detail"]
    assert snapshot(api_stack) == before

    accepted = upload(url, payload, name=f"seq {form}", key_map="auto")
    assert accepted.status_code == 201, accepted.text
    record = accepted.json()
    assert record["provenance"]["key_map"] == body["key_map"]
    wait_job(url, record["evaluation_job_id"])
    evaluated = httpx.get(f"{url}/api/minima/{record['id']}").json()
    expected = Evaluator(seq, load_dataset("digits")).evaluate_state(seq, "both")  # the researcher's own network
    assert evaluated["test_error"] == pytest.approx(expected["test_error"], abs=1e-12)
    stored = load_safetensors(httpx.get(f"{url}/api/minima/{record['id']}/checkpoint").content)
    for key, tensor in model.state_dict().items():
        assert torch.equal(stored[key], tensor)


def test_explicit_and_hostile_key_maps(api_stack, digits_minima):
    url, model = api_stack.url, digits_minima[0]
    payload = state_dict_bytes(sequential_copy(model))
    explicit = {"1.weight": "fc1.weight", "1.bias": "fc1.bias", "3.weight": "out.weight", "3.bias": "out.bias"}
    assert upload(url, payload, key_map=json.dumps(explicit)).status_code == 201
    before = snapshot(api_stack)
    swapped = {**explicit, "1.bias": "out.bias", "3.bias": "fc1.bias"}  # shapes no longer fit: a plain mismatch
    cases = [
        (json.dumps(swapped), "expected shape (32,), got shape (10,)"),
        (json.dumps({**explicit, "9.weight": "x"}), "does not have"),
        (json.dumps({**explicit, "3.bias": "fc1.bias"}), "two tensors the name"),
        ("{not json", "key_map must be 'auto' or a JSON object"),
        (json.dumps(["1.weight"]), "key_map must be 'auto' or a JSON object"),
        (json.dumps({"1.weight": 5}), "key_map must be 'auto' or a JSON object"),
        ("[" * 10_000 + "]" * 10_000, "nests"),
    ]
    for key_map, phrase in cases:
        response = upload(url, payload, key_map=key_map)
        assert response.status_code == 422, (key_map[:40], response.text)
        assert phrase in response.json()["detail"], (key_map[:40], response.text)
    narrow = state_dict_bytes(torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Linear(16, 10)))
    response = upload(url, narrow, key_map="auto")
    assert response.status_code == 422 and "found no renaming" in response.json()["detail"], response.text
    assert "key_map" not in upload(url, narrow).json()  # no proposal when nothing lines up
    assert snapshot(api_stack) == before
