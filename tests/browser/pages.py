"""What the browser test modules share: a dashboard page that records its console errors, and the evidence a
failing test leaves behind (a screenshot and the text of the elements that matter)."""

from __future__ import annotations

import json
import re
from pathlib import Path

#: Page coordinates of the map's point of a minimum id (for a real mouse click), or null when it is not drawn.
POINT_POSITION = """(id) => {
  const gd = document.querySelector('#map-graph .js-plotly-plot');
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  for (const t of gd.data) {
    if (!t.customdata || t.name === 'selected') continue;
    for (let j = 0; j < t.customdata.length; j++) {
      if (t.customdata[j][0] === id) {
        return {x: box.left + L._size.l + L.xaxis.d2p(t.x[j]), y: box.top + L._size.t + L.yaxis.d2p(t.y[j])};
      }
    }
  }
  return null;
}"""


def open_dashboard(browser, url: str, width: int = 1440):
    """(context, page) at ``url``/dashboard/ once the map is drawn; ``page.errors`` collects console errors and
    uncaught exceptions (a failing Dash callback logs one)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{url}/dashboard/")
    page.wait_for_selector("#map-graph .js-plotly-plot", timeout=30_000)
    return context, page


def keep_evidence(page, folder: Path, ids: list[str], *, full_page: bool = False) -> None:
    """A screenshot and the inner text of the elements ``ids`` in ``folder`` (failure.png, failure.json)."""
    page.screenshot(path=str(folder / "failure.png"), full_page=full_page)
    state = page.evaluate("(ids) => Object.fromEntries(ids.map(i => [i, document.getElementById(i)?.innerText]))",
                          ids)
    (folder / "failure.json").write_text(json.dumps({"state": state, "console_errors": page.errors}, indent=2))
    print(f"failure evidence in {folder}: {state}")


def block_other_hosts(context) -> list[str]:
    """Abort every request of ``context`` that leaves this machine (anything but 127.0.0.1 / localhost, as on a
    machine without internet); returns the list the aborted URLs are appended to."""
    from urllib.parse import urlparse

    blocked: list[str] = []

    def route(r) -> None:
        url = r.request.url
        if urlparse(url).scheme in ("data", "blob") or urlparse(url).hostname in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    return blocked


def trained_minimum(directory: Path, seed: int, name: str, config: dict, epochs: int = 8) -> tuple[Path, Path]:
    """A digits MLP minimum trained in this process by the core's SGD sampler, saved with its sidecar."""
    from toroid.worker.landscape import load_dataset, train_minimum
    from toroid.worker.landscape.io import save_minimum

    dataset = load_dataset("digits")
    model, provenance = train_minimum("mlp", config, dataset, sampler="sgd", seed=seed, epochs=epochs)
    return save_minimum(model, directory / f"{name}.safetensors", architecture="mlp", config=config,
                        dataset="digits", dataset_options=dataset.options, provenance=provenance, name=name)


def upload_minimum(api, checkpoint: Path, sidecar: Path) -> str:
    """Upload a checkpoint with its sidecar through ``api`` (an httpx client of /api); the new minimum's id."""
    response = api.post("/minima", files={"file": (checkpoint.name, checkpoint.read_bytes()),
                                          "sidecar": (sidecar.name, sidecar.read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def open_tab(page, label: str) -> None:
    page.locator("#tabs").get_by_text(label, exact=True).click()


def choose_pair(page, a_name: str, b_name: str) -> None:
    """Pick minima A and B by name in the dropdowns under the map (the same as clicking them on the map)."""
    page.click("#pair-reset")
    page.wait_for_function("() => !document.querySelector('#paths-title .pair-tag')", timeout=10_000)
    for dropdown, name, tag in (("#pair-a", a_name, "a"), ("#pair-b", b_name, "b")):
        page.click(dropdown)
        search = page.locator("input.dash-dropdown-search")  # the open dropdown's search field (one at a time)
        search.wait_for(timeout=10_000)
        search.fill(name)  # not typed: keys sent before the field has focus would be lost
        # the option that starts with the name ("sgd-0 (sgd, test 2.5%)"), not one that contains it ("rsgd-0 ...")
        page.get_by_role("option").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\b")).first.click()
        page.wait_for_selector(f"#paths-title .pair-tag.{tag}", timeout=30_000)
