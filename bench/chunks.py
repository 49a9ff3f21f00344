"""``python -m bench.chunks``: one long torus on N worker processes, split into chunks, vs whole on one worker
(docs/operations.md, "Chunks").

Two digits MLP minima (widths ``--width`` x 2, a few epochs of SGD, trained here once) are uploaded to a fresh stack
(``bench.study.worker_stack``: embedded Redis, the API, N worker processes of concurrency 1 and one thread each,
``OMP_NUM_THREADS=1``); the torus ``--resolution`` x ``--resolution`` through them is posted and the clock runs
until its job succeeded. Runs, alternated:

* ``1 worker, whole``: ``TOROID_CHUNK_COST=0``, the job computes every cell itself (the baseline);
* ``N workers, chunks``: ``TOROID_CHUNK_COST`` = the job's estimated cost / ``--chunks``, so it splits into that many.

Printed: the wall times, the ratio (N workers with chunks / 1 worker whole; on a machine with N free cores the
ideal is 1/N plus the cost of splitting), how many processes computed chunks, and the load average before and after
each run (on a shared machine it says how much of the CPU a run had). Both runs' grids are compared (they must be
equal to the last digit of every error).

    python -m bench.chunks                          # 65 x 65 torus, widths [512, 512], 1 vs 2 workers, 8 chunks
    python -m bench.chunks --resolution 33 --width 256 --chunks 4 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.study import _job_workers, _load, worker_stack

#: Wait for the stack's own jobs (the uploads' evaluations, the map's distances) to end before the clock starts.
SETTLE_S = 120.0


def _minima(width: int, epochs: int) -> list[Any]:
    import torch

    from toroid.worker.landscape import load_dataset, train_minimum

    torch.set_num_threads(1)
    data = load_dataset("digits")
    return [train_minimum("mlp", {"widths": [width, width]}, data, sampler="sgd", seed=seed, epochs=epochs)[0]
            for seed in (0, 1)]


def _settle(url: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{url}/api/jobs", params={"limit": 1000}, timeout=30).json()
        if not any(j["state"] in ("queued", "running") for j in jobs):
            return
        time.sleep(0.5)


def run_once(workers: int, chunk_cost: float, models: list[Any], width: int, resolution: int) -> dict[str, Any]:
    from toroid.worker.landscape.io import state_dict_bytes

    with worker_stack(workers, {"TOROID_CHUNK_COST": repr(float(chunk_cost)), "TOROID_INTERACTIVE_MAX_COST": "0",
                                "TOROID_MAX_JOB_COST": "0"}, prefix="toroid-bench-chunks-") as (url, home):
        ids = []
        for name, model in zip("ab", models, strict=True):
            reply = httpx.post(f"{url}/api/minima", timeout=120,
                               files={"file": (f"{name}.safetensors", state_dict_bytes(model))},
                               data={"architecture": "mlp", "config": json.dumps({"widths": [width, width]}),
                                     "dataset": "digits", "name": name})
            reply.raise_for_status()
            ids.append(reply.json()["id"])
        _settle(url)
        load_before = _load()
        start = time.perf_counter()
        posted = httpx.post(f"{url}/api/analyses/torus", json={"minimum_ids": ids, "resolution": resolution},
                            timeout=60)
        if posted.status_code != 202:
            raise RuntimeError(f"POST /api/analyses/torus answered {posted.status_code}: {posted.text}")
        job = posted.json()["job"]
        while job["state"] in ("queued", "running"):
            time.sleep(0.2)
            job = httpx.get(f"{url}/api/jobs/{job['id']}", timeout=30).json()
        wall = time.perf_counter() - start
        if job["state"] != "succeeded":
            raise RuntimeError(f"the torus job {job['state']}: {job['error']}")
        data = httpx.get(f"{url}/api/results/{job['result_id']}", timeout=60).json()["data"]
        jobs = httpx.get(f"{url}/api/jobs", params={"limit": 1000}, timeout=30).json()
        chunks = [j for j in jobs if ((j.get("params") or {}).get("chunk") or {}).get("parent") == job["id"]]
        return {"workers": workers, "chunks": len(chunks), "wall_s": round(wall, 2), "cost": job.get("cost"),
                "load_before": load_before, "load_after": _load(),
                "processes": len({w for w in _job_workers(home) if w}),
                "train_error": np.array(data["train_error"], dtype=float)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chunks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=65)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = _minima(args.width, args.epochs)
    rows: list[dict[str, Any]] = []
    cost = None
    for repeat in range(args.repeats):
        for workers, split in ((1, False), (args.workers, True)):  # alternated: a change of load hits both
            chunk_cost = (cost / args.chunks * 1.001) if split and cost else 0.0
            if split and not cost:
                raise RuntimeError("the whole run did not report its cost")
            row = run_once(workers, chunk_cost, models, args.width, args.resolution)
            cost = cost or row["cost"]
            row["repeat"] = repeat
            rows.append(row)
            print(f"torus {args.resolution}x{args.resolution}, widths [{args.width}, {args.width}]: {workers} "
                  f"worker(s), {row['chunks'] or 'no'} chunks: {row['wall_s']:.1f} s wall, {row['processes']} "
                  f"process(es) computed; load average {row['load_before']} before, {row['load_after']} after",
                  flush=True)
    whole = [r for r in rows if not r["chunks"]]
    split = [r for r in rows if r["chunks"]]
    same = all(np.allclose(r["train_error"], whole[0]["train_error"], atol=1e-9, equal_nan=True) for r in split)
    ratio = statistics.median(r["wall_s"] for r in split) / statistics.median(r["wall_s"] for r in whole)
    print(f"{args.workers} workers with chunks / 1 worker whole: {ratio:.2f} "
          f"(ideal on {args.workers} free cores: {1 / args.workers:.2f}); grids equal: {same}")
    if args.json:
        for r in rows:
            r.pop("train_error")
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows,
                                         "ratio": round(ratio, 3), "grids_equal": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
