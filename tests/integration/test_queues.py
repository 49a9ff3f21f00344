"""The interactive queue and the ETAs (docs/operations.md, "Queues"), through the real API, Redis and database.

The stack of the first tests has no worker, so every job stays queued where the API put it: what a click starts
(paths up to 65 points, distances, flatness in its default mode, tori up to 33x33, an upload's evaluation) lands on
the ``interactive`` queue, training and anything larger on the batch queues; queued jobs have 1-based positions per
queue, in the order they were asked for, and ETAs that grow with the work ahead of them. That a click finishes while
a training holds the batch worker is shown in the browser (tests/browser/test_dashboard.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import ApiStack
from tests.integration.test_api_jobs import upload
from toroid.store.ledger import interactive, queue_for
from toroid.store.settings import get_settings

pytestmark = pytest.mark.integration

LONG_TRAIN = {"architecture": "mlp", "config": {"widths": [64, 64]}, "dataset": "digits", "sampler": "sgd",
              "seed": 0, "epochs": 400, "target_error": None}


@pytest.fixture(scope="module")
def idle(tmp_path_factory, request):
    """Redis and the API, no worker: jobs stay queued."""
    stack = ApiStack(tmp_path_factory.mktemp("queues") / "home", worker=False, wait=False)
    try:
        minima = request.getfixturevalue("digits_minima")
        stack.wait_api()
        stack.ids = [upload(stack.url, model, f"m{i}") for i, model in enumerate(minima)]
        yield stack
    finally:
        stack.stop()


def jobs(stack: ApiStack) -> dict[str, dict]:
    response = httpx.get(f"{stack.url}/api/jobs", params={"limit": 1000}, timeout=30)
    assert response.status_code == 200, response.text
    return {job["id"]: job for job in response.json()}


def post(stack: ApiStack, path: str, body: dict) -> dict:
    response = httpx.post(f"{stack.url}/api{path}", json=body, timeout=60)
    assert response.status_code in (200, 201, 202), response.text
    data = response.json()
    return data.get("job") or data


def test_clicks_go_to_the_interactive_queue_and_long_work_to_the_batch_queue(idle):
    a, b = idle.ids
    routed = {
        "geodesic 33": post(idle, "/analyses/path", {"a": a, "b": b, "kind": "geodesic", "points": 33}),
        "linear 65": post(idle, "/analyses/path", {"a": a, "b": b, "kind": "linear", "points": 65}),
        "linear 129": post(idle, "/analyses/path", {"a": a, "b": b, "kind": "linear", "points": 129}),
        "one_bend": post(idle, "/analyses/path", {"a": a, "b": b, "kind": "one_bend", "points": 9}),
        "torus 33": post(idle, "/analyses/torus", {"minimum_ids": [a, b], "resolution": 33}),
        "torus 65": post(idle, "/analyses/torus", {"minimum_ids": [a, b], "resolution": 65}),
        "flatness": post(idle, "/analyses/flatness", {"minimum_id": a}),
        "flatness exact": post(idle, "/analyses/flatness", {"minimum_id": a, "mode": "exact", "samples": 20}),
        "train": post(idle, "/minima/train", LONG_TRAIN),
    }
    queues = {name: job["queue"] for name, job in routed.items()}
    batch = get_settings().heavy_queue
    assert queues == {"geodesic 33": "interactive", "linear 65": "interactive", "linear 129": batch,
                      "one_bend": batch, "torus 33": "interactive", "torus 65": batch, "flatness": "interactive",
                      "flatness exact": batch, "train": batch}, queues
    records = jobs(idle)
    evaluations = [j for j in records.values() if j["kind"] == "evaluate"]
    assert len(evaluations) == 2 and {j["queue"] for j in evaluations} == {"interactive"}
    assert all(records[job["id"]]["cost"] > 0 for job in routed.values())  # the estimate travels with the job


def test_queued_jobs_have_positions_per_queue_in_order_and_growing_etas(idle):
    records = sorted((j for j in jobs(idle).values() if j["state"] == "queued"),
                     key=lambda j: (j["created_at"], j["queue_position"] or 0))
    by_queue: dict[str, list[dict]] = {}
    for job in records:
        by_queue.setdefault(job["queue"], []).append(job)
    assert set(by_queue) >= {"interactive", get_settings().heavy_queue}
    for queue, queued in by_queue.items():
        assert [j["queue_position"] for j in queued] == list(range(1, len(queued) + 1)), queue
        etas = [j["eta_s"] for j in queued]
        assert all(e is not None and e > 0 for e in etas), queued
        assert etas == sorted(etas), (queue, etas)  # one worker per queue (none alive): each waits for those ahead
        assert all(j["estimated_s"] > 0 and j["wait_s"] >= 0 and j["duration_s"] is None for j in queued)
    long_train = next(j for j in records if j["kind"] == "train")
    short_path = next(j for j in records if j["kind"] == "path" and j["params"]["points"] == 33)
    assert long_train["estimated_s"] > 10 * short_path["estimated_s"]  # 400 epochs vs one 33-point profile
    one = httpx.get(f"{idle.url}/api/jobs/{short_path['id']}", timeout=10).json()
    assert one["queue_position"] == short_path["queue_position"] and one["eta_s"] == pytest.approx(
        short_path["eta_s"], rel=0.5)


def test_the_interactive_limit_sends_a_large_click_to_the_batch_queue(monkeypatch):
    """``TOROID_INTERACTIVE_MAX_COST`` bounds the interactive queue; unknown cost never counts as small."""
    params = {"kind": "geodesic", "points": 33}
    assert queue_for("path", params, 1e9) == "interactive"
    monkeypatch.setenv("TOROID_INTERACTIVE_MAX_COST", "1e8")
    get_settings.cache_clear()
    try:
        assert queue_for("path", params, 1e9) == get_settings().heavy_queue
        assert queue_for("distances", {}, 1e9) == "cpu"  # light, but above the bound: the cpu batch queue
        assert not interactive("path", params, None)
        assert not interactive("train", {}, 1.0)  # training never runs there, however small
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
