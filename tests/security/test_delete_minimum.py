"""Deleting a minimum that queued or running jobs use answers 409 naming them; ``?force=true`` cancels them first
and then deletes (real stack without a worker, so the analysis jobs stay queued)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack
from tests.security.stacks import api_only
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    yield from api_only(tmp_path_factory, "delete")


@pytest.fixture(scope="module")
def minima(stack) -> list[str]:
    """Three uploaded digits MLPs (widths [32]; untrained nets are valid checkpoints), by id."""
    from toroid.worker.landscape.nets import build_model

    ids = []
    for seed in range(3):
        model = build_model("mlp", MINIMUM_CONFIG, ((64,), 10), seed=seed)
        response = httpx.post(
            f"{stack.url}/api/minima", timeout=60, files={"file": ("m.safetensors", state_dict_bytes(model))},
            data={"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits",
                  "name": f"m{seed}"},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def analyze(url: str, kind: str, body: dict) -> dict:
    response = httpx.post(f"{url}/api/analyses/{kind}", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["job"]


def test_a_minimum_in_use_is_409_naming_the_jobs(stack, minima):
    a, b, c = minima
    flat = analyze(stack.url, "flatness", {"minimum_id": a, "samples": 2})
    path = analyze(stack.url, "path", {"a": b, "b": a, "kind": "linear", "points": 3})
    unrelated = analyze(stack.url, "flatness", {"minimum_id": c, "samples": 2})
    response = httpx.delete(f"{stack.url}/api/minima/{a}")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert f"flatness job {flat['id']} (queued)" in detail and f"path job {path['id']} (queued)" in detail, detail
    assert unrelated["id"] not in detail and "?force=true" in detail
    assert httpx.get(f"{stack.url}/api/minima/{a}").status_code == 200  # nothing was deleted
    for job in (flat, path, unrelated):
        assert httpx.get(f"{stack.url}/api/jobs/{job['id']}").json()["state"] == "queued"


def test_force_cancels_the_jobs_then_deletes(stack, minima):
    a, _b, c = minima
    jobs = httpx.get(f"{stack.url}/api/jobs", params={"state": "queued"}).json()
    using = [j["id"] for j in jobs if a in (j["params"].get("minimum_ids") or [])]
    others = [j["id"] for j in jobs if j["id"] not in using]
    assert len(using) == 2 and others
    assert httpx.delete(f"{stack.url}/api/minima/{a}", params={"force": "true"}).status_code == 204
    assert httpx.get(f"{stack.url}/api/minima/{a}").status_code == 404
    for job_id in using:
        assert httpx.get(f"{stack.url}/api/jobs/{job_id}").json()["state"] == "cancelled"
    for job_id in others:  # the jobs on other minima go on
        assert httpx.get(f"{stack.url}/api/jobs/{job_id}").json()["state"] == "queued"
    assert httpx.get(f"{stack.url}/api/minima/{c}").status_code == 200


def test_a_minimum_no_active_job_uses_is_deleted_directly(stack, minima):
    _a, b, _c = minima
    # b's only job (the path, with a) was cancelled above: a finished job holds nothing back
    assert httpx.delete(f"{stack.url}/api/minima/{b}").status_code == 204
    assert httpx.delete(f"{stack.url}/api/minima/{b}").status_code == 404
