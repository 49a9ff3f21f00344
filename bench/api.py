"""End-to-end latency through the real stack: upload two minima, run a 17-point geodesic job.

A real ``toroid up`` (embedded Redis, a Celery worker process, the API; ``TOROID_DEMO=false``)
is started in a temporary ``TOROID_HOME`` with :class:`tests.conftest.Stack`.  Two digits MLP
minima per repetition are trained in this process beforehand with the core's
:func:`~toroid.worker.landscape.samplers.train_minimum` (a few epochs of SGD; different seeds per
repetition, so the results cache never answers a repetition).  The clock covers

    POST /api/minima (A)  ->  POST /api/minima (B)  ->  POST /api/analyses/path (geodesic, 17 points)
    ->  poll GET /api/jobs/<id> every 20 ms  ->  state "succeeded"

i.e. what a user waits for from uploading two checkpoints to a finished geodesic profile
(docs/method.md §7).  Stack start-up is reported separately and not counted.  Target: < 10 s.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.common import Row, Settings
from toroid.worker.landscape.data import load_dataset
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.samplers import train_minimum

__all__ = ["run_api", "upload_to_geodesic"]

CONFIG = {"widths": [512, 512]}
POINTS = 17


def _upload(client: httpx.Client, url: str, model: torch.nn.Module, name: str) -> str:
    reply = client.post(
        f"{url}/api/minima",
        files={"file": (f"{name}.safetensors", state_dict_bytes(model), "application/octet-stream")},
        data={"architecture": "mlp", "config": json.dumps(CONFIG), "dataset": "digits", "name": name},
    )
    if reply.status_code != 201:
        raise RuntimeError(f"upload of {name} answered {reply.status_code}: {reply.text}")
    return reply.json()["id"]


def upload_to_geodesic(
    client: httpx.Client, url: str, a: torch.nn.Module, b: torch.nn.Module, tag: str, timeout_s: float = 300.0
) -> dict[str, Any]:
    """Upload ``a`` and ``b``, queue a 17-point geodesic path, wait for it; the stage times in seconds."""
    start = time.perf_counter()
    id_a = _upload(client, url, a, f"bench-{tag}-a")
    id_b = _upload(client, url, b, f"bench-{tag}-b")
    uploaded = time.perf_counter()
    reply = client.post(
        f"{url}/api/analyses/path", json={"a": id_a, "b": id_b, "kind": "geodesic", "points": POINTS, "bn": "recompute"}
    )
    if reply.status_code not in (200, 202):
        raise RuntimeError(f"POST /api/analyses/path answered {reply.status_code}: {reply.text}")
    body = reply.json()
    if body.get("cached"):
        raise RuntimeError("the geodesic was answered from the results cache: the bench needs fresh minima")
    job_id = body["job"]["id"]
    queued = time.perf_counter()
    started_at = None
    while True:
        job = client.get(f"{url}/api/jobs/{job_id}").json()
        if job["state"] == "running" and started_at is None:
            started_at = time.perf_counter()
        if job["state"] == "succeeded":
            break
        if job["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"geodesic job {job_id} ended {job['state']}: {job.get('error')}")
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError(f"geodesic job {job_id} not finished after {timeout_s} s (state {job['state']})")
        time.sleep(0.02)
    done = time.perf_counter()
    result = client.get(f"{url}/api/results/{job['result_id']}").json()
    return {
        "total_s": done - start,
        "upload_s": uploaded - start,
        "queue_s": (started_at or done) - queued,
        "job_s": done - queued,
        "barrier": result["data"]["barrier"],
    }


def run_api(settings: Settings) -> list[Row]:
    """The ``api`` workload: median upload-to-finished-geodesic latency over ``settings.repeats`` runs."""
    from tests.conftest import Stack  # the test suite's real-stack launcher (imports pytest, httpx)

    epochs = 2 if settings.quick else 5
    data = load_dataset("digits")
    pairs = []
    for r in range(settings.repeats):
        a, _ = train_minimum("mlp", CONFIG, data, "sgd", seed=2 * r, epochs=epochs, target_error=None, device="cpu")
        b, _ = train_minimum("mlp", CONFIG, data, "sgd", seed=2 * r + 1, epochs=epochs, target_error=None, device="cpu")
        pairs.append((a, b))

    with tempfile.TemporaryDirectory(prefix="toroid-bench-") as tmp:
        t0 = time.perf_counter()
        extra_env = {"TOROID_DEVICE": settings.device.type}
        stack = Stack(Path(tmp) / "home", extra_env=extra_env)
        try:
            stack.wait_healthy(timeout_s=120)
            boot_s = time.perf_counter() - t0
            runs = []
            with httpx.Client(timeout=120) as client:
                for r, (a, b) in enumerate(pairs):
                    runs.append(upload_to_geodesic(client, stack.url, a, b, tag=str(r)))
        finally:
            stack.stop()
    totals = [run["total_s"] for run in runs]
    med = statistics.median(totals)
    middle = min(runs, key=lambda run: abs(run["total_s"] - med))
    note = (
        f"upload {middle['upload_s']:.2f} s + queue {middle['queue_s']:.2f} s + "
        f"run {middle['job_s'] - middle['queue_s']:.2f} s"
        f"; first run {totals[0]:.2f} s; stack boot {boot_s:.1f} s (not counted)"
    )
    return [
        Row(
            workload="api",
            case=f"digits MLP 64-512-512-10, {POINTS}-pt geodesic",
            method="toroid up: 2 uploads -> job succeeded",
            seconds=med,
            runs=totals,
            note=note,
            extra={"runs": runs, "boot_s": boot_s, "epochs": epochs, "target_s": 10.0},
        )
    ]
