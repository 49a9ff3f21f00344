"""The Data view in a real headless Chromium against a real `toroid up` stack: a researcher's own npz goes in through
"Add data", two minima are trained on it from the train form, and the map draws the paths between them.

Also the refusals a user meets in the browser: an npz with NaN inputs shows the API's message verbatim and adds
nothing. Screenshots (1440x900) go to ``tmp_path`` and to TOROID_SCREENSHOTS=<dir> when set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.browser.pages import keep_evidence, open_dashboard

pytestmark = pytest.mark.browser

NAME = "lab-scans"
CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=f"{stack.url}/api", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def ui(browser, stack):
    context, page = open_dashboard(browser, stack.url)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def evidence_on_failure(request, tmp_path):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and "ui" in request.fixturenames:
        keep_evidence(request.getfixturevalue("ui"), tmp_path,
                      ["data-message", "data-files", "data-table", "train-message", "map-note", "paths-title"],
                      full_page=True)


def shoot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    target = os.environ.get("TOROID_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / path.name).write_bytes(path.read_bytes())
    return path


def lab_npz(path: Path, *, poison: bool = False) -> Path:
    """A lab's own small dataset: the 8x8 scans of the digits 0, 1 and 2 (as raw 0-16 values), split 2:1 by
    sample order, with class names; ``poison`` puts a NaN in the first training image."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = bunch.target < 3
    x, y = bunch.images[keep].astype(np.float32)[:, None], bunch.target[keep].astype(np.int64)
    if poison:
        x[0, 0, 0, 0] = np.nan
    cut = 2 * len(y) // 3
    np.savez(path, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:], class_names=np.array(CLASSES))
    return path


def open_view(page, label: str) -> None:
    page.locator("#tabs").get_by_text(label, exact=True).click()


def choose(page, dropdown: str, text: str) -> None:
    """Pick the option whose label starts with ``text`` in a Dash dropdown (opened by a click, filtered by its search
    field). The text is filled, not typed: a poll re-rendering the page (opening a view polls at once) can drop keys
    typed one by one."""
    page.click(f"#{dropdown}")
    search = page.locator("input.dash-dropdown-search")  # the open dropdown's search field (one at a time)
    search.wait_for(timeout=10_000)
    search.fill(text)
    page.get_by_role("option").filter(has_text=text).first.click()


def wait_jobs(api, ids: list[str], timeout_s: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = [api.get(f"/jobs/{i}").json() for i in ids]
        if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        time.sleep(1)
    raise AssertionError(f"jobs still running after {timeout_s} s: {[j['state'] for j in jobs]}")


def test_add_data_then_train_on_it_and_see_the_paths(ui, api, tmp_path):
    open_view(ui, "Data")
    ui.wait_for_selector("#data-table tr[data-name=digits]", timeout=30_000)
    shoot(ui, tmp_path, "data-empty")

    # a refused file: the API's message, verbatim, and nothing stored
    poisoned = lab_npz(tmp_path / "poisoned.npz", poison=True)
    expected = api.post("/datasets", files={"file": (poisoned.name, poisoned.read_bytes())}, data={"name": "bad"})
    assert 400 <= expected.status_code < 500
    ui.set_input_files("#data-drop input[type=file]", str(poisoned))
    ui.wait_for_selector("#data-files code:has-text('poisoned.npz')")
    ui.fill("#data-name", "poisoned")
    ui.click("#data-submit")
    ui.wait_for_selector("#data-message[data-kind=error]", timeout=30_000)
    assert ui.inner_text("#data-message") == expected.json()["detail"]
    assert not [d for d in api.get("/datasets").json() if d["name"] in ("poisoned", "bad")]
    shoot(ui, tmp_path, "data-refused")

    good = lab_npz(tmp_path / "scans.npz")
    ui.set_input_files("#data-drop input[type=file]", str(good))
    ui.wait_for_selector("#data-files code:has-text('scans.npz')")
    ui.fill("#data-name", NAME)
    ui.click("#data-submit")
    ui.wait_for_selector("#data-message[data-kind=ok]", timeout=60_000)
    assert NAME in ui.inner_text("#data-message")
    ui.wait_for_selector(f"#data-table tr[data-name={NAME}]", timeout=30_000)
    row = ui.inner_text(f"#data-table tr[data-name={NAME}]")
    listed = next(d for d in api.get("/datasets").json() if d["name"] == NAME)
    assert listed["num_classes"] == 3 and listed["class_names"] == CLASSES
    assert f"zero: {listed['class_counts']['train'][0]}" in row and str(listed["train"]) in row
    shoot(ui, tmp_path, "data-added")

    # two minima trained on it from the train form, the dataset chosen by its name
    open_view(ui, "Add minima")
    jobs = []
    for seed in (0, 1):
        choose(ui, "train-dataset", NAME)
        ui.fill("#train-config", json.dumps({"widths": [16]}))
        ui.fill("#train-epochs", "15")
        ui.fill("#train-seed", str(seed))
        ui.fill("#train-name", f"scans-sgd-{seed}")
        ui.click("#train-submit")
        ui.wait_for_function(f"() => document.querySelector('#train-message')?.innerText.includes('seed {seed})')"
                             " || document.querySelector('#train-message.error') !== null", timeout=30_000)
        assert "error" not in (ui.get_attribute("#train-message", "class") or ""), ui.inner_text("#train-message")
        queued = [j for j in api.get("/jobs", params={"kind": "train", "limit": 50}).json()
                  if j["params"].get("name") == f"scans-sgd-{seed}"]
        assert len(queued) == 1
        jobs.append(queued[0]["id"])
    finished = wait_jobs(api, jobs)
    assert [j["state"] for j in finished] == ["succeeded", "succeeded"], finished
    minima = sorted((m for m in api.get("/minima").json() if m["name"] in ("scans-sgd-0", "scans-sgd-1")),
                    key=lambda m: m["name"])
    assert len(minima) == 2 and {m["dataset"] for m in minima} == {"upload"}
    assert {m["dataset_options"]["sha256"] for m in minima} == {listed["id"]}
    assert all(m["test_error"] is not None and m["test_error"] < 0.2 for m in minima), minima

    # the map offers their family under the dataset's name, and two clicks draw the paths
    open_view(ui, "Map & paths")
    choose(ui, "map-family", f"mlp (widths=[16]) on {NAME}")
    ids = sorted(m["id"] for m in minima)
    ui.wait_for_function(
        """(ids) => { const gd = document.querySelector('#map-graph .js-plotly-plot');
            if (!gd || !gd.data) return false;
            const shown = gd.data.filter(t => t.customdata && t.name !== 'selected')
                                 .flatMap(t => t.customdata.map(c => c[0]));
            return ids.every(id => shown.includes(id)); }""", arg=ids, timeout=90_000)
    ui.click("#pair-reset")
    choose(ui, "pair-a", "scans-sgd-0")
    choose(ui, "pair-b", "scans-sgd-1")
    ui.wait_for_function(
        "() => document.querySelectorAll('#barrier-table tr[data-kind][data-state=succeeded]').length === 3",
        timeout=180_000)
    path = api.post("/analyses/path", json={"a": minima[0]["id"], "b": minima[1]["id"], "kind": "geodesic",
                                            "points": 33})  # what the panel asked for A = sgd-0, B = sgd-1
    assert path.status_code == 200 and path.json()["cached"] is True
    assert 0 <= path.json()["result"]["data"]["barrier"] <= 1
    shoot(ui, tmp_path, "data-paths")
    assert ui.errors == []
