"""Demo content: on first start with an empty database, queue MLP minima on digits for training."""

from __future__ import annotations

import httpx

DEMO_SAMPLERS = ("sgd", "rsgd", "adv")
DEMO_SEEDS = (0, 1)


def request_demo(base_url: str, token: str | None = None) -> int:
    """Ask the API to seed the demo; returns how many training jobs were queued (0 when minima already exist)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{base_url}/api/demo", headers=headers, timeout=30)
    if response.status_code == 404:  # an API without the demo route
        return 0
    response.raise_for_status()
    return int(response.json().get("queued", 0))
