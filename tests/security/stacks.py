"""Helpers of the security tests (not fixtures: each test module starts the stack it needs).

The stacks are the real thing: ``tests.integration.conftest.ApiStack`` (embedded Redis, uvicorn, optionally a Celery
worker, all separate processes). A stack without a worker answers /api/health with 503, so ``ApiStack`` waits
for any answer instead of a 200.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from tests.integration.conftest import ApiStack


def api_only(tmp_path_factory, name: str, env: dict[str, str] | None = None) -> Iterator[ApiStack]:
    """A module's stack without a worker (Redis + API), up until the module ends; ``yield from`` it in a fixture.
    ``ApiStack`` waits for any answer of /api/health (503 while no worker is alive)."""
    env = {"TOROID_ALLOW_DOWNLOADS": "false", **(env or {})}  # a test never downloads data
    started = ApiStack(tmp_path_factory.mktemp(name) / "home", env, worker=False)
    try:
        yield started
    finally:
        started.stop()


def wait_health(url: str, predicate, timeout_s: float = 120) -> httpx.Response:
    """Poll /api/health until ``predicate(response)`` holds; returns that response."""
    deadline = time.monotonic() + timeout_s
    response = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/api/health", timeout=5)
            if predicate(response):
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/api/health never reached the expected state: "
                         f"{response.status_code if response else None} {response.text if response else ''}")
