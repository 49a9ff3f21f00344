"""The minima map in a real headless Chromium against its own `toroid up` stack: two minima with identical errors
and distance 0 (a network and a copy with its hidden units permuted, the same function) are drawn apart and each is
separately clickable; the map states its stress-1 and share of variance; the hover of a point gives its true distance
to A beside the planar one; the CSV button downloads the map's coordinates; the distance matrix is one click away.

The module starts a stack of its own, so its minima never join the landscapes of the other browser tests.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest
import torch

from tests.browser.pages import POINT_POSITION, keep_evidence, open_dashboard
from tests.conftest import Stack

pytestmark = pytest.mark.browser

CONFIG = {"widths": [20]}

SELECTED = """() => {
  const gd = document.querySelector('#map-graph .js-plotly-plot');
  const t = gd && gd.data && gd.data.find(t => t.name === 'selected');
  return t ? Array.from(t.text) : [];
}"""


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("map-stack") / "home")
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


def permuted_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same network with its first hidden layer's units in reverse order: the same function (equal errors) and,
    after alignment, geodesic distance 0 (docs/method.md §3, §5)."""
    import copy

    twin = copy.deepcopy(model)
    linears = [m for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    first, second = linears[0], linears[1]
    order = torch.arange(first.out_features - 1, -1, -1)
    with torch.no_grad():
        first.weight.copy_(first.weight[order])
        first.bias.copy_(first.bias[order])
        second.weight.copy_(second.weight[:, order])
    return twin


@pytest.fixture(scope="module")
def minima(own_stack, tmp_path_factory) -> dict[str, str]:
    """name -> id of three uploaded minima: sgd-0, its permuted copy sgd-0-copy, and sgd-1."""
    from toroid.worker.landscape import load_dataset, train_minimum
    from toroid.worker.landscape.io import save_minimum

    torch.set_num_threads(1)
    data = load_dataset("digits")
    directory = tmp_path_factory.mktemp("map-minima")
    first, provenance = train_minimum("mlp", CONFIG, data, sampler="sgd", seed=0, epochs=6)
    second, provenance_1 = train_minimum("mlp", CONFIG, data, sampler="sgd", seed=1, epochs=6)
    ids = {}
    with httpx.Client(base_url=f"{own_stack.url}/api", timeout=60) as api:
        for name, model, prov in (("sgd-0", first, provenance), ("sgd-0-copy", permuted_copy(first), provenance),
                                  ("sgd-1", second, provenance_1)):
            checkpoint, sidecar = save_minimum(model, directory / f"{name}.safetensors", architecture="mlp",
                                               config=CONFIG, dataset="digits", dataset_options=data.options,
                                               provenance=prov, name=name)
            response = api.post("/minima", files={"file": (checkpoint.name, checkpoint.read_bytes()),
                                                  "sidecar": (sidecar.name, sidecar.read_bytes())})
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
    return ids


def click(page, minimum_id: str) -> None:
    page.wait_for_timeout(400)  # two clicks within plotly's doubleClickDelay (300 ms) would be a double click
    position = page.evaluate(POINT_POSITION, minimum_id)
    assert position is not None, f"{minimum_id} is not on the map"
    page.mouse.move(position["x"], position["y"])
    page.wait_for_timeout(150)
    page.mouse.click(position["x"], position["y"])


def test_minima_on_one_spot_are_separately_clickable_and_the_map_says_how_faithful_it_is(
        browser, own_stack, minima, tmp_path):
    context, page = open_dashboard(browser, own_stack.url)
    try:
        page.wait_for_function(
            """(ids) => {
                const note = document.querySelector('#map-note');
                const gd = document.querySelector('#map-graph .js-plotly-plot');
                if (!note || !gd || !gd.data || note.dataset.method !== 'mds' || note.dataset.pending !== '0')
                    return false;
                const shown = gd.data.filter(t => t.customdata && t.name !== 'selected')
                                     .flatMap(t => t.customdata.map(c => c[0]));
                return ids.every(id => shown.includes(id));
            }""", arg=list(minima.values()), timeout=120_000)
        with httpx.Client(base_url=f"{own_stack.url}/api", timeout=30) as api:
            records = {m["name"]: m for m in api.get("/minima").json()}
        # the copy computes the same function: identical errors, and distance 0 on the map's own matrix
        assert records["sgd-0"]["train_error"] == records["sgd-0-copy"]["train_error"]
        assert records["sgd-0"]["test_error"] == records["sgd-0-copy"]["test_error"]
        original, copy = (page.evaluate(POINT_POSITION, minima[n]) for n in ("sgd-0", "sgd-0-copy"))
        apart = ((original["x"] - copy["x"]) ** 2 + (original["y"] - copy["y"]) ** 2) ** 0.5
        assert apart > 14, f"the two minima are drawn {apart:.1f} px apart"

        page.locator(".map-card").screenshot(path=str(tmp_path / "map-card.png"))
        caption = page.evaluate("() => document.querySelector('#map-graph .js-plotly-plot').layout.annotations"
                                ".map(a => a.text).join(' | ')")
        assert "stress-1" in caption and "top-2 variance" in caption and "1 rad of geodesic distance" in caption
        assert "distance ~0 are drawn on a small ring" in caption

        click(page, minima["sgd-0"])
        page.wait_for_function("() => document.querySelector('#paths-title .pair-tag.a')", timeout=30_000)
        page.wait_for_function(f"() => ({SELECTED})().length === 1", timeout=30_000)
        assert page.evaluate(SELECTED) == ["A · sgd-0"]
        click(page, minima["sgd-0-copy"])
        page.wait_for_function("() => document.querySelector('#paths-title .pair-tag.b')", timeout=30_000)
        page.wait_for_function(f"() => ({SELECTED})().length === 2", timeout=30_000)
        assert page.evaluate(SELECTED) == ["A · sgd-0", "B · sgd-0-copy"]
        pair = page.evaluate("() => document.querySelector('#map-graph .js-plotly-plot').layout.annotations"
                             ".map(a => a.text).find(t => t.startsWith('d = '))")
        assert pair.endswith(" rad") and float(pair[4:-4]) < 1e-3  # the pair's true distance: a copy

        # hovering the third minimum: its true distance to A beside the planar one
        other = page.evaluate(POINT_POSITION, minima["sgd-1"])
        page.mouse.move(other["x"], other["y"])
        page.wait_for_selector("#map-graph .hoverlayer .hovertext", timeout=10_000)
        hover = page.evaluate("() => document.querySelector('#map-graph .hoverlayer .hovertext').textContent")
        assert "geodesic distance to A (sgd-0):" in hover and "in the plane:" in hover

        # the map's coordinates as CSV, through the API with this page's credentials
        with page.expect_download(timeout=30_000) as download:
            page.click("#map-csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert sorted(r["name"] for r in rows) == ["sgd-0", "sgd-0-copy", "sgd-1"]
        by_name = {r["name"]: r for r in rows}
        assert abs(float(by_name["sgd-0"]["x"]) - float(by_name["sgd-0-copy"]["x"])) < 1e-6  # the data: one spot

        # the distance matrix, one click away
        page.click("#map-to-distances")
        page.wait_for_function(
            "() => { const gd = document.querySelector('#distances-graph .js-plotly-plot');"
            " return gd && gd.data && gd.data.length && gd.data[0].type === 'heatmap' && gd.data[0].x.length === 3"
            " && document.querySelector('#view-distances').style.display === 'block'; }", timeout=60_000)
        page.screenshot(path=str(tmp_path / "distances.png"))
        assert page.errors == []
    except BaseException:
        keep_evidence(page, tmp_path, ["map-note", "map-status", "map-csv-message", "paths-title"], full_page=True)
        raise
    finally:
        context.close()
