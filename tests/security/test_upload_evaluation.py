"""Finding 9 of the shared-server review: uploads were evaluated inside the API process (a VGG16-BN upload held an
API worker for 333 s). Now an upload is checked (format, keys, shapes, the evaluation's cost) and stored at once;
its train/test error comes from an ``evaluate`` job on a worker. Shown on a real stack *without* a worker: the
upload still answers 201, so no evaluation ran in the API; the job's fate decides the minimum's ``evaluation``."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.nets import build_model

pytestmark = pytest.mark.integration

#: mlp [32] on digits costs 1,797 samples x 2,410 parameters = 4.3e6 to evaluate; [512, 512] costs 6.0e8.
MAX_COST = "1e8"
FORM = {"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    started = ApiStack(tmp_path_factory.mktemp("evaluation") / "home", {"TOROID_MAX_JOB_COST": MAX_COST},
                       worker=False)
    try:
        yield started
    finally:
        started.stop()


def weights(config: dict, seed: int = 0) -> bytes:
    return state_dict_bytes(build_model("mlp", config, ((64,), 10), seed=seed))


def upload(stack: ApiStack, payload: bytes, **fields) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/minima", files={"file": ("m.safetensors", payload)},
                      data={**FORM, **fields}, timeout=60)


def stored(stack: ApiStack) -> tuple[int, int, set[str]]:
    return (stack.count("SELECT COUNT(*) FROM minima"),
            stack.count("SELECT COUNT(*) FROM jobs WHERE kind = 'evaluate'"), stack.artifacts())


def test_an_upload_is_stored_at_once_and_its_evaluation_is_a_queued_job(stack):
    response = upload(stack, weights(MINIMUM_CONFIG), name="pending")
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["evaluation"], record["train_error"], record["test_error"]) == ("pending", None, None)
    job = httpx.get(f"{stack.url}/api/jobs/{record['evaluation_job_id']}").json()
    assert (job["kind"], job["state"], job["params"]["minimum_ids"]) == ("evaluate", "queued", [record["id"]])
    listed = {m["id"]: m for m in httpx.get(f"{stack.url}/api/minima").json()}
    assert listed[record["id"]]["evaluation"] == "pending"


def test_a_cancelled_evaluation_leaves_the_minimum_marked_failed_with_the_reason(stack):
    record = upload(stack, weights(MINIMUM_CONFIG, seed=1), name="cancelled").json()
    cancelled = httpx.post(f"{stack.url}/api/jobs/{record['evaluation_job_id']}/cancel", timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    after = httpx.get(f"{stack.url}/api/minima/{record['id']}").json()
    assert after["evaluation"] == "failed" and after["train_error"] is None
    assert "cancelled" in after["evaluation_error"]


def test_deleting_a_minimum_whose_evaluation_is_pending_cancels_it_instead_of_409(stack):
    record = upload(stack, weights(MINIMUM_CONFIG, seed=2), name="deleted").json()
    response = httpx.delete(f"{stack.url}/api/minima/{record['id']}", timeout=30)
    assert response.status_code == 204, response.text
    job = httpx.get(f"{stack.url}/api/jobs/{record['evaluation_job_id']}").json()
    assert job["state"] == "cancelled"
    assert httpx.get(f"{stack.url}/api/minima/{record['id']}").status_code == 404


def test_an_upload_too_costly_to_evaluate_is_422_with_the_estimate_and_stores_nothing(stack):
    before = stored(stack)
    response = upload(stack, weights({"widths": [512, 512]}), config=json.dumps({"widths": [512, 512]}))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "evaluate job is estimated at" in detail and "1.00e+08" in detail and "TOROID_MAX_JOB_COST" in detail
    assert stored(stack) == before


def test_with_the_broker_down_an_upload_is_503_and_leaves_no_minimum_and_no_file(stack):
    before = stored(stack)
    redis = next(child for child in stack.supervisor.children if child.name == "redis")
    redis.stop()
    response = upload(stack, weights(MINIMUM_CONFIG, seed=3), name="no broker")
    assert response.status_code == 503, response.text
    assert "message broker" in response.json()["detail"]
    minima, jobs, files = stored(stack)
    assert (minima, files) == before[::2]  # the failed evaluation job stays in the ledger, as failed
    assert jobs == before[1] + 1
    assert stack.count("SELECT COUNT(*) FROM jobs WHERE kind = 'evaluate' AND state = 'failed' "
                       "AND error LIKE '%message broker%'") == 1
