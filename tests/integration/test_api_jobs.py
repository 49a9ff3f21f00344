"""Analyses as jobs through the real stack: a geodesic path matches the core computed directly, results are
cached by key, identical requests in flight share one job, cancellation stops a running task, and a worker
killed by SIGKILL mid-job loses nothing (the job succeeds after a new worker starts, with one result row).

The stack of this module uses PostgreSQL when the machine has it (initdb / pg_ctl and psycopg2), SQLite
otherwise; the other modules use SQLite, so both databases run the job lifecycle."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest
import redis

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack, postgres_or_none, wait_job
from toroid.worker.landscape import build_model, load_dataset, path_profile
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory, request):
    """Redis, one worker and the API on PostgreSQL (else SQLite); uploads limited to 1 MiB."""
    root = tmp_path_factory.mktemp("jobs")
    postgres = postgres_or_none()
    stack = None
    try:
        stack = ApiStack(root / "home", {"TOROID_MAX_UPLOAD_MB": "1"},
                         database_url=postgres.url if postgres else None, wait=False)
        request.getfixturevalue("digits_minima")  # trained while the processes boot
        stack.wait_api()
        stack.wait_worker()
        stack.expected_dialect = "postgresql" if postgres else "sqlite"
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        if postgres is not None:
            postgres.stop()


def test_the_stack_runs_on_postgresql_when_the_machine_has_it(api_stack):
    health = httpx.get(f"{api_stack.url}/api/health").json()
    assert health["database"]["ok"], health
    assert health["database"]["dialect"] == api_stack.expected_dialect


def upload(url: str, model, name: str, config: dict = MINIMUM_CONFIG) -> str:
    response = httpx.post(
        f"{url}/api/minima", files={"file": (f"{name}.safetensors", state_dict_bytes(model))},
        data={"architecture": "mlp", "config": json.dumps(config), "dataset": "digits", "name": name}, timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def pair(api_stack, digits_minima) -> tuple[str, str]:
    return upload(api_stack.url, digits_minima[0], "a"), upload(api_stack.url, digits_minima[1], "b")


def count_jobs(url: str) -> int:
    return len(httpx.get(f"{url}/api/jobs", params={"limit": 1000}).json())


def test_geodesic_path_matches_the_core_and_is_cached(api_stack, pair, digits_minima):
    url = api_stack.url
    request = {"a": pair[0], "b": pair[1], "kind": "geodesic", "points": 17}
    response = httpx.post(f"{url}/api/analyses/path", json=request)
    assert response.status_code == 202, response.text
    assert response.json()["cached"] is False
    job = wait_job(url, response.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["partial"]["x"] == pytest.approx([i / 16 for i in range(17)])  # every point was reported live
    result = httpx.get(f"{url}/api/results/{job['result_id']}").json()
    assert result["kind"] == "path" and result["minimum_ids"] == list(pair) and len(result["key"]) == 64

    direct = path_profile(*digits_minima, load_dataset("digits"), kind="geodesic", points=17)
    assert result["data"]["barrier"] == pytest.approx(direct.barrier, abs=1e-12)
    assert result["data"]["train_error"] == pytest.approx(direct.train_error, abs=1e-12)
    assert result["data"]["length"] == pytest.approx(direct.length, rel=1e-6)
    assert job["partial"]["train_error"] == pytest.approx(direct.train_error, abs=1e-12)

    jobs_before = count_jobs(url)
    again = httpx.post(f"{url}/api/analyses/path", json={**request, "bn": "recompute"})  # defaults normalized
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["cached"] is True and body["result"]["id"] == result["id"] and body["job"]["id"] == job["id"]
    assert body["job"]["state"] == "succeeded"
    assert count_jobs(url) == jobs_before, "a cached request queued a job"

    table = list(csv.reader(io.StringIO(httpx.get(f"{url}/api/results/{result['id']}.csv").text)))
    assert table[0] == ["x", "distance", "train_error", "test_error", "train_loss", "test_loss"]
    assert len(table) == 18 and float(table[-1][0]) == 1.0


def test_distances_between_two_minima(api_stack, pair):
    url = api_stack.url
    response = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": list(pair)})
    # 200 when the server already computed them for the map (it asks when a minimum joins a family), else 202
    assert response.status_code in (200, 202), response.text
    answer = response.json()
    job = answer["job"] if answer["cached"] else wait_job(url, answer["job"]["id"])
    assert job["state"] == "succeeded", job
    data = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
    assert data["ids"] == list(pair) and data["names"] == ["a", "b"]
    for metric in ("geodesic", "raw", "aligned", "normalized", "normalized_aligned"):
        matrix = data["matrices"][metric]
        assert matrix[0][0] == matrix[1][1] == 0.0 and matrix[0][1] == matrix[1][0] > 0.0, metric
    assert data["matrices"]["aligned"][0][1] <= data["matrices"]["raw"][0][1] + 1e-9


def test_one_bend_path_through_the_api(api_stack, pair):
    url = api_stack.url
    request = {"a": pair[0], "b": pair[1], "kind": "one_bend", "bend_kind": "geodesic", "points": 5, "epochs": 2}
    job = wait_job(url, httpx.post(f"{url}/api/analyses/path", json=request).json()["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["partial"]["retrain"]["epoch"] == [1, 2] and len(job["partial"]["segment"]["x"]) == 10
    data = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
    assert len(data["profiles"]) == 2 and data["epochs"] == 2
    assert data["barrier"] == max(max(p["train_error"]) for p in data["profiles"])
    table = list(csv.reader(io.StringIO(httpx.get(f"{url}/api/results/{job['result_id']}.csv").text)))
    assert table[0][0] == "segment" and len(table) == 11


def test_flatness_section_and_torus_through_the_api(api_stack, pair):
    url = api_stack.url
    third = upload(url, build_model("mlp", MINIMUM_CONFIG, load_dataset("digits"), seed=2), "c")
    requests = {
        "flatness": {"minimum_id": pair[0], "sigmas": [0.0, 0.5, 0.25], "samples": 4, "mode": "exact"},
        "section": {"minimum_ids": [*pair, third], "space": "normalized", "resolution": 3},
        "torus": {"minimum_ids": list(pair), "resolution": 3},
    }
    jobs = {kind: httpx.post(f"{url}/api/analyses/{kind}", json=body).json()["job"]["id"]
            for kind, body in requests.items()}
    data = {}
    for kind, job_id in jobs.items():
        job = wait_job(url, job_id)
        assert job["state"] == "succeeded", job
        data[kind] = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
        rows = httpx.get(f"{url}/api/results/{job['result_id']}.csv").text.strip().splitlines()
        assert len(rows) == 1 + (3 if kind == "flatness" else 9), (kind, rows)
    energy = data["flatness"]
    assert energy["sigmas"] == [0.0, 0.5, 0.25] and energy["samples"] == [0, 4, 4]
    minimum = httpx.get(f"{url}/api/minima/{pair[0]}").json()
    assert minimum["local_energy"] == energy["mean"][1]  # the value at the largest sigma
    assert minimum["flatness_result_id"] == httpx.get(f"{url}/api/jobs/{jobs['flatness']}").json()["result_id"]
    assert len(data["section"]["train_error"]) == 3 and data["section"]["space"] == "normalized"
    assert len(data["torus"]["train_error"]) == 3 and set(data["torus"]["minima"]) >= {"A", "B"}


def test_flatness_defaults_to_sequential_sampling_with_se_n_and_capped(api_stack, pair):
    """The default mode samples each sigma to a standard error of 0.05 points or 10% (docs/method.md §6) within
    max_samples; the record and its CSV carry the SE, the count and the cap flag per sigma."""
    url = api_stack.url
    response = httpx.post(f"{url}/api/analyses/flatness", json={"minimum_id": pair[0], "sigmas": [0.0, 0.3, 0.6],
                                                                "max_samples": 48, "samples": 7})
    assert response.status_code == 202, response.text
    job = wait_job(url, response.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    assert (job["params"]["mode"], job["params"]["max_samples"], job["params"]["samples"]) == ("sequential", 48, 100)
    data = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
    assert data["mode"] == "sequential" and data["samples"][0] == 0 and len(data["capped"]) == 3
    for i in (1, 2):
        assert 16 <= data["samples"][i] <= 48
        target = max(0.0005, 0.1 * abs(data["mean"][i]))
        assert data["stderr"][i] <= target or (data["capped"][i] and data["samples"][i] == 48)
    table = list(csv.reader(io.StringIO(httpx.get(f"{url}/api/results/{job['result_id']}.csv").text)))
    assert table[0] == ["sigma", "mean", "std", "stderr", "samples", "capped"] and len(table) == 4


def test_analysis_requests_are_validated(api_stack, pair):
    url = api_stack.url
    assert httpx.post(f"{url}/api/analyses/path", json={"a": pair[0], "b": "missing"}).status_code == 404
    flip = httpx.post(f"{url}/api/analyses/path", json={"a": pair[0], "b": pair[1], "kind": "flip"})
    assert flip.status_code == 422 and "binary" in flip.json()["detail"]
    repeated = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": [pair[0], pair[0]]})
    assert repeated.status_code == 422 and "repeated" in repeated.json()["detail"]
    other = upload(url, build_model("mlp", {"widths": [8]}, load_dataset("digits"), seed=0), "w8", {"widths": [8]})
    mixed = httpx.post(f"{url}/api/analyses/path", json={"a": pair[0], "b": other})
    assert mixed.status_code == 422 and "needs minima of one family" in mixed.json()["detail"]


def test_identical_request_in_flight_shares_the_job_and_cancel_stops_it(api_stack, pair):
    url = api_stack.url
    request = {"minimum_id": pair[0], "sigmas": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "samples": 400,
               "mode": "exact"}
    first = httpx.post(f"{url}/api/analyses/flatness", json=request)
    second = httpx.post(f"{url}/api/analyses/flatness", json=request)
    assert first.status_code == second.status_code == 202
    job_id = first.json()["job"]["id"]
    assert second.json()["job"]["id"] == job_id and second.json()["cached"] is False
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/api/jobs/{job_id}").json()["state"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelled = httpx.post(f"{url}/api/jobs/{job_id}/cancel").json()
    assert cancelled["state"] == "cancelled"
    log = api_stack.home / "logs" / "worker.log"
    deadline = time.monotonic() + 60
    while f"job {job_id} cancelled" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)  # the task stops at its next progress report (one per sigma)
    assert f"job {job_id} cancelled" in log.read_text(), "the task did not stop"
    job = httpx.get(f"{url}/api/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["result_id"] is None
    assert api_stack.count("SELECT COUNT(*) FROM results WHERE key = (SELECT key FROM jobs WHERE id = :id)",
                           id=job_id) == 0
    third = httpx.post(f"{url}/api/analyses/flatness", json=request)  # a cancelled job is not reused
    assert third.status_code == 202 and third.json()["job"]["id"] != job_id
    httpx.post(f"{url}/api/jobs/{third.json()['job']['id']}/cancel")


def test_worker_killed_mid_job_loses_nothing(api_stack):
    """SIGKILL the worker's process group while a path job runs; a new worker re-enqueues the job once its
    heartbeat is stale (TOROID_STALE_JOB_S=3 here) and it succeeds with exactly one result row. A job whose
    message vanished from Redis meanwhile (deleted here, as a Redis restart without persistence would) is
    re-enqueued by the same recovery."""
    url = api_stack.url
    data = load_dataset("digits")
    wide = {"widths": [256, 256]}
    a = upload(url, build_model("mlp", wide, data, seed=10), "wide-a", wide)
    b = upload(url, build_model("mlp", wide, data, seed=11), "wide-b", wide)
    response = httpx.post(f"{url}/api/analyses/path", json={"a": a, "b": b, "kind": "geodesic", "points": 33})
    job_id = response.json()["job"]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}").json()
        if job["state"] == "running" and job["partial"].get("x"):
            break
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    assert 0.0 < job["progress"] < 1.0, f"the job finished before the kill; make it longer: {job}"
    api_stack.kill_worker()
    assert httpx.get(f"{url}/api/jobs/{job_id}").json()["state"] == "running"  # nobody knows yet

    lost = httpx.post(f"{url}/api/minima/train", json={"config": {"widths": [8]}, "epochs": 1, "seed": 5}).json()
    broker = redis.Redis.from_url(api_stack.env["TOROID_REDIS_URL"])
    assert broker.delete("gpu") == 1  # the train job's only message is gone
    broker.close()

    api_stack.start_worker()
    job = wait_job(url, job_id, timeout_s=240)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    assert api_stack.count(
        "SELECT COUNT(*) FROM results WHERE key = (SELECT key FROM jobs WHERE id = :id)", id=job_id
    ) == 1
    assert len(httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]["x"]) == 33

    lost = wait_job(url, lost["id"], timeout_s=120)
    assert lost["state"] == "succeeded" and lost["attempts"] == 1, lost
    assert api_stack.count("SELECT COUNT(*) FROM minima WHERE job_id = :id", id=lost["id"]) == 1
