"""Exports in a real headless Chromium against a real `toroid up` stack (docs/dashboard.md, "Export"; docs/api.md,
"Exports"): the API's pages render with every request to another host blocked (their scripts are served by the
server itself), every Plotly graph carries SVG and PNG download buttons that survive redraws, the barrier plot
downloads as an SVG document and a PNG image, and the header's Export menu downloads the minima, flatness and
distances tables as CSV through the dashboard (with the user's credentials), equal to the API's JSON."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.browser.pages import (
    block_other_hosts,
    choose_pair,
    keep_evidence,
    open_dashboard,
    open_tab,
    trained_minimum,
    upload_minimum,
)
from tests.integration.conftest import wait_job

pytestmark = pytest.mark.browser

CONFIG = {"widths": [24]}
SVG_BUTTON = '.modebar-btn[data-title="Download as SVG (vector)"]'
PNG_BUTTON = '.modebar-btn[data-title="Download as PNG"]'


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=f"{stack.url}/api", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def pair(api, tmp_path_factory) -> dict[str, str]:
    """Two minima trained here and uploaded with their sidecars: name -> id."""
    directory = tmp_path_factory.mktemp("export-minima")
    return {name: upload_minimum(api, *trained_minimum(directory, seed, name, CONFIG))
            for seed, name in ((0, "export-a"), (1, "export-b"))}


@pytest.fixture(scope="module")
def ui(browser, stack, pair):
    context, page = open_dashboard(browser, stack.url)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def evidence_on_failure(request, tmp_path):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and "ui" in request.fixturenames:
        keep_evidence(request.getfixturevalue("ui"), tmp_path,
                      ["paths-title", "paths-progress", "export-message", "map-note"], full_page=True)


def test_api_docs_render_offline(browser, stack, tmp_path):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    blocked = block_other_hosts(context)
    page = context.new_page()
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(msg.text))
    page.on("pageerror", lambda exc: logs.append(str(exc)))
    try:
        page.goto(f"{stack.url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() >= 20  # every route, grouped by tag
        assert page.locator(".opblock-summary-path", has_text="/api/minima").count() >= 1
        page.screenshot(path=str(tmp_path / "docs.png"))
        answer = page.goto(f"{stack.url}/redoc")
        assert "default-src 'self'" in answer.headers["content-security-policy"]  # nothing from other hosts
        page.wait_for_selector("redoc [data-section-id]", timeout=30_000)
        assert "/api/analyses/flatness" in page.inner_text("redoc")
        page.screenshot(path=str(tmp_path / "redoc.png"))
    finally:
        context.close()
    assert not any("SwaggerUIBundle is not defined" in line or "Redoc is not defined" in line for line in logs)
    assert blocked == [], f"the docs pages asked other hosts for {blocked}"


def _download(page, selector: str, tmp_path: Path, *, hover: str | None = None) -> Path:
    if hover:
        page.hover(hover)
    with page.expect_download(timeout=30_000) as info:
        page.click(selector)
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    return target


def test_barrier_plot_downloads_as_svg_and_png(ui, pair, tmp_path):
    open_tab(ui, "Map & paths")
    choose_pair(ui, "export-a", "export-b")
    ui.wait_for_function(
        "() => document.querySelectorAll('#barrier-table tr[data-kind][data-state=succeeded]').length === 3",
        timeout=600_000,  # the stack is shared: jobs of earlier test modules may still hold the worker
    )
    # every graph on the page has both buttons, whichever view drew it and however often it was redrawn
    counts = ui.evaluate("""(selectors) => {
        const graphs = [...document.querySelectorAll('.js-plotly-plot')];
        return {graphs: graphs.length, svg: graphs.filter(g => g.querySelector(selectors[0])).length,
                png: graphs.filter(g => g.querySelector(selectors[1])).length};
    }""", [SVG_BUTTON, PNG_BUTTON])
    assert counts["graphs"] >= 2 and counts["svg"] == counts["png"] == counts["graphs"], counts

    # a redraw (test and train errors) keeps the buttons, and the download is the figure as drawn now
    traces = ui.evaluate("() => document.querySelector('#paths-graph .js-plotly-plot').data.length")
    ui.locator("#paths-error").get_by_text("both", exact=True).click()
    ui.wait_for_function("(n) => document.querySelector('#paths-graph .js-plotly-plot').data.length > n",
                         arg=traces, timeout=30_000)
    svg = _download(ui, f"#paths-graph {SVG_BUTTON}", tmp_path, hover="#paths-graph")
    assert svg.name == "toroid-paths-graph.svg"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = "".join(root.itertext())
    assert "geodesic (barrier" in text and "linear aligned" in text
    width = float(root.get("width", "0"))
    assert width > 300

    png = _download(ui, f"#paths-graph {PNG_BUTTON}", tmp_path, hover="#paths-graph")
    assert png.name == "toroid-paths-graph.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ui.errors == []


def _menu_csv(page, label: str, tmp_path: Path) -> list[dict[str, str]]:
    if not page.locator("#export-menu").evaluate("(menu) => menu.open"):
        page.click("#export-menu > summary")
    path = _download(page, f"#export-menu button:has-text('{label}')", tmp_path)
    assert path.suffix == ".csv"
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_export_menu_downloads_the_tables_as_csv(ui, api, stack, pair, tmp_path):
    ids = set(pair.values())
    rows = _menu_csv(ui, "Minima", tmp_path)
    records = {m["id"]: m for m in api.get("/minima").json()}
    assert ids <= {r["id"] for r in rows} <= set(records)
    for row in rows:
        if row["id"] in ids:
            record = records[row["id"]]
            assert row["name"] == record["name"] and row["family"] == record["family"]
            assert float(row["test_error"]) == record["test_error"]

    a = pair["export-a"]
    queued = api.post("/analyses/flatness", json={"minimum_id": a, "sigmas": [0.0, 0.3], "mode": "exact",
                                                  "samples": 2}).json()
    assert wait_job(stack.url, queued["job"]["id"], timeout_s=600)["state"] == "succeeded"
    rows = [r for r in _menu_csv(ui, "Flatness", tmp_path) if r["minimum_id"] == a]
    assert [float(r["sigma"]) for r in rows] == [0.0, 0.3]
    assert float(rows[-1]["local_energy"]) == api.get(f"/minima/{a}").json()["local_energy"]

    # the map computes the distances of its landscape; the menu downloads them (long format, each pair once)
    ui.wait_for_function("""() => { const note = document.querySelector('#map-note');
                                    const method = note?.dataset.method;  // placed by distances, none pending
                                    return method && method !== 'error' && note.dataset.pending === '0'; }""",
                         timeout=600_000)
    rows = _menu_csv(ui, "Distances", tmp_path)
    first = rows[0]["minimum_a"]
    order = [first, *dict.fromkeys(r["minimum_b"] for r in rows if r["minimum_a"] == first)]  # the result's order
    assert ids <= set(order)
    data = api.get("/analyses/distances", params={"minimum_ids": order}).json()["result"]["data"]
    expected = {(data["ids"][i], data["ids"][j], metric): matrix[i][j] for metric, matrix in data["matrices"].items()
                for i in range(len(order)) for j in range(i + 1, len(order))}
    assert {(r["minimum_a"], r["minimum_b"], r["metric"]): float(r["distance"]) for r in rows} == expected
    assert ui.inner_text("#export-message") == "" and ui.errors == []
