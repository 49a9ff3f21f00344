"""A study's steps fan out over every worker (docs/studies.md, "How it runs"), through the real stack: Redis, the
API and TWO worker processes of concurrency 1. A small study's two trainings run at the same time on the two
workers, and its report holds the same numbers as the same study run in one process (``toroid study run``, inline,
in a home of its own: results are cached by key, so a run in the same database would only reuse them). That ONE
worker of concurrency 1 completes a fanned-out study (no task waits for another) is tests/integration/test_study.py.
Then a failed step fails its study with that step's message, and cancelling a study cancels its steps' jobs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.integration.conftest import ApiStack, two_worker_stack
from tests.integration.test_study import wait_study

ROOT = Path(__file__).resolve().parents[2]

#: Two minima (independent inits: seeds 0 and 1) of a small MLP: the two trainings are independent steps, as are
#: their local energies; then one distance matrix and two paths. No early stop, so both trainings take a while.
FAN = {
    "name": "fan", "architecture": "mlp", "config": {"widths": [24]}, "dataset": "digits",
    "samplers": [{"sampler": "sgd", "epochs": 60}], "seeds": [0, 1], "target_error": None,
    "flatness": {"sigmas": [0.0, 0.25, 0.5], "samples": 4, "mode": "exact"},
    "paths": {"kinds": ["linear", "geodesic"], "points": 5, "pairs": "all"},
    "one_bend": {"enabled": False},
}
FAN_STEPS = 2 + 2 + 1 + 2


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Redis, the API and two worker processes of concurrency 1 (each consuming every queue)."""
    stack = two_worker_stack(tmp_path_factory.mktemp("fan") / "home")
    try:
        yield stack
    finally:
        stack.stop()


def _jobs(stack: ApiStack, kind: str) -> list[dict]:
    with stack.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, state, worker, started_at, finished_at, attempts FROM jobs "
                                       "WHERE kind = :kind ORDER BY created_at"), {"kind": kind}).mappings().all()
    return [dict(r) for r in rows]


def _without_ids(rows: list[list[str]]) -> list[list[str]]:
    """A CSV table without its ``id`` column (each database names its rows itself)."""
    if rows and "id" in rows[0]:
        column = rows[0].index("id")
        return [r[:column] + r[column + 1:] for r in rows]
    return rows


def _report_tables(stack: ApiStack, study_id: str) -> dict[str, list[list[str]]]:
    raw = httpx.get(f"{stack.url}/api/studies/{study_id}/report.zip", timeout=60)
    assert raw.status_code == 200, raw.text
    archive = zipfile.ZipFile(io.BytesIO(raw.content))
    return {name: _without_ids(list(csv.reader(io.StringIO(archive.read(name).decode()))))
            for name in archive.namelist() if name.endswith(".csv")}


def test_steps_run_concurrently_on_two_workers_and_the_report_matches_one_process(two, tmp_path):
    # the same study in one process (inline mode, no worker), in a home of its own, while the workers compute
    spec = tmp_path / "fan.json"
    spec.write_text(json.dumps(FAN))
    env = dict(two.env, TOROID_HOME=str(tmp_path / "inline"))
    env.pop("TOROID_REDIS_URL", None)
    inline = subprocess.Popen(
        [sys.executable, "-c", "from toroid.cli_study import study_app; study_app()", "run", str(spec),
         "--out", str(tmp_path / "report")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        answer = httpx.post(f"{two.url}/api/studies", json=FAN, timeout=30)
        assert answer.status_code == 202, answer.text
        study = wait_study(two.url, answer.json()["id"], timeout_s=240)
        output, _ = inline.communicate(timeout=240)
    finally:
        inline.kill()
    assert study["state"] == "succeeded", study
    assert study["steps_done"] == study["steps_total"] == FAN_STEPS
    summary = study["job"]["partial"]["summary"]  # the distance matrix may come from the map's own job
    assert summary["steps"] == FAN_STEPS and summary["computed"] >= FAN_STEPS - 1, summary
    assert inline.returncode == 0 and "study succeeded" in output, output

    # every step was a job of its own on the queues; the two trainings ran at the same time on the two workers
    kinds = {k: len(_jobs(two, k)) for k in ("train", "flatness", "distances", "path")}
    assert kinds["train"] == 2 and kinds["flatness"] == 2 and kinds["path"] == 2 and kinds["distances"] >= 1
    a, b = _jobs(two, "train")
    assert a["worker"] != b["worker"], (a, b)
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"], (a, b)

    # the same numbers, however many workers computed them
    fanned = _report_tables(two, study["id"])
    alone = {p.name: _without_ids(list(csv.reader(io.StringIO(p.read_text()))))
             for p in (tmp_path / "report").glob("*.csv")}
    assert fanned.keys() == alone.keys() and "paths.csv" in fanned
    for name in fanned:
        assert fanned[name] == alone[name], name


def _post_and_wait_for_trainings(stack: ApiStack, spec: dict) -> tuple[dict, list[dict]]:
    """Post ``spec`` (four trainings) and wait until two of its trainings run and two wait in the queue."""
    before = {j["id"] for j in _jobs(stack, "train")}
    study = httpx.post(f"{stack.url}/api/studies", json=spec, timeout=30).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mine = [j for j in _jobs(stack, "train") if j["id"] not in before]
        if [j["state"] for j in mine].count("running") == 2 and [j["state"] for j in mine].count("queued") == 2:
            return study, mine
        time.sleep(0.05)
    raise AssertionError(f"the study's four trainings did not start: {_jobs(stack, 'train')}")


def test_a_failed_step_fails_the_study_and_cancelling_a_study_cancels_its_steps(two):
    # two trainings run, two wait in the queue; one of those is cancelled by hand: the study fails with its message
    study, mine = _post_and_wait_for_trainings(two, {**FAN, "name": "fails", "seeds": [10, 11, 12, 13]})
    queued = [j for j in mine if j["state"] == "queued"]
    assert httpx.post(f"{two.url}/api/jobs/{queued[-1]['id']}/cancel", timeout=10).status_code == 200
    study = wait_study(two.url, study["id"], timeout_s=120)
    assert study["state"] == "failed", (study, _jobs(two, "train"))
    assert queued[-1]["id"] in study["error"] and "cancelled" in study["error"], study["error"]
    assert "training sgd seed" in study["error"]
    states = {j["id"]: j["state"] for j in _jobs(two, "train")}
    assert states[queued[0]["id"]] in ("cancelled", "succeeded"), states  # cancelled with the study unless it ran

    # cancelling a study cancels its steps, queued and running
    study, mine = _post_and_wait_for_trainings(two, {**FAN, "name": "cancelled", "seeds": [20, 21, 22, 23]})
    answer = httpx.post(f"{two.url}/api/jobs/{study['job_id']}/cancel", timeout=10)
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled", answer.text
    ids = {j["id"] for j in mine}
    assert [j["state"] for j in _jobs(two, "train") if j["id"] in ids] == ["cancelled"] * 4
    time.sleep(1.0)  # the running trainings stop at their next progress report; nothing of the study starts
    assert httpx.get(f"{two.url}/api/studies/{study['id']}", timeout=10).json()["state"] == "cancelled"
    assert not [j for kind in ("train", "flatness", "path", "distances") for j in _jobs(two, kind)
                if j["state"] in ("queued", "running")]


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-v"])
