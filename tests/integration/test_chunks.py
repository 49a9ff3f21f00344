"""Long analyses split by point ranges into chunks that any worker takes, merged in order (docs/operations.md,
"Chunks"; toroid.worker.chunks), through the real stack: Redis, the API and TWO worker processes of concurrency 1,
with a chunk cost small enough that a digits path or torus splits. The merged result equals the one computation
in this process; the parent's record fills in while its chunks end; cancelling the parent cancels its chunks, and a
cancelled chunk fails its parent with a message naming it. A request cannot make a chunk."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.integration.conftest import ApiStack, two_worker_stack, wait_job
from tests.integration.test_api_jobs import upload
from toroid.store.ledger import INTERACTIVE_QUEUE
from toroid.store.params import PathJob, TorusJob
from toroid.worker.chunks import MAX_CHUNKS, chunk_ranges

pytestmark = pytest.mark.integration

#: sample-parameter operations per chunk (store/cost.py): a 65-point geodesic between two digits MLPs of widths
#: [32] (about 2.8e8) makes 6 chunks; nothing runs on the interactive queue, so every analysis may split
CHUNK_ENV = {"TOROID_CHUNK_COST": "5e7", "TOROID_INTERACTIVE_MAX_COST": "0"}


@pytest.fixture(scope="module")
def two(tmp_path_factory, digits_minima):
    """Redis, the API and two worker processes of concurrency 1 (each consuming every queue), two minima."""
    stack = two_worker_stack(tmp_path_factory.mktemp("chunks") / "home", CHUNK_ENV)
    try:
        stack.ids = [upload(stack.url, model, name) for model, name in zip(digits_minima, "ab", strict=True)]
        _settle(stack)
        yield stack
    finally:
        stack.stop()


def _settle(stack: ApiStack, timeout_s: float = 60) -> None:
    """Wait until no job is queued or running (the uploads' evaluations and the map's distances)."""
    deadline = time.monotonic() + timeout_s
    while stack.count("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')") and time.monotonic() < deadline:
        time.sleep(0.2)


def _chunks(stack: ApiStack, parent: str) -> list[dict]:
    jobs = httpx.get(f"{stack.url}/api/jobs", params={"limit": 1000}, timeout=10).json()
    found = [j for j in jobs if ((j.get("params") or {}).get("chunk") or {}).get("parent") == parent]
    return sorted(found, key=lambda j: j["params"]["chunk"]["index"])


def _result(stack: ApiStack, job: dict) -> dict:
    assert job["state"] == "succeeded", job
    return httpx.get(f"{stack.url}/api/results/{job['result_id']}", timeout=10).json()["data"]


def _wait_split(stack: ApiStack, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.url}/api/jobs/{job_id}", timeout=10).json()
        if (job.get("partial") or {}).get("chunks") or job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not split within {timeout_s} s")


def test_chunk_ranges_cover_the_points_once():
    path = PathJob(a="x", b="y", minimum_ids=["x", "y"], kind="geodesic", points=65)
    ranges = chunk_ranges("path", path, 2.8e8, "gpu", chunk_cost=5e7)
    assert len(ranges) == 6 and ranges[0][0] == 0 and ranges[-1][1] == 65
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False))
    assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    torus = TorusJob(minimum_ids=["x", "y"], resolution=129)
    assert len(chunk_ranges("torus", torus, 1e20, "gpu", chunk_cost=1.0)) == MAX_CHUNKS
    assert chunk_ranges("path", path, 2.8e8, INTERACTIVE_QUEUE, chunk_cost=5e7) == []  # a click stays one job
    assert chunk_ranges("path", path, 4e7, "gpu", chunk_cost=5e7) == []  # cheaper than a chunk
    assert chunk_ranges("path", path, 2.8e8, "gpu", chunk_cost=0) == []  # TOROID_CHUNK_COST=0: never
    assert chunk_ranges("path", path, None, "gpu", chunk_cost=5e7) == []  # no estimate: whole
    flip = PathJob(a="x", b="y", minimum_ids=["x", "y"], kind="flip", points=65)
    assert chunk_ranges("path", flip, 2.8e8, "gpu", chunk_cost=5e7) == []
    tiny = PathJob(a="x", b="y", minimum_ids=["x", "y"], kind="linear", points=3)
    assert chunk_ranges("path", tiny, 1e12, "gpu", chunk_cost=1.0) == [(0, 1), (1, 2), (2, 3)]


def test_job_parameters_hash_to_the_keys_of_their_requests():
    """A job model has ``chunk`` where a request has none: the result keys hashed from either must agree (the map
    looks up the family's distances job by the key of its request)."""
    from toroid.store.params import DistancesJob, DistancesRequest, PathRequest, key_params

    ids = ["a" * 16, "b" * 16]
    assert key_params(DistancesJob(minimum_ids=ids)) == key_params(DistancesRequest(minimum_ids=ids)) == {}
    path = PathJob(a=ids[0], b=ids[1], minimum_ids=ids, points=65)
    assert key_params(path) == key_params(PathRequest(a=ids[0], b=ids[1], points=65))


def test_a_long_path_splits_over_both_workers_and_merges_to_the_whole_profile(two, digits_minima):
    from toroid.worker.landscape import load_dataset, path_profile

    request = {"a": two.ids[0], "b": two.ids[1], "kind": "geodesic", "points": 65}
    posted = httpx.post(f"{two.url}/api/analyses/path", json=request, timeout=30)
    assert posted.status_code == 202, posted.text
    parent = posted.json()["job"]
    job = wait_job(two.url, parent["id"], timeout_s=120)
    data = _result(two, job)
    chunks = _chunks(two, parent["id"])
    assert len(chunks) == 6 and all(c["state"] == "succeeded" for c in chunks), chunks
    assert [c["params"]["chunk"]["start"] for c in chunks][0] == 0 and chunks[-1]["params"]["chunk"]["stop"] == 65
    assert all(c["queue"] != INTERACTIVE_QUEUE and c["result_id"] is None for c in chunks)
    assert len({c["worker"] for c in chunks}) == 2, "both workers took chunks"

    whole = path_profile(*digits_minima, load_dataset("digits"), kind="geodesic", points=65)
    assert data["train_error"] == pytest.approx(whole.train_error, abs=1e-9)
    assert data["test_error"] == pytest.approx(whole.test_error, abs=1e-9)
    assert data["train_loss"] == pytest.approx(whole.train_loss, rel=1e-5)
    assert data["barrier"] == pytest.approx(whole.barrier, abs=1e-9)
    assert data["length"] == pytest.approx(whole.length, rel=1e-6) and data["x"] == whole.x
    assert data["extra"]["alignment"]["method"] == whole.extra["alignment"]["method"]
    assert not (two.home / "artifacts" / "chunks" / parent["id"]).exists(), "the prepared networks are removed"

    again = httpx.post(f"{two.url}/api/analyses/path", json=request, timeout=30).json()
    assert again["cached"] and again["result"]["id"] == job["result_id"]  # one result under the request's key


def test_a_torus_fills_in_as_its_chunks_end_and_equals_the_whole_grid(two, digits_minima):
    from toroid.worker.landscape import load_dataset, torus_slice

    posted = httpx.post(f"{two.url}/api/analyses/torus", json={"minimum_ids": two.ids, "resolution": 9}, timeout=30)
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["job"]["id"]
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = httpx.get(f"{two.url}/api/jobs/{job_id}", timeout=10).json()
        grid = (job.get("partial") or {}).get("grid")
        if grid and job["state"] == "running":
            known = int(np.isfinite(np.array(grid["train_error"], dtype=float)).sum())
            assert known == grid["cells"] and grid["total"] == 81 and grid["phi1"]
            seen.add(known)
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert any(0 < known < 81 for known in seen), f"no partial grid seen: {seen}"
    data = _result(two, job)
    assert len(_chunks(two, job_id)) == 8  # ceil(3.5e8 / 5e7)

    whole = torus_slice(*digits_minima, load_dataset("digits"), resolution=9)
    np.testing.assert_allclose(np.array(data["train_error"], dtype=float), np.array(whole.train_error), atol=1e-9)
    np.testing.assert_allclose(np.array(data["test_error"], dtype=float), np.array(whole.test_error), atol=1e-9)
    assert {k: pytest.approx(v) for k, v in whole.minima.items()} == data["minima"]
    assert {k: pytest.approx(v) for k, v in whole.extra["minima_errors"].items()} == data["extra"]["minima_errors"]
    assert set(data["extra"]["alignment"]) == {"B"}


def test_cancelling_a_split_job_cancels_its_chunks_and_a_cancelled_chunk_fails_its_parent(two):
    url = two.url
    request = {"a": two.ids[0], "b": two.ids[1], "kind": "linear_aligned", "points": 513}  # 45 chunks
    job = _wait_split(two, httpx.post(f"{url}/api/analyses/path", json=request, timeout=30).json()["job"]["id"])
    cancelled = httpx.post(f"{url}/api/jobs/{job['id']}/cancel", timeout=10)
    assert cancelled.status_code == 200, (cancelled.text, job["state"], [c["state"] for c in _chunks(two, job["id"])])
    chunks = _chunks(two, job["id"])
    deadline = time.monotonic() + 60
    while any(c["state"] in ("queued", "running") for c in chunks) and time.monotonic() < deadline:
        time.sleep(0.2)
        chunks = _chunks(two, job["id"])
    assert httpx.get(f"{url}/api/jobs/{job['id']}", timeout=10).json()["state"] == "cancelled"
    assert len(chunks) > 2 and {c["state"] for c in chunks} <= {"cancelled", "succeeded"}
    assert sum(c["state"] == "cancelled" for c in chunks) >= len(chunks) // 2, [c["state"] for c in chunks]
    _settle(two)
    assert two.count("SELECT COUNT(*) FROM results WHERE kind = 'path' AND params LIKE '%513%'") == 0

    job = _wait_split(two, httpx.post(f"{url}/api/analyses/path", json={**request, "points": 511},
                                      timeout=30).json()["job"]["id"])
    last = _chunks(two, job["id"])[-1]
    assert httpx.post(f"{url}/api/jobs/{last['id']}/cancel", timeout=10).status_code == 200
    failed = wait_job(url, job["id"], timeout_s=120)
    assert failed["state"] == "failed", failed
    count = len(_chunks(two, job["id"]))
    assert f"chunk {count}/{count} (job {last['id']}) cancelled" in failed["error"], failed["error"]
    _settle(two)
    assert all(c["state"] in ("cancelled", "succeeded") for c in _chunks(two, job["id"]))
    assert not (two.home / "artifacts" / "chunks" / job["id"]).exists()


def test_a_request_cannot_make_a_chunk(two):
    chunk = {"parent": "0" * 16, "index": 0, "count": 2, "start": 0, "stop": 1, "prepared": True}
    for route, body in (("path", {"a": two.ids[0], "b": two.ids[1]}), ("torus", {"minimum_ids": two.ids})):
        refused = httpx.post(f"{two.url}/api/analyses/{route}", json={**body, "chunk": chunk}, timeout=30)
        assert refused.status_code == 422 and "chunk" in refused.text, refused.text


def test_every_job_record_names_the_worker_process_that_ran_it(two):
    jobs = httpx.get(f"{two.url}/api/jobs", params={"limit": 1000}, timeout=10).json()
    done = [j for j in jobs if j["state"] == "succeeded"]
    assert done and all(" pid " in (j["worker"] or "") for j in done), [j["worker"] for j in done]
    assert len({j["worker"] for j in done}) == 2
