"""Time limits of jobs (store/celery_app.py): a real worker with tiny limits stops a long training and a long
analysis at their soft limit, marks them failed with the limit and its setting named, and goes on serving; a task
killed by its hard limit gets its job marked failed instead of re-enqueued as a dead worker's job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.conftest import ApiStack, wait_job
from toroid.store.celery_app import TIME_LIMIT_SETTINGS, celery_app, time_limit_message, time_limits
from toroid.store.ledger import TASK_NAMES
from toroid.store.settings import Settings
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.nets import build_model

pytestmark = pytest.mark.integration

LIMIT_S = 3


def test_every_job_task_has_limits_from_the_settings():
    import toroid.worker.study  # noqa: F401  (registers the study task)
    import toroid.worker.tasks  # noqa: F401

    assert set(TIME_LIMIT_SETTINGS) == set(TASK_NAMES.values())
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["job_soft_limit_s"] == 6 * 3600 and defaults["analysis_soft_limit_s"] == 2 * 3600
    limits = time_limits()
    for kind, name in TASK_NAMES.items():
        task = celery_app.tasks[name]
        assert task.soft_time_limit == limits[name]["soft_time_limit"] > 0, kind
        assert task.time_limit == task.soft_time_limit + Settings.model_fields["job_hard_limit_grace_s"].default
    assert celery_app.tasks["toroid.ping"].soft_time_limit is None
    assert time_limit_message("toroid.study") == time_limit_message("toroid.train")
    assert "time limit of 7200 s (TOROID_ANALYSIS_SOFT_LIMIT_S)" in time_limit_message("toroid.torus")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    started = ApiStack(tmp_path_factory.mktemp("timelimits") / "home", {
        "TOROID_JOB_SOFT_LIMIT_S": str(LIMIT_S), "TOROID_ANALYSIS_SOFT_LIMIT_S": str(LIMIT_S),
        "TOROID_JOB_HARD_LIMIT_GRACE_S": "60",
    })
    try:
        started.wait_worker()
        yield started
    finally:
        started.stop()


def test_a_long_training_and_a_long_analysis_fail_at_the_time_limit(stack):
    url = stack.url
    start = time.monotonic()
    slow = {"epochs": 300, "seed": 3, "hyperparameters": {"lr": 1e-7}}  # never reaches 0% error: minutes on a CPU
    train = httpx.post(f"{url}/api/minima/train", json=slow, timeout=30)
    assert train.status_code == 202, train.text
    job = wait_job(url, train.json()["id"], timeout_s=60)
    assert job["state"] == "failed", job
    assert f"stopped after the time limit of {LIMIT_S} s (TOROID_JOB_SOFT_LIMIT_S)" in job["error"], job["error"]
    assert time.monotonic() - start < 40
    assert stack.count("SELECT COUNT(*) FROM minima") == 0

    model = build_model("mlp", {"widths": [32]}, ((1, 8, 8), 10), seed=0)
    uploaded = httpx.post(f"{url}/api/minima", files={"file": ("m.safetensors", state_dict_bytes(model))}, timeout=60,
                          data={"architecture": "mlp", "config": json.dumps({"widths": [32]}), "dataset": "digits"})
    assert uploaded.status_code == 201, uploaded.text
    request = {"minimum_id": uploaded.json()["id"], "samples": 10_000, "mode": "exact"}  # 80,000 evaluations
    flatness = httpx.post(f"{url}/api/analyses/flatness", json=request, timeout=30)
    assert flatness.status_code == 202, flatness.text
    job = wait_job(url, flatness.json()["job"]["id"], timeout_s=60)
    assert job["state"] == "failed", job
    assert f"stopped after the time limit of {LIMIT_S} s (TOROID_ANALYSIS_SOFT_LIMIT_S)" in job["error"]
    assert stack.count("SELECT COUNT(*) FROM results") == 0

    # the worker goes on: a short job succeeds
    short = httpx.post(f"{url}/api/minima/train", json={"config": {"widths": [8]}, "epochs": 1}, timeout=30)
    done = wait_job(url, short.json()["id"], timeout_s=60)
    assert done["state"] == "succeeded", done.get("error")


HARD_LIMIT_SCRIPT = """
from celery.exceptions import TimeLimitExceeded
from toroid.store.celery_app import _on_hard_time_limit, celery_app
from toroid.store.db import init_db, new_session
from toroid.store.ledger import claim, create_job
from toroid.store.models import Job
from toroid.store.params import TrainRequest, resolve_train
import toroid.worker.tasks  # registers the tasks

init_db()
with new_session() as session:
    job_id = create_job(session, resolve_train(TrainRequest(epochs=1)), publish=False).id
    done_id = create_job(session, resolve_train(TrainRequest(epochs=2)), publish=False).id
claim(job_id, worker="test")
task = celery_app.tasks["toroid.train"]
_on_hard_time_limit(sender=task, task_id="t", exception=TimeLimitExceeded(62), args=[job_id])
_on_hard_time_limit(sender=task, task_id="u", exception=TimeLimitExceeded(62), args=[done_id])  # queued: untouched
_on_hard_time_limit(sender=task, task_id="v", exception=RuntimeError("other"), args=[job_id])
with new_session() as session:
    job, other = session.get(Job, job_id), session.get(Job, done_id)
    print(job.state, "|", job.error, "|", other.state)
"""


def test_a_hard_time_limit_marks_the_job_failed(tmp_path):
    (tmp_path / "home").mkdir()
    env = dict(os.environ, TOROID_HOME=str(tmp_path / "home"), TOROID_JOB_SOFT_LIMIT_S="60",
               TOROID_JOB_HARD_LIMIT_GRACE_S="2")
    env.pop("TOROID_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", HARD_LIMIT_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    state, error, other = (part.strip() for part in done.stdout.strip().splitlines()[-1].split("|"))
    assert state == "failed" and other == "queued"
    assert error.startswith("stopped after the time limit of 60 s (TOROID_JOB_SOFT_LIMIT_S)")
    assert "killed 2 s later (TOROID_JOB_HARD_LIMIT_GRACE_S)" in error
