"""Fixtures of the API integration tests: real Redis, a real Celery worker process and the API, as separate
processes (``toroid.backend.supervisor.Supervisor``, the same code `toroid up` uses), so a test can kill the worker's
whole process group and start a new one; plus small digits minima trained in the test process."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pytest
import torch
from sqlalchemy import create_engine, text

from toroid.backend.supervisor import Child, Supervisor, free_port

MINIMUM_CONFIG = {"widths": [32]}


class ApiStack:
    """Redis + API (+ one worker unless ``worker=False``) in ``home``; ``url`` is the API base."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None, *, worker: bool = True,
                 wait: bool = True, database_url: str | None = None):
        self.home = home.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, TOROID_HOME=str(self.home), TOROID_DEMO="false", PYTHONUNBUFFERED="1",
                        TOROID_DEVICE="cpu", TOROID_STALE_JOB_S="3", OMP_NUM_THREADS="1",
                        TOROID_ALLOW_DOWNLOADS="false")  # tests never download (docs/operations.md)
        for inherited in ("TOROID_REDIS_URL", "TOROID_API_TOKEN", "TOROID_PUBLIC_READS", "TOROID_DATABASE_URL"):
            self.env.pop(inherited, None)
        self.env.update(extra_env or {})
        self.database_url = database_url or f"sqlite:///{self.home / 'toroid.db'}"
        if database_url:
            self.env["TOROID_DATABASE_URL"] = database_url
        self.supervisor = Supervisor(self.home, log=lambda _line: None)
        self.worker: Child | None = None
        port = free_port()
        self.env["TOROID_PORT"] = str(port)
        self.url = f"http://127.0.0.1:{port}"
        try:
            self.env["TOROID_REDIS_URL"] = self.supervisor.start_redis(self.env)
            if worker:
                self.start_worker()
            # the same command Supervisor.start_api runs; waiting is separate so that several stacks boot at once
            self.supervisor.spawn("api", [
                sys.executable, "-m", "uvicorn", "toroid.backend.main:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "info",
            ], self.env)
            if wait:
                self.wait_api()
        except BaseException:
            self.supervisor.stop_all()
            raise
        self.engine = create_engine(self.database_url)

    def wait_api(self, timeout_s: float = 120) -> None:
        """Until /api/health answers; stops the stack and says where the logs are if it does not."""
        deadline = time.monotonic() + timeout_s
        api = next(child for child in self.supervisor.children if child.name == "api")
        while time.monotonic() < deadline and api.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code in (200, 503):  # 503: no worker yet
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.supervisor.stop_all()
        raise RuntimeError(f"the API at {self.url} did not start; see {self.home / 'logs' / 'api.log'}")

    def start_worker(self) -> Child:
        self.worker = self.supervisor.start_worker(self.env, 1, "interactive,cpu,gpu")
        return self.worker

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group (main process and pool), as an OOM killer or a crash would."""
        assert self.worker is not None
        os.killpg(self.worker.process.pid, signal.SIGKILL)
        self.worker.process.wait(10)

    def wait_worker(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if httpx.get(f"{self.url}/api/health", timeout=10).json()["workers"]["ok"]:
                return
            time.sleep(0.3)
        raise AssertionError(f"no worker answered within {timeout_s} s; see {self.home / 'logs'}")

    def count(self, sql: str, **params) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar_one())

    def artifacts(self) -> set[str]:
        """The stored artifact files (the store's lock files, ``locks/``, are not artifacts)."""
        root = self.home / "artifacts"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parent.name != "locks"}

    def stop(self) -> None:
        self.engine.dispose()
        self.supervisor.stop_all()


class Postgres:
    """A throwaway PostgreSQL server (initdb + pg_ctl from the machine's PostgreSQL; as ``nobody`` when root, in a
    world-traversable temporary folder since pytest's own are private to root)."""

    def __init__(self):
        # on PATH, or where Debian's postgresql package puts the server binaries
        path = os.pathsep.join([os.environ.get("PATH", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"))])
        initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
        if not (initdb and pg_ctl):
            raise FileNotFoundError("initdb / pg_ctl not found")
        self.root = Path(tempfile.mkdtemp(prefix="toroid-pg-"))
        self.root.chmod(0o777)
        self.data, self.pg_ctl = self.root / "data", pg_ctl
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        port = free_port()
        try:
            subprocess.run([*self.as_user, initdb, "-D", str(self.data), "-U", "toroid", "--auth=trust", "-E",
                            "UTF8"], check=True, capture_output=True, timeout=120)
            subprocess.run([*self.as_user, pg_ctl, "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                            "-w", "-o", f"-p {port} -h 127.0.0.1 -k {self.root}", "start"],
                           check=True, capture_output=True, timeout=120)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.url = f"postgresql+psycopg2://toroid@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_or_none() -> Postgres | None:
    """PostgreSQL when this machine has it (CI and developer machines may not: then the caller uses SQLite)."""
    try:
        import psycopg2  # noqa: F401

        return Postgres()
    except (ImportError, FileNotFoundError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        warnings.warn(f"PostgreSQL unavailable, using SQLite: {exc} {detail.decode(errors='replace')[-300:]}",
                      stacklevel=2)
        return None


def wait_job(url: str, job_id: str, timeout_s: float = 120, headers: dict | None = None) -> dict:
    """Poll a job until it leaves queued/running; returns its record."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10, headers=headers).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s: {job}")


def two_worker_stack(home: Path, extra_env: dict[str, str] | None = None) -> ApiStack:
    """Redis, the API and two worker processes of concurrency 1 (each consuming every queue), once both answer;
    the caller stops it."""
    stack = ApiStack(home, extra_env, wait=False)
    try:
        stack.supervisor.start_worker(stack.env, 1, "interactive,cpu,gpu", name="worker2")
        stack.wait_api()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            workers = httpx.get(f"{stack.url}/api/health", timeout=10).json()["workers"]
            if workers.get("ok") and workers.get("count", 0) >= 2:
                return stack
            time.sleep(0.3)
        raise AssertionError(f"two workers did not answer within 90 s; see {stack.home / 'logs'}")
    except BaseException:
        stack.stop()
        raise


@pytest.fixture(scope="session")
def digits_minima() -> list[torch.nn.Module]:
    """Two small digits MLP minima (widths [32], seeds 0 and 1), trained here with the core's SGD sampler."""
    from toroid.worker.landscape import load_dataset, train_minimum

    torch.set_num_threads(1)
    data = load_dataset("digits")
    return [train_minimum("mlp", MINIMUM_CONFIG, data, sampler="sgd", seed=seed, epochs=8)[0] for seed in (0, 1)]


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory, request) -> ApiStack:
    """One stack per test module: Redis, one worker, the API; uploads limited to 1 MiB. The test minima are
    trained while the processes boot."""
    stack = ApiStack(tmp_path_factory.mktemp("api") / "home", {"TOROID_MAX_UPLOAD_MB": "1"}, wait=False)
    try:
        request.getfixturevalue("digits_minima")
        stack.wait_api()
        stack.wait_worker()
        yield stack
    finally:
        stack.stop()
