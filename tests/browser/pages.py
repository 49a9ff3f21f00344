"""What the browser test modules share: a dashboard page that records its console errors, and the evidence a
failing test leaves behind (a screenshot and the text of the elements that matter)."""

from __future__ import annotations

import json
from pathlib import Path


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
