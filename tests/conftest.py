"""Shared fixtures: a real `toroid up` stack (embedded Redis, a Celery worker process, uvicorn) and a real Chromium.

Nothing here is mocked: the stack is the same command a user runs, in a temporary TOROID_HOME.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TOROID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def pids_with_home(home: Path) -> set[int]:
    """Processes whose environment carries this TOROID_HOME: the stack's children, wherever they were reparented."""
    marker = f"TOROID_HOME={home}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


class Stack:
    """`toroid up` in a subprocess; ``url`` is the API base, ``stop()`` sends SIGTERM as a user's Ctrl-C would."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None):
        self.home = home.resolve()
        self.env = dict(
            os.environ, TOROID_HOME=str(self.home), TOROID_PORT="0", TOROID_DEMO="false", PYTHONUNBUFFERED="1",
            TOROID_ALLOW_DOWNLOADS="false",  # `toroid up` would allow downloads; tests never download
        )
        self.env.pop("TOROID_REDIS_URL", None)
        self.env.update(extra_env or {})
        self.out = open(self.home.parent / f"{self.home.name}-up.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toroid.cli", "up"], cwd=ROOT, env=self.env, stdout=self.out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.url = self._wait_for_url(timeout_s=120)
        self.redis_url = self._read_redis_url()

    def _log(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text()

    def _wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(r"running at (http://[\d.]+:\d+)/dashboard/", self._log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"toroid up exited early:\n{self._log()}")
            time.sleep(0.2)
        raise RuntimeError(f"toroid up printed no URL in {timeout_s} s:\n{self._log()}")

    def _read_redis_url(self) -> str:
        match = re.search(r"redis\s+embedded at (\S+)", self._log())
        return match.group(1) if match else self.env.get("TOROID_REDIS_URL", "")

    def wait_healthy(self, timeout_s: float = 60, workers: int = 1) -> dict:
        """/api/health once it is ok with at least ``workers`` worker processes answering (they start one by one)."""
        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/api/health", timeout=10).json()
            if body.get("ok") and (body.get("workers") or {}).get("count", 0) >= workers:
                return body
            time.sleep(0.5)
        raise AssertionError(f"stack not healthy after {timeout_s} s: {body}")

    def stop(self, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout_s)
        self.out.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    """One shared stack for the tests that only need a running system."""
    running = Stack(tmp_path_factory.mktemp("stack") / "home")
    running.wait_healthy()
    yield running
    running.stop()


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


@pytest.fixture(scope="session")
def browser():
    if not chromium_available():
        pytest.skip(
            "browser tests need Debian's chromium: run `sudo apt-get install -y chromium` (make test does it as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()
