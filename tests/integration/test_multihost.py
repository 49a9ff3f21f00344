"""Scale out (docs/operations.md, "Several hosts" and "One worker per GPU").

Several hosts, simulated on one machine: two `toroid worker` commands started as separate processes (no common
supervisor), each in its own working directory with its own TOROID_HOME, and the API (`toroid api`) in a third
process with its own, all pointing at the same Redis, the same database (PostgreSQL when the machine has it, else an
SQLite file) and the same artifact root (TOROID_ARTIFACTS_DIR; host-b reaches it through another path, a symbolic
link, as a mount point of its own would). host-a runs one worker; host-b is a "GPU host" running
`toroid worker --gpus 0,1`: two supervised Celery workers whose environments hold CUDA_VISIBLE_DEVICES=0 and =1.
This machine has no GPU visible (the test hides any with CUDA_VISIBLE_DEVICES=""), so they compute on the CPU, as
the command warns. Trainings submitted to the API spread over both hosts, each writes its checkpoint to the shared
root, and the API serves every one; a path between minima of the two hosts reads both. /api/health names each
worker's GPU; SIGTERM stops host-b's workers and leaves no process behind; `--gpus all` with no GPU visible and a
malformed list fail with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from sqlalchemy import create_engine, text

from tests.conftest import alive, pids_with_home
from tests.integration.conftest import postgres_or_none, wait_job
from toroid.backend.supervisor import Supervisor, free_port

pytestmark = pytest.mark.integration

TINY_TRAIN = {"config": {"widths": [8]}, "epochs": 2}


class Host:
    """One simulated host: its own working directory and TOROID_HOME, a `toroid` command run there."""

    def __init__(self, root: Path, name: str, shared: dict[str, str], artifacts: Path):
        self.name = name
        self.cwd = root / name
        self.home = (self.cwd / "local").resolve()
        self.home.mkdir(parents=True)
        self.env = dict(os.environ, **shared, TOROID_HOME=str(self.home), TOROID_ARTIFACTS_DIR=str(artifacts),
                        TOROID_DEVICE="cpu", TOROID_STALE_JOB_S="3", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                        TOROID_DEMO="false", TOROID_ALLOW_DOWNLOADS="false")
        for inherited in ("TOROID_API_TOKEN", "TOROID_PUBLIC_READS", "TOROID_GPUS", "TOROID_DATA_ROOT",
                          "CUDA_VISIBLE_DEVICES"):
            self.env.pop(inherited, None)
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> subprocess.Popen:
        self.log = open(self.cwd / "out.log", "w+")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toroid.cli", *args], cwd=self.cwd, env=self.env, stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        return self.process

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:  # whatever is left of the session (a worker's pool)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError):
            pass
        self.log.close()


def wait_health(url: str, predicate, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/api/health", timeout=5).json()
            if predicate(body):
                return body
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"/api/health never reached the expected state: {body}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Redis (this test's supervisor), a database, one shared artifact root; the API and the two hosts' workers
    each started as a `toroid` command of its own, in its own directory."""
    root = tmp_path_factory.mktemp("hosts")
    shared_root = (root / "shared").resolve()
    artifacts = shared_root / "artifacts"
    artifacts.mkdir(parents=True)
    postgres = postgres_or_none()
    broker = Supervisor(root / "broker", log=lambda _line: None)
    hosts: dict[str, Host] = {}
    try:
        redis_url = broker.start_redis(dict(os.environ))
        database_url = postgres.url if postgres else f"sqlite:///{shared_root / 'toroid.db'}"
        shared = {"TOROID_REDIS_URL": redis_url, "TOROID_DATABASE_URL": database_url}
        port = free_port()
        hosts["api"] = Host(root, "api", shared, artifacts)
        hosts["api"].start("api", "--host", "127.0.0.1", "--port", str(port))
        hosts["host-a"] = Host(root, "host-a", shared, artifacts)
        hosts["host-a"].start("worker", "--concurrency", "1", "--hostname", "host-a@%h")
        gpu_host = hosts["host-b"] = Host(root, "host-b", shared, artifacts)
        (gpu_host.cwd / "mnt").symlink_to(artifacts, target_is_directory=True)  # its own mount point of the root
        gpu_host.env["TOROID_ARTIFACTS_DIR"] = str(gpu_host.cwd / "mnt")
        gpu_host.env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU visible to this "host", whatever the machine has
        gpu_host.env.pop("TOROID_DEVICE")  # its workers choose their device themselves: the CPU, with no GPU
        gpu_host.start("worker", "--gpus", "0,1", "--concurrency", "1", "--hostname", "host-b@%h")
        url = f"http://127.0.0.1:{port}"
        wait_health(url, lambda body: body.get("workers", {}).get("count") == 3)
        yield {"url": url, "hosts": hosts, "artifacts": artifacts, "database_url": database_url}
    finally:
        for host in hosts.values():  # all at once, then wait for each
            if host.process is not None and host.process.poll() is None:
                os.killpg(host.process.pid, signal.SIGTERM)
        for host in reversed(hosts.values()):
            host.stop()
        broker.stop_all()
        if postgres is not None:
            postgres.stop()


def worker_pids(home: Path) -> dict[str, int]:
    """Celery main processes (not their pools) whose environment holds this TOROID_HOME, by CUDA_VISIBLE_DEVICES."""
    found = {}
    for pid in pids_with_home(home):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                           if b"=" in item)
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_argv = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"celery" in argv and b"worker" in argv and b"celery" not in parent_argv:
            found[environ.get(b"CUDA_VISIBLE_DEVICES", b"<unset>").decode()] = pid
    return found


def test_one_worker_per_gpu_each_with_its_cuda_visible_devices(cluster):
    body = httpx.get(f"{cluster['url']}/api/health", timeout=10).json()
    gpus = {name.split("@")[0]: gpu for name, gpu in body["workers"]["gpus"].items()}
    assert gpus == {"host-a": None, "host-b-gpu0": "0", "host-b-gpu1": "1"}, body  # /api/health names each GPU
    gpu_host = cluster["hosts"]["host-b"]
    assert set(worker_pids(gpu_host.home)) == {"0", "1"}  # one process per GPU, each seeing only its own
    assert set(worker_pids(cluster["hosts"]["host-a"].home)) == {"<unset>"}
    gpu_host.log.flush()
    log = Path(gpu_host.log.name).read_text()
    assert "no GPU is visible to torch here" in log and "compute on the CPU" in log, log


def test_jobs_spread_over_two_hosts_and_the_api_reads_every_artifact(cluster):
    url = cluster["url"]
    jobs = []
    for seed in range(4):  # the first three go to three idle workers (prefetch 1), whatever their order
        response = httpx.post(f"{url}/api/minima/train", json={**TINY_TRAIN, "seed": seed}, timeout=30)
        assert response.status_code == 202, response.text
        jobs.append(response.json()["id"])
    done = [wait_job(url, job_id, timeout_s=120) for job_id in jobs]
    assert all(job["state"] == "succeeded" for job in done), done
    engine = create_engine(cluster["database_url"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, worker FROM jobs WHERE kind = 'train'")).all()
    finally:
        engine.dispose()
    by_job = {row.id: row.worker.split("@")[0] for row in rows}  # the Celery hostname of the worker that ran it
    hosts = {job_id: by_job[job_id].split("-gpu")[0] for job_id in jobs}
    assert set(hosts.values()) == {"host-a", "host-b"}, by_job  # both hosts trained (host-b on its GPU workers)

    # every checkpoint a worker wrote is in the shared root (no host kept one of its own), and the API serves it
    stored = {p.name for p in cluster["artifacts"].rglob("*") if p.is_file() and p.parent.name not in ("locks", "tmp")}
    for host in cluster["hosts"].values():
        assert not any((host.home / "artifacts").rglob("*")), host.name
    minima = {}
    for job in done:
        data = httpx.get(f"{url}/api/minima/{job['minimum_id']}/checkpoint", timeout=30)
        assert data.status_code == 200, data.text
        assert hashlib.sha256(data.content).hexdigest() in stored
        minima[hosts[job["id"]]] = job["minimum_id"]

    # a path between a minimum of each host: whichever worker runs it reads the other host's checkpoint
    response = httpx.post(f"{url}/api/analyses/path", json={
        "a": minima["host-a"], "b": minima["host-b"], "kind": "linear", "points": 5})
    assert response.status_code in (200, 202), response.text
    answer = response.json()
    job = answer["job"] if answer["cached"] else wait_job(url, answer["job"]["id"], timeout_s=60)
    assert job["state"] == "succeeded", job
    result = httpx.get(f"{url}/api/results/{job['result_id']}", timeout=10)
    assert result.status_code == 200 and len(result.json()["data"]["train_error"]) == 5, result.text


def test_sigterm_stops_every_gpu_worker_and_leaves_no_process(cluster):
    """Runs last: it stops host-b, as `docker stop` or Ctrl-C would."""
    gpu_host = cluster["hosts"]["host-b"]
    assert worker_pids(gpu_host.home)
    gpu_host.process.send_signal(signal.SIGTERM)
    gpu_host.process.wait(30)
    assert gpu_host.process.returncode == 0, Path(gpu_host.log.name).read_text()
    assert not [pid for pid in pids_with_home(gpu_host.home) if alive(pid)], "processes left after SIGTERM"
    body = wait_health(cluster["url"], lambda b: b.get("workers", {}).get("count") == 1, timeout_s=10)
    assert [name.split("@")[0] for name in body["workers"]["names"]] == ["host-a"], body  # keys removed at once


@pytest.mark.parametrize("gpus, message", [
    ("all", "no GPU is visible to torch here"),
    ("x,", "malformed: 'x', ''"),
    ("0,0", "GPU 0 named twice"),
    ("", "malformed: ''"),
])
def test_a_bad_gpu_list_fails_clearly(monkeypatch, tmp_path, gpus, message):
    """The real command, in this process (typer's runner): exit code 2, the reason, and nothing started."""
    from typer.testing import CliRunner

    from toroid.cli import app
    from toroid.store.settings import get_settings

    if gpus == "all" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `--gpus all` starts workers here")
    monkeypatch.setenv("TOROID_HOME", str(tmp_path))
    monkeypatch.setenv("TOROID_REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker", "--gpus", gpus])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert message in result.output and "error:" in result.output, result.output
    assert not (tmp_path / "logs").exists()  # no worker was started


def cuda_visible_devices(pid: int) -> str | None:
    """CUDA_VISIBLE_DEVICES of a supervisor's child once it has exec'd its own command (and environment)."""
    deadline = time.monotonic() + 20
    while b"celery" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, pid
        time.sleep(0.05)
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"CUDA_VISIBLE_DEVICES="):
            return item.split(b"=", 1)[1].decode()
    return None


def test_up_runs_one_batch_worker_per_gpu_with_toroid_gpus(tmp_path):
    """`toroid up` with TOROID_GPUS: the workers `Supervisor.start_workers` starts, and a restart keeps a worker's
    GPU (the children are checked, then stopped together before they finish booting)."""
    supervisor = Supervisor(tmp_path, log=lambda _line: None, backoff_initial_s=0.1)
    env = dict(os.environ, TOROID_HOME=str(tmp_path), TOROID_REDIS_URL="redis://127.0.0.1:9/0")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        children = supervisor.start_workers(env, 1, "interactive,cpu,gpu", interactive=1, batch_niceness=10,
                                            gpus=["0", "1"])
        assert [c.name for c in children] == ["worker-gpu0", "worker-gpu1", "worker-interactive"]
        for child in children:
            argv = child.argv
            assert argv[argv.index("--hostname") + 1] == f"toroid-{os.getpid()}-{child.name}@%h"
            gpu = child.name.removeprefix("worker-gpu") if "gpu" in child.name else None
            assert cuda_visible_devices(child.process.pid) == gpu, child.name
        assert [c.argv[c.argv.index("--queues") + 1] for c in children] == ["cpu,gpu", "cpu,gpu", "interactive"]
        assert children[0].argv[:2] == [children[0].argv[0], "-n"] and children[0].argv[2] == "10"  # niced
        # a GPU's worker that dies is restarted on the same GPU
        old = children[1].process.pid
        os.killpg(old, signal.SIGKILL)
        supervisor.supervise(lambda: children[1].restarts >= 1 and children[1].restart_at is None, poll_s=0.05)
        assert children[1].process.pid != old and cuda_visible_devices(children[1].process.pid) == "1"
        if Path("/proc/self/autogroup").exists():  # and its session's niceness (backend/supervisor.py, nice_session)
            assert Path(f"/proc/{children[1].process.pid}/autogroup").read_text().split()[-1] == "10"
    finally:
        supervisor.stop_all(together=True)
    assert not [pid for pid in pids_with_home(tmp_path) if alive(pid)]


def test_up_refuses_a_malformed_toroid_gpus(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from toroid.cli import app
    from toroid.store.settings import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOROID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOROID_GPUS", "1,x")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["up", "--no-demo"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "TOROID_GPUS='1,x'" in result.output and "malformed: 'x'" in result.output
    assert not (tmp_path / "home" / "logs").exists()  # nothing was started
