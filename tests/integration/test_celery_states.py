"""Celery's record of a task follows the job ledger: what Flower shows (it builds its view from Celery's task
events with ``celery.events.state.State``, as this test does) agrees with the job's state. A failed job's task ends
in FAILURE with the job's error, a cancelled one in REVOKED, a succeeded one in SUCCESS. Real Redis, a real worker
process, the real API."""

from __future__ import annotations

import threading
import time

import httpx
from celery import Celery
from celery.events.state import State

from tests.integration.conftest import wait_job


class EventLog:
    """Captures the worker's task events from Redis in a thread, into Flower's state machine."""

    def __init__(self, broker_url: str):
        self.app = Celery(broker=broker_url)
        self.state = State()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "could not connect to Redis for events"

    def _run(self) -> None:
        with self.app.connection() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self.state.event})
            self.receiver.on_consume_ready = lambda *_args, **_kwargs: self.ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)  # until should_stop

    def task_state(self, job_id: str, timeout_s: float = 30) -> tuple[str | None, object]:
        """The Celery state of the (last) task that ran ``job_id`` (task ids start with the job id)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            tasks = [t for uid, t in list(self.state.tasks.items()) if uid.startswith(job_id)]
            if tasks and tasks[-1].state in ("SUCCESS", "FAILURE", "REVOKED"):
                return tasks[-1].state, tasks[-1]
            time.sleep(0.1)
        tasks = [t for uid, t in list(self.state.tasks.items()) if uid.startswith(job_id)]
        return (tasks[-1].state if tasks else None), (tasks[-1] if tasks else None)

    def close(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(timeout=5)


def test_failed_cancelled_and_succeeded_jobs_end_in_the_matching_celery_state(api_stack):
    url = api_stack.url
    events = EventLog(api_stack.env["TOROID_REDIS_URL"])
    try:
        failing = httpx.post(f"{url}/api/minima/train", json={
            "config": {"widths": [8]}, "hyperparameters": {"lr": 1e12}, "epochs": 2, "name": "diverges"}).json()
        assert wait_job(url, failing["id"])["state"] == "failed"
        state, task = events.task_state(failing["id"])
        assert state == "FAILURE", (state, task)
        assert "JobFailed" in (task.exception or "") and "diverged" in task.exception

        long = httpx.post(f"{url}/api/minima/train", json={
            "config": {"widths": [256, 256]}, "epochs": 5000, "target_error": 0.0, "seed": 11, "name": "long"}).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/api/jobs/{long['id']}").json()["state"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(f"{url}/api/jobs/{long['id']}/cancel").json()["state"] == "cancelled"
        state, task = events.task_state(long["id"], timeout_s=60)
        assert state == "REVOKED", (state, task)

        fine = httpx.post(f"{url}/api/minima/train", json={
            "config": {"widths": [8]}, "epochs": 2, "seed": 12, "name": "fine"}).json()
        assert wait_job(url, fine["id"])["state"] == "succeeded"
        state, task = events.task_state(fine["id"])
        assert state == "SUCCESS" and task.result == "'succeeded'", (state, task)
    finally:
        events.close()
