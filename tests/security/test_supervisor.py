"""`toroid up` heals itself: a SIGKILLed Redis or worker is restarted (Redis on the same port, its queue kept in the
append-only file), the API stays up, queued and new jobs complete, and only SIGTERM / Ctrl-C stops the stack, leaving
no process behind. Plus the restart policy itself (capped exponential backoff, never giving up) on a tiny child.

The stack is the real command (`python -m toroid.cli up`, tests/conftest.py ``Stack``), one per module; the tests
run in file order and the last one stops it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import Stack, alive, pids_with_home
from toroid.backend.supervisor import Supervisor, restart_delay

pytestmark = pytest.mark.integration

TINY_TRAIN = {"config": {"widths": [8]}, "epochs": 1}


# ------------------------------------------------------------------------------------------------------ helpers
def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (its value is returned), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.TransportError, redis.RedisError, OSError):
            value = None
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])  # the command name may hold spaces and parentheses


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def role(pid: int) -> str | None:
    argv = cmdline(pid)
    if argv and "/redis-server " in argv[0]:  # redis-server retitles itself "<path>/redis-server <address>"
        return "redis"
    if "celery" in argv and "worker" in argv:  # the batch worker, or the interactive queue's own
        return "worker-interactive" if argv[argv.index("--queues") + 1] == "interactive" else "worker"
    if "uvicorn" in argv:
        return "api"
    return None


def children_of(parent: int) -> set[int]:
    """Live processes whose parent is ``parent`` (by /proc, not by environment: redis-server overwrites its
    environment block when it sets its process title, so ``pids_with_home`` does not see it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == parent and alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def children(stack: Stack) -> dict[str, int]:
    """The live direct children of `toroid up` by role: redis, worker and worker-interactive (main processes), api."""
    return {role(pid): pid for pid in children_of(stack.process.pid) if role(pid)}


def submit(stack: Stack, seed: int, **overrides) -> str:
    response = httpx.post(f"{stack.url}/api/minima/train", json={**TINY_TRAIN, "seed": seed, **overrides}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job(stack: Stack, job_id: str) -> dict:
    return httpx.get(f"{stack.url}/api/jobs/{job_id}", timeout=10).json()


def wait_done(stack: Stack, job_id: str, timeout_s: float) -> dict:
    return wait_for(lambda: (record := job(stack, job_id))["state"] not in ("queued", "running") and record,
                    timeout_s, f"job {job_id} to finish")


def queued_in_redis(url: str, job_id: str, queue: str = "gpu") -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return any(job_id.encode() in message for message in client.lrange(queue, 0, -1))
    finally:
        client.close()


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def up_log(stack: Stack) -> str:
    return stack._log()


# ------------------------------------------------------------------------------------------------------ fixture
@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Stack:
    """One `toroid up` for the module (fresh TOROID_HOME, TOROID_DEMO=false, a free port)."""
    stack = Stack(tmp_path_factory.mktemp("selfheal") / "home", {"TOROID_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    try:
        stack.wait_healthy(60)
        yield stack
    finally:
        stack.stop()


# ------------------------------------------------------------------------------------------------------ tests
def test_redis_sigkill_restarts_it_on_the_same_port_and_keeps_queued_jobs(up):
    """SIGKILL redis-server while one job runs and another waits in the queue: `toroid up` keeps running, starts
    Redis again on the same port with the queued message read back from the append-only file, /api/health is ok
    again, and the queued job and one submitted after the restart both succeed."""
    old_redis = children(up)["redis"]
    port = up.redis_url.rsplit(":", 1)[1].split("/")[0]
    assert f"127.0.0.1:{port}" in " ".join(cmdline(old_redis))

    # keep the single worker busy (prefetch 1, acks late: it takes no second message), so the next job stays queued;
    # a learning rate of ~0 never reaches the target error, so it runs until it is cancelled below
    blocker = submit(up, 100, config={"widths": [32]}, epochs=10_000, hyperparameters={"lr": 1e-9})
    wait_for(lambda: job(up, blocker)["state"] == "running", 60, "the blocking job to run")
    queued = submit(up, 101)
    assert job(up, queued)["state"] == "queued"
    assert wait_for(lambda: queued_in_redis(up.redis_url, queued), 5, "the message in the gpu queue")
    aof = up.home / "redis" / "toroid.aof"
    wait_for(lambda: queued.encode() in aof.read_bytes(), 10, "the message in the append-only file")

    os.kill(old_redis, signal.SIGKILL)
    new_redis = wait_for(lambda: (pid := children(up).get("redis")) and pid != old_redis and pid, 20,
                         "a new redis-server")
    assert up.process.poll() is None, up_log(up)
    assert f"127.0.0.1:{port}" in " ".join(cmdline(new_redis))
    wait_for(lambda: ping(up.redis_url), 10, f"redis to answer on port {port} again")
    assert queued_in_redis(up.redis_url, queued), "the queued message did not survive the restart"
    log = up_log(up)
    assert re.search(rf"redis \(pid {old_redis}\) killed by SIGKILL .* restarting in 1 s", log), log
    assert f"redis restarted (pid {new_redis}" in log, log

    up.wait_healthy(30)
    after = submit(up, 102)
    assert httpx.post(f"{up.url}/api/jobs/{blocker}/cancel", timeout=10).json()["state"] == "cancelled"
    for job_id in (queued, after):
        record = wait_done(up, job_id, 60)
        assert record["state"] == "succeeded", record
        assert record["attempts"] == 1, record  # delivered once, from the queue; no recovery was needed
    assert children(up)["redis"] == new_redis and up.process.poll() is None


def test_worker_sigkill_brings_up_a_new_worker_that_runs_jobs(up):
    """SIGKILL the worker's main process (its pool is left alone): `toroid up` reaps what is left of its process
    group, starts a new worker, and a job submitted while no worker was alive succeeds."""
    old_worker = children(up)["worker"]
    old_pool = children_of(old_worker)
    assert old_pool, "the worker has no pool process"

    os.kill(old_worker, signal.SIGKILL)
    submitted = submit(up, 200)  # the broker holds it until a worker is back
    new_worker = wait_for(lambda: (pid := children(up).get("worker")) and pid != old_worker and pid, 20,
                          "a new worker")
    wait_for(lambda: not any(alive(pid) for pid in old_pool), 10, "the old pool processes to be gone")
    record = wait_done(up, submitted, 90)
    assert record["state"] == "succeeded", record
    assert up.process.poll() is None
    log = up_log(up)
    assert re.search(rf"worker \(pid {old_worker}\) killed by SIGKILL .* restarting in 1 s", log), log
    assert f"worker restarted (pid {new_worker}" in log, log
    assert up.wait_healthy(30)["ok"]


def test_api_sigkill_is_restarted_on_the_same_address(up):
    """The API server is a child like the others: killed, it comes back at the same URL."""
    old_api = children(up)["api"]
    os.kill(old_api, signal.SIGKILL)
    new_api = wait_for(lambda: (pid := children(up).get("api")) and pid != old_api and pid, 20, "a new API server")
    wait_for(lambda: httpx.get(f"{up.url}/api/health", timeout=5).json().get("ok"), 60, f"{up.url} to be healthy")
    assert f"api restarted (pid {new_api}" in up_log(up)
    assert up.process.poll() is None


def test_sigterm_stops_the_restarted_stack_and_leaves_no_process(up):
    """After the restarts above, SIGTERM (what Ctrl-C does) stops `toroid up` with code 0 and every child it ever
    started, the restarted ones and the worker's pool included, is gone."""
    running = children(up)
    assert set(running) == {"redis", "worker", "worker-interactive", "api"}, running
    pools = children_of(running["worker"]) | children_of(running["worker-interactive"])
    everything = (pids_with_home(up.home) | set(running.values()) | pools) - {up.process.pid}
    up.process.send_signal(signal.SIGTERM)
    assert up.stop(timeout_s=40) == 0
    assert [pid for pid in everything if alive(pid)] == []
    assert [pid for pid in pids_with_home(up.home) if alive(pid)] == []
    assert "stopped." in Path(up.out.name).read_text()


def test_backoff_doubles_up_to_the_cap():
    assert [restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert restart_delay(10_000) == 30  # no overflow however long it crashes


def test_a_child_crashing_in_a_tight_loop_keeps_being_restarted(tmp_path):
    """A child that exits at once is restarted again and again with the capped backoff; the supervisor never gives
    up and says so in its log; stop() ends the loop."""
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, log=lines.append, backoff_initial_s=0.05, backoff_max_s=0.2,
                            healthy_after_s=60)
    crasher = supervisor.spawn("crasher", [sys.executable, "-I", "-c", "raise SystemExit(3)"], dict(os.environ))
    deadline = time.monotonic() + 2.5
    try:
        supervisor.supervise(lambda: time.monotonic() > deadline, poll_s=0.01)
    finally:
        supervisor.stop_all()
    assert crasher.restarts >= 6, lines
    pattern = r"exited with code 3 after [\d.]+ s; restarting in ([\d.]+) s"
    delays = [float(m) for m in re.findall(pattern, "\n".join(lines))]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.2], lines
    assert set(delays[4:]) == {0.2}, lines
    assert any("keeps crashing" in line and "still restarting it every 0.2 s" in line for line in lines), lines
    assert (tmp_path / "logs" / "crasher.log").read_text().count("----- toroid up: restart") == crasher.restarts


def test_a_child_that_ran_long_enough_restarts_after_the_initial_delay(tmp_path):
    """A crash after a healthy run starts a new series: the backoff goes back to its first step."""
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, log=lines.append, backoff_initial_s=0.05, backoff_max_s=1.0,
                            healthy_after_s=0.3)
    child = supervisor.spawn("sleeper", [sys.executable, "-I", "-c", "import time; time.sleep(0.4)"],
                             dict(os.environ))
    deadline = time.monotonic() + 1.6
    try:
        supervisor.supervise(lambda: time.monotonic() > deadline, poll_s=0.01)
    finally:
        supervisor.stop_all()
    assert child.restarts >= 2, lines
    assert all("restarting in 0.05 s (crash 1 in a row" in line for line in lines if "restarting in" in line), lines
