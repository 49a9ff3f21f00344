"""A map of hundreds of minima through the real stack: ``python -m bench.map --minima 500``.

``--minima`` distinct digits MLP minima (widths ``--width``, default [24]; each its own random initialization plus
``--epochs`` epochs of minibatch SGD, trained in this process in a few milliseconds each) are uploaded to a real
``toroid up`` (:class:`tests.conftest.Stack`: embedded Redis, Celery workers, the API, ``TOROID_DEMO=false``) one
after the other, as a lab adding its minima would; each upload is evaluated by a job and the family's distances job
is queued by the server as minima arrive (store/families.py: pairwise up to ``TOROID_MAP_PAIRWISE_MAX`` minima,
then one alignment per minimum to a common reference, docs/method.md §5 "Many minima"). The clock covers

    last POST /api/minima  ->  poll GET /api/map every second  ->  laid out by MDS, every minimum placed

(target: within 120 s on this machine, issue 18). Also reported: the upload time, the distances jobs and the
pairs each computed and reused, the size of the last distances result, GET /api/map cold and warm, and with
``--screenshot PATH`` the dashboard map drawn in headless Chromium (1440 x 900): the time from opening the page to
the map drawn with every minimum, and the PNG.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from toroid.worker.landscape import build_model, load_dataset
from toroid.worker.landscape.io import state_dict_bytes

TARGET_S = 120.0


def quick_minima(count: int, width: int, epochs: int, seed0: int = 0) -> list[torch.nn.Module]:
    """``count`` digits MLPs: seed ``seed0 + k`` initialization, then ``epochs`` epochs of SGD (batch 64, lr 0.1)."""
    torch.set_num_threads(1)
    data = load_dataset("digits")
    x, y = data.x_train, data.y_train
    out = []
    for k in range(count):
        torch.manual_seed(seed0 + k)
        model = build_model("mlp", {"widths": [width]}, data, seed=seed0 + k)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for start in range(0, len(x), 64):
                batch = order[start:start + 64]
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        out.append(model.eval())
    return out


def _upload(client: httpx.Client, url: str, model: torch.nn.Module, name: str, width: int) -> dict:
    reply = client.post(
        f"{url}/api/minima",
        files={"file": (f"{name}.safetensors", state_dict_bytes(model), "application/octet-stream")},
        data={"architecture": "mlp", "config": json.dumps({"widths": [width]}), "dataset": "digits", "name": name},
    )
    if reply.status_code != 201:
        raise RuntimeError(f"upload of {name} answered {reply.status_code}: {reply.text}")
    return reply.json()


def _distances_jobs(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    jobs = client.get(f"{url}/api/jobs", params={"kind": "distances", "limit": 1000}).json()
    jobs = jobs.get("items", jobs) if isinstance(jobs, dict) else jobs
    return sorted(jobs, key=lambda j: j.get("created_at") or "")


def screenshot(url: str, count: int, path: Path) -> float:
    """Open the dashboard in headless Chromium at 1440 x 900, wait until the map shows ``count`` minima by distance,
    save ``path``; the seconds from opening the page to that map."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        t0 = time.perf_counter()
        page.goto(f"{url}/dashboard/")
        page.wait_for_function(
            """(count) => {
                const note = document.querySelector('#map-note');
                const points = document.querySelectorAll('#map-graph .scatterlayer .point').length;
                return note && note.dataset.method === 'mds' && note.dataset.pending === '0' && points >= count;
            }""", arg=count, timeout=300_000, polling=250)
        drawn = time.perf_counter() - t0
        page.wait_for_timeout(500)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        browser.close()
    return drawn


def _cached_minima(count: int, width: int, epochs: int, cache: Path | None) -> list[torch.nn.Module]:
    """:func:`quick_minima`, read from / written to ``cache`` (a torch file of their state dicts) when given."""
    key = {"count": count, "width": width, "epochs": epochs}
    if cache is not None and cache.exists():
        stored = torch.load(cache, weights_only=True)
        if stored.get("key") == key:
            data = load_dataset("digits")
            models = [build_model("mlp", {"widths": [width]}, data, seed=k) for k in range(count)]
            for model, state in zip(models, stored["states"], strict=True):
                model.load_state_dict(state)
            return [m.eval() for m in models]
    models = quick_minima(count, width, epochs)
    if cache is not None:
        torch.save({"key": key, "states": [m.state_dict() for m in models]}, cache)
    return models


def run(count: int, width: int, epochs: int, shot: Path | None, env: dict[str, str],
        cache: Path | None = None) -> dict[str, Any]:
    from tests.conftest import Stack  # the test suite's real-stack launcher

    t = time.perf_counter()
    models = _cached_minima(count, width, epochs, cache)
    train_s = time.perf_counter() - t
    print(f"trained {count} minima (widths [{width}], {epochs} epochs) in {train_s:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="toroid-bench-map-") as tmp:
        stack = Stack(Path(tmp) / "home", extra_env=env)
        try:
            stack.wait_healthy(timeout_s=180)
            with httpx.Client(timeout=300) as client:
                t0 = time.perf_counter()
                records = [_upload(client, stack.url, m, f"q{k:04d}", width) for k, m in enumerate(models)]
                last_upload = time.perf_counter()
                upload_s = last_upload - t0
                family = records[0]["family"]
                print(f"uploaded {count} minima in {upload_s:.1f} s; waiting for the map", flush=True)
                answer: dict[str, Any] = {}
                polls = []
                while time.perf_counter() - last_upload < 900:
                    p0 = time.perf_counter()
                    answer = client.get(f"{stack.url}/api/map", params={"family": family}).json()
                    polls.append(time.perf_counter() - p0)
                    if answer.get("method") in ("classical", "smacof") and not answer.get("pending") \
                            and len(answer.get("ids") or []) == count:
                        break
                    time.sleep(1.0)
                laid_out_s = time.perf_counter() - last_upload
                w0 = time.perf_counter()
                client.get(f"{stack.url}/api/map", params={"family": family}).raise_for_status()
                warm_s = time.perf_counter() - w0
                jobs = _distances_jobs(client, stack.url)
                rows = []
                for job in jobs:
                    if job.get("state") != "succeeded" or not job.get("result_id"):
                        rows.append({"state": job.get("state"), "minima": len((job.get("params") or {})
                                                                               .get("minimum_ids") or [])})
                        continue
                    reply = client.get(f"{stack.url}/api/results/{job['result_id']}")
                    data = reply.json()["data"]
                    rows.append({"state": "succeeded", "minima": len(data["ids"]), "alignment": data.get("alignment"),
                                 "computed_pairs": data.get("computed_pairs"), "reused_pairs": data.get("reused_pairs"),
                                 "result_mb": round(len(reply.content) / 2**20, 1),
                                 "run_s": _seconds(job.get("started_at"), job.get("finished_at"))})
                draw_s = screenshot(stack.url, count, shot) if shot else None
        finally:
            stack.stop()
    return {"minima": count, "width": width, "epochs": epochs, "train_s": train_s, "upload_s": upload_s,
            "laid_out_s": laid_out_s, "target_s": TARGET_S, "met": laid_out_s <= TARGET_S,
            "method": answer.get("method"), "alignment": answer.get("alignment"), "stress": answer.get("stress"),
            "variance_2d": answer.get("variance_2d"), "map_get_s": {"median": statistics.median(polls),
                                                                    "max": max(polls), "warm": warm_s},
            "distances_jobs": rows, "dashboard_draw_s": draw_s, "screenshot": str(shot) if shot else None}


def _seconds(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.map", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minima", type=int, default=500)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of the dashboard map (1440 x 900)")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained minima in this file (reruns)")
    args = parser.parse_args(argv)
    report = run(args.minima, args.width, args.epochs, args.screenshot, {}, args.cache)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    verdict = "met" if report["met"] else "MISSED"
    print(f"map of {args.minima} minima laid out {report['laid_out_s']:.1f} s after the last upload "
          f"(target {TARGET_S:.0f} s): {verdict}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
