"""`toroid api --port X` (no TOROID_PORT): the mounted dashboard calls the API on port X, the one bound, and nothing
reaches 127.0.0.1:8000, where another process could listen and collect the signed-in user's bearer token."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from toroid.backend.supervisor import free_port

pytestmark = pytest.mark.integration

TOKEN = "dashboard-port-token"
HEALTH_CALLBACK = {
    "output": "health.children", "outputs": {"id": "health", "property": "children"},
    "inputs": [{"id": "health-tick", "property": "n_intervals", "value": 1}],
    "changedPropIds": ["health-tick.n_intervals"], "state": [],
}


class Eavesdropper:
    """A listener on 127.0.0.1:8000 (when that port is free) that records whatever connects to it."""

    def __init__(self):
        self.received: list[bytes] = []
        self.sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.bind(("127.0.0.1", 8000))
        except OSError:
            self.sock.close()
            self.sock = None
            return
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.received.append(connection.recv(65536) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        if self.sock is not None:
            self.stopping = True
            self.thread.join(5)
            self.sock.close()


@pytest.fixture
def eavesdropper():
    listener = Eavesdropper()
    try:
        yield listener
    finally:
        listener.close()


def start_api(home: Path, port: int) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, TOROID_HOME=str(home), TOROID_DEMO="false", TOROID_API_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    for inherited in ("TOROID_PORT", "TOROID_HOST", "TOROID_DASHBOARD_API_URL", "TOROID_PUBLIC_API_URL",
                      "TOROID_REDIS_URL", "TOROID_DATABASE_URL", "TOROID_PUBLIC_READS"):
        env.pop(inherited, None)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "toroid.cli", "api", "--port", str(port)], cwd=home,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def bound_url(process: subprocess.Popen, log: Path, timeout_s: float = 90) -> str:
    """The URL `toroid api` printed, once it answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"Toroid API at (http://\S+)/api", log.read_text(errors="replace"))
        if match:
            try:
                httpx.get(f"{match.group(1)}/api/health", timeout=2)
                return match.group(1)
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"`toroid api` did not start:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.parametrize("choice", ["explicit", "zero"])
def test_the_dashboard_calls_the_port_toroid_api_bound(tmp_path, eavesdropper, choice):
    port = free_port() if choice == "explicit" else 0
    process, log = start_api(tmp_path / "home", port)
    try:
        url = bound_url(process, log)
        if choice == "explicit":
            assert url == f"http://127.0.0.1:{port}"
        assert not url.endswith(":8000") and not url.endswith(":0")
        cookies = {"toroid_session": TOKEN}  # a signed-in browser: the dashboard calls the API with this token
        with httpx.Client(base_url=url, cookies=cookies, timeout=60) as browser:
            assert browser.get("/dashboard/").status_code == 200
            assert browser.get("/dashboard/_dash-layout").status_code == 200
            callback = browser.post("/dashboard/_dash-update-component", json=HEALTH_CALLBACK)
        assert callback.status_code == 200, callback.text
        shown = callback.text
        assert "redis" in shown and "cannot reach the API" not in shown and ":8000" not in shown, shown
        time.sleep(0.5)  # the access log line of the dashboard's own request
        assert re.search(r'"GET /api/session HTTP/1.1" 200', log.read_text(errors="replace")), \
            "the dashboard did not reach this server's API"
        if eavesdropper.sock is not None:
            assert eavesdropper.received == [], eavesdropper.received
    finally:
        os.killpg(process.pid, 15)
        process.wait(20)
