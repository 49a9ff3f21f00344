"""A family's distances grow by rows (store/families.py ``known_pairs``): through the real stack, a distances job on
three minima takes the pair an earlier job on two of them computed, in the same order, with exactly its values (the
server's own family jobs, queued as the minima arrive, may hold more of the pairs); a pair in the opposite order
agrees to within the alignment's asymmetry."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, wait_job
from tests.integration.test_api_jobs import upload
from toroid.worker.landscape import build_model, load_dataset

pytestmark = pytest.mark.integration


def distances(url: str, ids: list[str]) -> dict:
    asked = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": ids}, timeout=60)
    assert asked.status_code in (200, 202), asked.text
    job = wait_job(url, asked.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    return httpx.get(f"{url}/api/results/{job['result_id']}", timeout=30).json()["data"]


def test_a_new_minimum_costs_its_row_not_a_new_matrix(api_stack, digits_minima):
    fresh = build_model("mlp", MINIMUM_CONFIG, load_dataset("digits"), seed=7)  # a third network, untrained
    a, b, c = (upload(api_stack.url, model, name) for model, name in
               ((digits_minima[0], "r-a"), (digits_minima[1], "r-b"), (fresh, "r-c")))
    first = distances(api_stack.url, [a, b])
    grown = distances(api_stack.url, [a, b, c])
    assert 1 <= grown["reused_pairs"] <= 3  # (a, b) at least: its value is the earlier one, not a recomputation
    for metric, matrix in first["matrices"].items():
        assert grown["matrices"][metric][0][1] == matrix[0][1]
        assert grown["matrices"][metric][0][2] > 0 and grown["matrices"][metric][1][2] > 0
    again = distances(api_stack.url, [c, b, a])  # every pair known, but in this order only if a family job had it
    assert again["reused_pairs"] <= 3
    assert again["matrices"]["geodesic"][1][2] == pytest.approx(first["matrices"]["geodesic"][0][1], rel=0.05)
