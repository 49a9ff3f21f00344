"""Demo content: on first start with an empty database, queue MLP minima on digits for training.

The route is POST /api/demo (backend/api/demo.py): 6 training jobs, samplers ``DEMO_SAMPLERS`` x seeds
``DEMO_SEEDS``, MLP (default widths) on digits, ``settings.demo_epochs`` epochs each, named like ``sgd-0``.
"""

from __future__ import annotations

import httpx

DEMO_SAMPLERS = ("sgd", "rsgd", "adv")
DEMO_SEEDS = (0, 1)


def request_demo(base_url: str, token: str | None = None) -> int:
    """Ask the API to seed the demo; returns how many training jobs were queued (0 when minima already exist)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{base_url}/api/demo", headers=headers, timeout=30)
    response.raise_for_status()
    return int(response.json().get("queued", 0))
