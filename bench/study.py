"""``python -m bench.study``: a study on N worker processes vs one (docs/studies.md, "How it runs").

For each worker count (default 1, then 2) a fresh stack is started in a temporary ``TOROID_HOME`` with the same
processes ``toroid up`` runs (``toroid.backend.supervisor.Supervisor``: embedded Redis, the API, and N Celery
worker processes of concurrency 1, each consuming every queue, each computing on one thread:
``OMP_NUM_THREADS=1``); the study is posted to ``POST /api/studies`` and the clock runs until
``GET /api/studies/{id}`` says succeeded (stack start-up not counted). A fresh home per run, so the caches never
answer. The load average of the machine (``os.getloadavg()``) is printed before and after each run: on a shared
machine it says how much of the CPU the run had. Target (issue 18): wall time on 2 workers / on 1 <= 0.65.

    python -m bench.study                                    # the digits-mlp preset, 1 then 2 workers
    python -m bench.study --workers 1 2 --repeats 2          # alternate the runs, medians
    python -m bench.study --set one_bend.pairs=1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from toroid.backend.supervisor import Supervisor, free_port
from toroid.cli_study import parse_overrides

QUEUES = "interactive,cpu,gpu"
TARGET_RATIO = 0.65


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def worker_stack(workers: int, extra_env: dict[str, str] | None = None, prefix: str = "toroid-bench-"):
    """A fresh stack in a temporary home: embedded Redis, the API and ``workers`` worker processes of concurrency 1
    (each consuming every queue, one thread each); yields (API base URL, home) once every worker answers."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{workers}w-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = dict(os.environ, TOROID_HOME=str(home), TOROID_DEMO="false", TOROID_DEVICE="cpu",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOROID_ALLOW_DOWNLOADS="false")
        for inherited in ("TOROID_REDIS_URL", "TOROID_DATABASE_URL", "TOROID_API_TOKEN"):
            env.pop(inherited, None)
        env.update(extra_env or {})
        port = free_port()
        env["TOROID_PORT"] = str(port)
        url = f"http://127.0.0.1:{port}"
        supervisor = Supervisor(home, log=lambda _line: None)
        try:
            env["TOROID_REDIS_URL"] = supervisor.start_redis(env)
            for i in range(workers):
                supervisor.start_worker(env, 1, QUEUES, name=f"worker{i}")
            supervisor.spawn("api", [sys.executable, "-m", "uvicorn", "toroid.backend.main:create_app", "--factory",
                                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env)
            deadline = time.monotonic() + 180
            while True:
                try:
                    health = httpx.get(f"{url}/api/health", timeout=5).json()
                    if health.get("workers", {}).get("count", 0) >= workers:
                        break
                except (httpx.TransportError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the stack did not start; see {home / 'logs'}")
                time.sleep(0.3)
            yield url, home
        finally:
            supervisor.stop_all()


def run_once(workers: int, body: dict[str, Any], timeout_s: float = 3600.0) -> dict[str, Any]:
    """Start a stack with ``workers`` worker processes in a fresh home, run the study, stop the stack."""
    with worker_stack(workers, prefix="toroid-bench-study-") as (url, home):
        load_before = _load()
        start = time.perf_counter()
        posted = httpx.post(f"{url}/api/studies", json=body, timeout=60)
        if posted.status_code != 202:
            raise RuntimeError(f"POST /api/studies answered {posted.status_code}: {posted.text}")
        study_id = posted.json()["id"]
        while True:
            record = httpx.get(f"{url}/api/studies/{study_id}", timeout=30).json()
            if record["state"] not in ("queued", "running"):
                break
            if time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"the study did not finish within {timeout_s} s: {record['message']}")
            time.sleep(0.5)
        wall = time.perf_counter() - start
        if record["state"] != "succeeded":
            raise RuntimeError(f"the study {record['state']}: {record['error']}")
        workers_seen = len({w for w in _job_workers(home) if w})
        return {"workers": workers, "wall_s": round(wall, 1), "load_before": load_before, "load_after": _load(),
                "steps": record["steps_total"], "worker_processes_used": workers_seen}


def _job_workers(home: Path) -> list[str]:
    """The worker of every finished step job (which processes computed)."""
    import sqlite3

    with sqlite3.connect(home / "toroid.db") as db:
        return [row[0].split(" pid ")[-1] for row in db.execute(
            "SELECT worker FROM jobs WHERE kind != 'study' AND state = 'succeeded'")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="digits-mlp")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="spec override KEY=VALUE")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    body = {"preset": args.preset, **parse_overrides(args.overrides)}
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for workers in args.workers:  # alternated, so that a change of the machine's load hits both
            row = run_once(workers, body)
            row["repeat"] = repeat
            rows.append(row)
            print(f"{args.preset}: {workers} worker(s): {row['wall_s']:.1f} s wall, {row['steps']} steps, "
                  f"{row['worker_processes_used']} worker process(es) computed; load average {row['load_before']} "
                  f"before, {row['load_after']} after", flush=True)
    medians = {w: statistics.median(r["wall_s"] for r in rows if r["workers"] == w) for w in args.workers}
    summary: dict[str, Any] = {"preset": args.preset, "overrides": body, "runs": rows, "median_wall_s": medians}
    if 1 in medians and 2 in medians:
        ratio = medians[2] / medians[1]
        summary["ratio_2_to_1"] = round(ratio, 3)
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        print(f"target: 2 workers / 1 worker <= {TARGET_RATIO}: {ratio:.2f} ({medians[2]:.1f} s / {medians[1]:.1f} s)"
              f" {verdict}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
