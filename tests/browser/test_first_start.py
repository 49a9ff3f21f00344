"""The first minute of a new user (docs/dashboard.md, "First start"): `toroid up` on a fresh TOROID_HOME seeds six
demo minima, the empty map says what is training and when it will be ready, and the map places the six minima by
their distances (MDS, none pending) as the interactive worker computes them beside the training.

The time from `toroid up` to the placed map is measured and printed; CI asserts it loosely (240 s on a loaded 2-core
runner; the target on a quiet machine is 90 s, docs/dashboard.md reports the measurement)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.browser.pages import keep_evidence, open_dashboard
from tests.conftest import Stack

pytestmark = [pytest.mark.browser, pytest.mark.integration]

LOOSE_BOUND_S = 240


def placed_by_distance(url: str) -> dict | None:
    """The demo family's map (GET /api/map) once all six minima are placed by MDS, else None."""
    minima = httpx.get(f"{url}/api/minima", timeout=30).json()
    if len(minima) < 6:
        return None
    answer = httpx.get(f"{url}/api/map", params={"family": minima[0]["family"]}, timeout=30).json()
    done = answer.get("method") in ("smacof", "classical") and len(answer["ids"]) == 6 and not answer["pending"]
    return answer if done else None


def test_first_start_places_six_demo_minima_by_distance(browser, tmp_path):
    started = time.monotonic()
    stack = Stack(tmp_path / "home", {"TOROID_DEMO": "true"})
    context = None
    try:
        context, page = open_dashboard(browser, stack.url)
        jobs = httpx.get(f"{stack.url}/api/jobs", timeout=30).json()
        demo = [j for j in jobs if j["kind"] == "train"]
        assert len(demo) == 6, jobs
        # every demo job says where it stands: its queue and, while it waits or runs, an estimate of when it ends
        assert all(j["queue"] != "interactive" for j in demo)
        active = [j for j in demo if j["state"] in ("queued", "running")]
        assert all(j["eta_s"] is not None for j in active), active
        if not httpx.get(f"{stack.url}/api/minima", timeout=30).json():  # the empty map names what trains
            page.wait_for_function(
                "() => (document.getElementById('map-graph')?.innerText || '').includes('training')", timeout=20_000)
        # The user's browser usually runs elsewhere; a headless Chromium polling on this 2-core machine takes about
        # a core from the workers, so the page is closed while they work and opened again to read the map.
        context.close()
        context = None
        deadline = started + LOOSE_BOUND_S
        while (answer := placed_by_distance(stack.url)) is None:
            assert time.monotonic() < deadline, httpx.get(f"{stack.url}/api/jobs", timeout=30).json()
            time.sleep(1)
        placed_s = time.monotonic() - started
        context, page = open_dashboard(browser, stack.url)
        try:
            page.wait_for_function(
                "() => { const n = document.getElementById('map-note');"
                " return n && n.dataset.method === 'mds' && n.dataset.pending === '0'"
                " && document.querySelectorAll('#map-graph .scatterlayer .point').length >= 6; }",
                timeout=60_000, polling=500)
        except Exception:
            keep_evidence(page, tmp_path, ["map-note", "map-status", "map-graph"])
            raise
        shown_s = time.monotonic() - started
        print(f"first start: 6 demo minima placed by distance {placed_s:.1f} s after `toroid up` started "
              f"(map drawn in the browser at {shown_s:.1f} s; stress-1 {answer['stress']:.2f})")
        assert shown_s < LOOSE_BOUND_S
    finally:
        if context is not None:
            context.close()
        stack.stop()
