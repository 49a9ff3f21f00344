"""Helpers of the security tests (not fixtures: each test module starts the stack it needs).

The stacks are the real thing: ``tests.integration.conftest.ApiStack`` (embedded Redis, uvicorn, optionally a Celery
worker, all separate processes). A stack without a worker answers /api/health with 503, so ``wait_answering`` waits
for any answer instead of a 200.
"""

from __future__ import annotations

import time

import httpx

from tests.integration.conftest import ApiStack


def wait_answering(stack: ApiStack, timeout_s: float = 120) -> None:
    """Until the API answers /api/health at all (200, or 503 while no worker is alive)."""
    deadline = time.monotonic() + timeout_s
    api = next(child for child in stack.supervisor.children if child.name == "api")
    while time.monotonic() < deadline and api.process.poll() is None:
        try:
            if httpx.get(f"{stack.url}/api/health", timeout=2).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stack.stop()
    raise RuntimeError(f"the API at {stack.url} did not start; see {stack.home / 'logs' / 'api.log'}")


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
