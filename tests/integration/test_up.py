"""`toroid up` brings up real Redis, a real worker and the API; stopping it leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack, alive, pids_with_home

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_reports_health_and_stops_cleanly(tmp_path, stop_signal):
    stack = Stack(tmp_path / "home")
    try:
        health = stack.wait_healthy(workers=2)  # the batch worker and the interactive queue's own, one by one
        assert health["redis"]["ok"] and health["database"]["ok"] and health["workers"]["ok"]
        assert "://" not in json.dumps(health)  # public: no URL, no password
        assert health["workers"]["count"] == 2
        children = pids_with_home(stack.home) - {stack.process.pid}
        # redis-server, the two celery workers (and their pools), uvicorn
        assert len(children) >= 4, children
        # training yields the CPU to clicks: the batch worker runs niced (TOROID_BATCH_NICENESS), the other not
        # and so does its session: with autogroup scheduling, nice alone orders processes only within a session
        # (backend/supervisor.py, nice_session)
        # the interactive worker computes on one thread less than the CPUs (OpenMP threads spin: backend/supervisor.py,
        # interactive_env), unless the environment chose already; the batch worker keeps torch's own choice
        niceness, sessions, threads = {}, {}, {}
        autogroups = Path("/proc/self/autogroup").exists()
        for pid in children:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"celery" not in argv or b"--queues" not in argv:
                continue
            queues = argv[argv.index(b"--queues") + 1].decode()
            niceness.setdefault(queues, set()).add(os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(
                os.PRIO_PROCESS, 0))
            if autogroups:  # "/autogroup-123 nice 10"
                sessions.setdefault(queues, set()).add(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
            environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                           if b"=" in item)
            threads.setdefault(queues, set()).add(environ.get(b"OMP_NUM_THREADS"))
        assert niceness == {"cpu,gpu": {10}, "interactive": {0}}, niceness
        assert not autogroups or sessions == {"cpu,gpu": {"10"}, "interactive": {"0"}}, sessions
        own = os.environ.get("OMP_NUM_THREADS")
        expected = own.encode() if own else str(max(1, len(os.sched_getaffinity(0)) - 1)).encode()
        assert threads == {"cpu,gpu": {own.encode() if own else None}, "interactive": {expected}}, threads
        assert httpx.get(f"{stack.url}/dashboard/", timeout=10).status_code == 200
        assert (stack.home / "toroid.db").exists()
    finally:
        stack.process.send_signal(stop_signal)
        code = stack.stop()
    assert code == 0
    survivors = [pid for pid in children if alive(pid)]
    assert survivors == [], f"processes left running after stop: {survivors}"
    assert [pid for pid in pids_with_home(stack.home) if alive(pid)] == []


def test_health_reports_a_dead_worker(stack):
    """The health check is real: a ping with no worker on a queue would fail; here the shared stack is all up."""
    body = httpx.get(f"{stack.url}/api/health", timeout=10).json()
    assert body["ok"] is True
    assert set(body) >= {"redis", "database", "workers"}


def test_interactive_workers_threads_explicit_then_environment_then_one_less_than_the_cpus():
    from toroid.backend.supervisor import interactive_env

    cpus = len(os.sched_getaffinity(0))
    assert interactive_env({"A": "1"}, 3) == {"A": "1", "OMP_NUM_THREADS": "3"}  # TOROID_INTERACTIVE_THREADS
    assert interactive_env({"OMP_NUM_THREADS": "2"}, 5)["OMP_NUM_THREADS"] == "5"
    assert interactive_env({"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2"  # the operator's own choice
    assert interactive_env({})["OMP_NUM_THREADS"] == str(max(1, cpus - 1))
    environment = {"OMP_NUM_THREADS": "2"}
    interactive_env(environment, 4)
    assert environment == {"OMP_NUM_THREADS": "2"}  # the batch worker's environment is left alone
