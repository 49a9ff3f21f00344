"""Studies through the real stack (Redis, one worker process of concurrency 1, the API): a tiny study completes
(its steps fan out as jobs of their own, and one worker of concurrency 1 runs them all: no deadlock) and its report
has every section; a worker SIGKILLed mid-study is replaced and the study completes without retraining a finished
minimum."""

from __future__ import annotations

import io
import re
import time
import zipfile

import httpx
import pytest

#: Four minima (2 samplers x 2 seeds) of a small MLP, tiny budgets: the protocol, not the science, is under test.
TINY = {
    "name": "tiny", "architecture": "mlp", "config": {"widths": [16]}, "dataset": "digits",
    "samplers": [{"sampler": "sgd", "epochs": 3},
                 {"sampler": "rsgd", "epochs": 2, "hyperparameters": {"replicas": 2}}],
    "seeds": [0, 1],
    "flatness": {"sigmas": [0.0, 0.25, 0.5], "samples": 4, "mode": "exact"},
    "paths": {"kinds": ["linear", "linear_aligned", "geodesic"], "points": 5, "pairs": 1},
    "one_bend": {"epochs": 2, "pairs": 1, "points": 5},
}
# 4 minima; pair types sgd-sgd, sgd-rsgd, rsgd-rsgd capped at 1 pair each: 3 pairs x 3 kinds + 3 one-bend paths
TINY_STEPS = 4 + 4 + 1 + 9 + 3


def wait_study(url: str, study_id: str, timeout_s: float = 150) -> dict:
    deadline = time.monotonic() + timeout_s
    record: dict = {}
    while time.monotonic() < deadline:
        record = httpx.get(f"{url}/api/studies/{study_id}", timeout=10).json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            return record
        time.sleep(0.3)
    raise AssertionError(f"study {study_id} still {record.get('state')} after {timeout_s} s: {record}")


def test_tiny_study_completes_with_a_full_report(api_stack):
    url = api_stack.url
    presets = httpx.get(f"{url}/api/studies/presets", timeout=30).json()
    assert {"digits-mlp", "hmm-committee", "mnist-mlp", "fmnist-lenet", "cifar10-vgg16bn",
            "fmnist-binary-mlp"} <= {p["name"] for p in presets}

    bad = httpx.post(f"{url}/api/studies", json={**TINY, "samplers": ["nosuch"]}, timeout=30)
    assert bad.status_code == 422 and "nosuch" in bad.json()["detail"]

    posted = httpx.post(f"{url}/api/studies", json=TINY, timeout=30)
    assert posted.status_code == 202, posted.text
    study = wait_study(url, posted.json()["id"])
    assert study["state"] == "succeeded", study
    assert study["steps_done"] == study["steps_total"] == TINY_STEPS
    assert len(study["minimum_ids"]) == 4 and len(study["result_ids"]) == TINY_STEPS - 4

    # the study's minima and results are ordinary ones: the API lists them, the cache answers identical requests
    listed = {m["id"] for m in httpx.get(f"{url}/api/minima", timeout=10).json()}
    assert set(study["minimum_ids"]) <= listed
    a, b = study["minimum_ids"][:2]
    again = httpx.post(f"{url}/api/analyses/flatness", json={"minimum_id": a, "sigmas": [0.0, 0.25, 0.5],
                                                           "samples": 4, "mode": "exact"}, timeout=30)
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["result"]["id"] in study["result_ids"]
    minimum = httpx.get(f"{url}/api/minima/{a}", timeout=10).json()
    assert minimum["local_energy"] is not None

    page = httpx.get(f"{url}/api/studies/{study['id']}/report.html", timeout=60)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for section in ("Summary", "Minima", "Flatness", "Paths", "Distances", "One-bend paths",
                    "Local energy by sampler", "Local energy vs test error", "Barrier heights",
                    "Train error along geodesic paths", "Train error along one-bend paths",
                    "geodesic barriers lower than linear ones", "one-bend barriers below 1% train error"):
        assert section in page.text, section
    assert not re.search(r"<script[^>]*\ssrc=", page.text)  # offline: plotly.js is inline, nothing is fetched

    table = httpx.get(f"{url}/api/studies/{study['id']}/report.csv", timeout=60).text
    tables = {line.split(",", 1)[0] for line in table.splitlines()[1:]}
    assert {"minima", "flatness", "distances", "paths", "barriers", "summary"} <= tables
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(f"{url}/api/studies/{study['id']}/report.zip", timeout=60).content))
    assert {"report.html", "minima.csv", "flatness.csv", "distances.csv", "paths.csv", "barriers.csv",
            "summary.csv"} <= set(archive.namelist())
    paths_csv = archive.read("paths.csv").decode().splitlines()
    assert len(paths_csv) == 1 + 9 * 5 + 3 * (5 + 5)  # every point of every path (one-bend: two segments)

    # posting the same spec again returns the finished study and computes nothing
    jobs_before = api_stack.count("SELECT count(*) FROM jobs")
    repeat = httpx.post(f"{url}/api/studies", json={**TINY, "name": "renamed"}, timeout=30)
    assert repeat.status_code == 200 and repeat.json()["id"] == study["id"]
    assert api_stack.count("SELECT count(*) FROM jobs") == jobs_before
    assert httpx.get(f"{url}/api/studies/nosuch", timeout=10).status_code == 404


def test_killed_worker_study_resumes_without_retraining(api_stack):
    url = api_stack.url
    spec = {**TINY, "name": "resume", "seeds": [2, 3],
            "samplers": [{"sampler": "sgd", "epochs": 4},
                         {"sampler": "rsgd", "epochs": 6, "hyperparameters": {"replicas": 3}}]}
    posted = httpx.post(f"{url}/api/studies", json=spec, timeout=30)
    assert posted.status_code == 202, posted.text
    study_id = posted.json()["id"]
    deadline = time.monotonic() + 120
    before: list[str] = []
    training = ("SELECT count(*) FROM jobs WHERE kind = 'train' AND state = 'running' AND worker IS NOT NULL "
                "AND params LIKE '%resume%'")
    while time.monotonic() < deadline:  # kill once two minima exist and the worker is training a third
        record = httpx.get(f"{url}/api/studies/{study_id}", timeout=10).json()
        before = record["minimum_ids"]
        if len(before) >= 2 and api_stack.count(training) == 1:
            break
        assert record["state"] in ("queued", "running"), record
        time.sleep(0.1)
    assert len(before) >= 2, "the study trained no minima in time"
    assert record["state"] == "running" and record["steps_done"] < record["steps_total"]
    trained_before = api_stack.count("SELECT count(*) FROM minima WHERE name LIKE 'resume%'")
    api_stack.kill_worker()
    api_stack.start_worker()
    study = wait_study(url, study_id, timeout_s=180)
    assert study["state"] == "succeeded", study
    # what the killed worker ran (one of the study's steps, or the study's own round) was taken up again
    assert api_stack.count("SELECT max(attempts) FROM jobs WHERE created_at >= (SELECT created_at FROM jobs "
                           "WHERE id = :study_job)", study_job=study["job_id"]) >= 2
    assert set(before) <= set(study["minimum_ids"])
    # one minimum and one training job per (sampler, seed): nothing was trained twice
    assert api_stack.count("SELECT count(*) FROM minima WHERE name LIKE 'resume%'") == 4 >= trained_before
    assert api_stack.count("SELECT count(*) FROM jobs WHERE kind = 'train' AND params LIKE '%resume%'") == 4
    assert api_stack.count("SELECT count(*) FROM jobs WHERE kind = 'study'") == 2  # tiny + resume


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-v"])
