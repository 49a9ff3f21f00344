"""What an idle dashboard poll costs with many minima on the server (docs/dashboard.md, "Polling").

``python -m bench.polls [--minima 500] [--json out.json]`` starts a real ``toroid up`` (embedded Redis, a Celery
worker process, the API and the dashboard; :class:`tests.conftest.Stack`) in a temporary ``TOROID_HOME``, uploads
``--minima`` distinct digits MLPs (widths [24], each from its own random initialization, saved with
:func:`toroid.worker.landscape.io.save_minimum` and posted with their sidecars to ``POST /api/minima``), waits until
no job is queued or running (the evaluations and the family's distances), opens the dashboard in headless Chromium
and records the Dash callback requests (``_dash-update-component``) of one whole poll cycle once nothing changes:
from one poll's request to the next one's (after a poll that changed nothing, so that what earlier changes fired
has ended), request and response bodies as Chromium counts them.

The dashboard server's own calls to the API during that poll are replayed from this process with the same
``If-None-Match`` ETags (read from the poll's request) and measured too (request line, headers and body both ways,
as sent on the wire), beside what the same two calls cost without ETags. Target: < 5 KB per idle poll, browser <->
dashboard (issue "Scale out": 500 minima, a poll with nothing new).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

__all__ = ["TARGET_BYTES", "idle_poll", "make_minima", "replay_api_calls", "upload_minima", "wait_until_idle"]

TARGET_BYTES = 5 * 1024
WIDTHS = [24]
POLL_OUTPUT = "poll-marks.data"  # the poll callback is the one that writes the marks (dashboard/app.py)


def make_minima(directory: Path, count: int, *, first_seed: int = 0, prefix: str = "poll",
                own_families: bool = False) -> list[tuple[Path, Path]]:
    """``count`` distinct digits MLP checkpoints (one random initialization each) with their sidecars: one family
    (widths [24]), or with ``own_families`` each its own (widths [8 + seed]), so the server queues no family
    distances for them (a test that needs no map)."""
    from toroid.worker.landscape.data import load_dataset
    from toroid.worker.landscape.io import save_minimum
    from toroid.worker.landscape.nets import build_model

    data = load_dataset("digits")
    config = {"widths": list(WIDTHS)}
    saved = []
    for seed in range(first_seed, first_seed + count):
        if own_families:
            config = {"widths": [8 + seed]}
        model = build_model("mlp", dict(config), data, seed=seed)
        saved.append(save_minimum(model, directory / f"{prefix}-{seed}.safetensors", architecture="mlp", config=config,
                                  dataset="digits", dataset_options=data.options, name=f"{prefix}-{seed}",
                                  provenance={"sampler": "sgd", "seed": seed}))
    return saved


def upload_minima(url: str, files: list[tuple[Path, Path]], headers: dict[str, str] | None = None,
                  threads: int = 2) -> list[str]:
    """Upload the checkpoints with their sidecars to ``url``/api/minima; the new ids, in order."""

    def one(pair: tuple[Path, Path]) -> str:
        checkpoint, sidecar = pair
        with httpx.Client(timeout=120, headers=headers) as client:
            answer = client.post(f"{url}/api/minima", files={"file": (checkpoint.name, checkpoint.read_bytes()),
                                                              "sidecar": (sidecar.name, sidecar.read_bytes())})
        if answer.status_code != 201:
            raise RuntimeError(f"upload of {checkpoint.name} answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()["id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, files))


def wait_until_idle(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> float:
    """Seconds until no job is queued or running (RuntimeError after ``timeout_s``)."""
    start = time.monotonic()
    while True:
        busy = sum(len(httpx.get(f"{url}/api/jobs", params={"state": state, "limit": 1}, headers=headers,
                                 timeout=30).json()) for state in ("queued", "running"))
        if not busy:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"jobs still queued or running after {timeout_s} s")
        time.sleep(1.0)


def _status(request) -> int:
    """The status of a request's answer (waiting for it), 0 when none came."""
    response = request.response()
    return response.status if response is not None else 0


def _sizes(request) -> dict[str, int]:
    sizes = request.sizes()
    return {"request_body": int(sizes["requestBodySize"]), "request_headers": int(sizes["requestHeadersSize"]),
            "response_body": int(sizes["responseBodySize"]), "response_headers": int(sizes["responseHeadersSize"])}


def idle_poll(browser, url: str, *, timeout_s: float = 90.0, cookies: list[dict] | None = None,
              whole_cycle: bool = True) -> dict[str, Any]:
    """Open the dashboard, wait until its polls change nothing (an empty answer), then record one whole poll cycle:
    every Dash callback request from one poll's request to the next poll's (``whole_cycle=False``: the first poll
    answered with no body, alone). Returns the byte counts and the poll's request body (its marks hold the ETags the
    dashboard server sent the API). ``cookies``: e.g. the session cookie of a signed-in user."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    seen: list[Any] = []  # in the order the browser sent them

    def sent(request) -> None:
        if "_dash-update-component" in request.url:
            seen.append(request)

    page.on("request", sent)
    try:
        page.goto(f"{url}/dashboard/")
        page.wait_for_selector("#map-graph .js-plotly-plot", timeout=60_000)
        deadline = time.monotonic() + timeout_s
        cycle: list[Any] = []
        while time.monotonic() < deadline:
            page.wait_for_timeout(500)
            polls = [i for i, r in enumerate(seen) if POLL_OUTPUT in (r.post_data or "")]
            # an idle cycle: from a poll answered with no body, after another such poll (callbacks that earlier
            # changes fired have ended), up to the next poll
            if not whole_cycle:
                cycle = [seen[i] for i in polls[1:] if _status(seen[i]) == 204][:1]
            for before, a, b in zip(polls, polls[1:], polls[2:], strict=False):
                if cycle:
                    break
                if _status(seen[before]) == _status(seen[a]) == 204:
                    cycle = seen[a:b]
                    break
            if cycle:
                break
        if not cycle:
            raise RuntimeError(f"no idle poll cycle within {timeout_s} s ({len(seen)} callback requests seen)")
        requests = [{"output": json.loads(r.post_data).get("output", "")[:80], "status": _status(r),
                     **_sizes(r)} for r in cycle]
        poll = requests[0]
        body = lambda r: r["request_body"] + r["response_body"]  # noqa: E731
        return {
            "poll_bytes": body(poll),
            "poll_bytes_with_headers": body(poll) + poll["request_headers"] + poll["response_headers"],
            "cycle_bytes": sum(body(r) for r in requests),
            "cycle_requests": requests,
            "poll_request": json.loads(cycle[0].post_data),
        }
    finally:
        context.close()


def _wire_bytes(response: httpx.Response) -> int:
    """A request and its answer as sent on the wire (request line, headers, body; status line, headers, body)."""
    request = response.request
    head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    answer = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in response.headers.items()) + "\r\n"
    return len(head.encode()) + len(request.content) + len(answer.encode()) + len(response.content)


def replay_api_calls(url: str, poll_request: dict[str, Any], headers: dict[str, str] | None = None,
                     timings: bool = False) -> dict[str, Any]:
    """The dashboard server's two calls of that poll (``/api/minima`` and ``/api/jobs?limit=100`` with the ETags of
    the poll's marks), made again from here: their statuses and bytes, and the bytes of the same calls without
    ETags (what every poll cost the dashboard server before); with ``timings``, how long the API takes for each."""
    marks = next(s["value"] for s in poll_request["state"] if s["id"] == "poll-marks")
    calls = {"minima": ("/api/minima", {}), "jobs": ("/api/jobs", {"limit": 100})}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for name, (path, params) in calls.items():
            conditional = client.get(path, params=params, headers={"If-None-Match": marks[name]})
            full = client.get(path, params=params)
            out[name] = {"status": conditional.status_code, "bytes": _wire_bytes(conditional),
                         "without_etag_bytes": _wire_bytes(full), "records": len(full.json())}
            if timings:  # the API's time to answer, median of 5 (a 304 skips building and serializing the records)
                for key, extra in (("ms", {"If-None-Match": marks[name]}), ("without_etag_ms", {})):
                    times = [client.get(path, params=params, headers=extra).elapsed.total_seconds() for _ in range(5)]
                    out[name][key] = round(1000 * statistics.median(times), 1)
    out["bytes"] = sum(v["bytes"] for v in out.values() if isinstance(v, dict))
    out["without_etag_bytes"] = sum(v["without_etag_bytes"] for v in out.values() if isinstance(v, dict))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.polls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minima", type=int, default=500, help="distinct digits MLP minima to upload (500)")
    parser.add_argument("--idle-timeout", type=float, default=900.0, help="seconds to wait for the jobs to finish")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, Stack  # the test suite's real-stack launcher

    with tempfile.TemporaryDirectory(prefix="toroid-bench-polls-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        stack = Stack(root / "home")
        try:
            stack.wait_healthy()
            boot_s = time.monotonic() - started
            files = make_minima(root, args.minima)
            started = time.monotonic()
            upload_minima(stack.url, files)
            upload_s = time.monotonic() - started
            idle_s = wait_until_idle(stack.url, args.idle_timeout)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    measured = idle_poll(browser, stack.url)
                finally:
                    browser.close()
            api = replay_api_calls(stack.url, measured["poll_request"], timings=True)
        finally:
            stack.stop()
    report = {"minima": args.minima, "boot_s": round(boot_s, 1), "upload_s": round(upload_s, 1),
              "jobs_done_after_upload_s": round(idle_s, 1), "target_bytes": TARGET_BYTES,
              **{k: v for k, v in measured.items() if k != "poll_request"}, "api": api,
              "met": measured["poll_bytes"] < TARGET_BYTES}
    print(f"{args.minima} minima uploaded in {upload_s:.1f} s; jobs finished {idle_s:.1f} s later")
    print(f"idle poll, browser <-> dashboard: {measured['poll_bytes']} B (request + response bodies; "
          f"{measured['poll_bytes_with_headers']} B with headers); whole poll cycle: {measured['cycle_bytes']} B in "
          f"{len(measured['cycle_requests'])} callback request(s)")
    for request in measured["cycle_requests"]:
        print(f"  {request['status']} {request['output']}: {request['request_body']} B up, "
              f"{request['response_body']} B down")
    print(f"dashboard <-> API: minima {api['minima']['status']} ({api['minima']['bytes']} B), jobs "
          f"{api['jobs']['status']} ({api['jobs']['bytes']} B); without ETags {api['without_etag_bytes']} B")
    for name in ("minima", "jobs"):
        print(f"  API time for {name}: {api[name]['ms']} ms answering 304, {api[name]['without_etag_ms']} ms "
              "answering in full (median of 5)")
    print(f"target < {TARGET_BYTES} B per idle poll: {'met' if report['met'] else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
