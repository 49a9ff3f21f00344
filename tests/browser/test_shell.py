"""The dashboard loads in a real headless Chromium, served by the real stack."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_dashboard_page_loads(stack, page, tmp_path):
    page.goto(f"{stack.url}/dashboard/")
    page.wait_for_selector("h1:has-text('Toroid')", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#health') && document.querySelector('#health').innerText.includes('workers: ok')",
        timeout=30_000,
    )
    page.screenshot(path=str(tmp_path / "shell.png"))
    assert (tmp_path / "shell.png").stat().st_size > 1000
