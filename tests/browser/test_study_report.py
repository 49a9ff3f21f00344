"""The exported study report opens in headless Chromium, offline, with every figure rendered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.test_study import TINY

#: Figures of the TINY study: local energy, energy vs test error, 3 path kinds + one-bend, barrier heights,
#: 5 distance matrices, bend distances.
TINY_FIGURES = 2 + 4 + 1 + 5 + 1


def test_exported_report_renders_every_figure_offline(tmp_path, page):
    import json

    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({**TINY, "name": "browser"}))
    out = tmp_path / "report"
    env = dict(os.environ, TOROID_HOME=str(tmp_path / "home"), TOROID_DEVICE="cpu", OMP_NUM_THREADS="1")
    env.pop("TOROID_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "from toroid.cli_study import study_app; study_app()", "run", str(spec),
         "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "study succeeded" in done.stdout
    report = out / "report.html"
    assert {p.name for p in out.iterdir()} >= {"report.html", "minima.csv", "paths.csv", "summary.csv"}

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(Path(report).as_uri())
    page.wait_for_function(
        f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {TINY_FIGURES}", timeout=60_000)
    assert page.locator(".plotly-graph-div").count() == TINY_FIGURES
    rendered = page.evaluate(
        "[...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('.main-svg')"
        " && d.querySelectorAll('.trace, .hm, .heatmaplayer image').length > 0).length")
    assert rendered == TINY_FIGURES
    assert not errors, errors
    assert all(url.startswith("file://") for url in requests), requests  # nothing from the network
    assert page.locator("td .pass, td .fail").count() >= 1  # the summary table's checks
