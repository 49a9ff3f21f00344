"""The table exports through the real stack (Redis, a Celery worker, the API; docs/api.md, "Exports"): the minima
table, flatness vs test error and a distances lookup as CSV hold what the JSON records hold, one row per minimum, per
minimum and sigma, per pair and metric; text cells that a spreadsheet would run as formulas start with a quote."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, wait_job
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration

NAMES = ["=1+2", "sgd-1"]
SIGMAS = [0.0, 0.2, 0.4]


def read_csv(response: httpx.Response, filename: str) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture(scope="module")
def minima(api_stack, digits_minima) -> list[str]:
    """The two digits minima uploaded (evaluated by the worker), the first with a formula for a name."""
    ids = []
    for model, name in zip(digits_minima, NAMES, strict=True):
        response = httpx.post(
            f"{api_stack.url}/api/minima", files={"file": ("m.safetensors", state_dict_bytes(model))}, timeout=60,
            data={"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits", "name": name})
        assert response.status_code == 201, response.text
        assert wait_job(api_stack.url, response.json()["evaluation_job_id"])["state"] == "succeeded"
        ids.append(response.json()["id"])
    return ids


def test_minima_table_matches_the_records(api_stack, minima):
    url = f"{api_stack.url}/api/minima"
    rows = read_csv(httpx.get(url, params={"format": "csv"}), "toroid-minima.csv")
    records = httpx.get(url).json()
    assert httpx.get(url, params={"format": "json"}).json() == records
    assert list(rows[0]) == ["id", "name", "architecture", "dataset", "sampler", "seed", "train_error", "test_error",
                             "local_energy", "family", "created_at"]
    assert [r["id"] for r in rows] == [r["id"] for r in records]  # newest first, as the JSON
    for row, record in zip(rows, records, strict=True):
        name = record["name"]
        assert row["name"] == ("'" + name if name.startswith("=") else name)
        assert float(row["test_error"]) == record["test_error"] and float(row["train_error"]) == record["train_error"]
        assert row["family"] == record["family"] and row["created_at"] == record["created_at"]
        assert (row["dataset"], row["architecture"]) == ("digits", "mlp")


def test_flatness_table_lists_each_sigma_beside_the_test_error(api_stack, minima):
    url = api_stack.url
    asked = httpx.post(f"{url}/api/analyses/flatness",
                       json={"minimum_id": minima[0], "sigmas": SIGMAS, "mode": "exact", "samples": 3}).json()
    job = wait_job(url, asked["job"]["id"])
    assert job["state"] == "succeeded", job
    records = httpx.get(f"{url}/api/analyses/flatness").json()
    assert [r["minimum_id"] for r in records] == [minima[0]]  # only minima with a flatness result
    record = records[0]
    minimum = httpx.get(f"{url}/api/minima/{minima[0]}").json()
    assert record["result_id"] == job["result_id"] == minimum["flatness_result_id"]
    assert record["local_energy"] == minimum["local_energy"] == record["mean"][-1]
    result = httpx.get(f"{url}/api/results/{job['result_id']}").json()["data"]
    assert record["sigmas"] == result["sigmas"] and record["mean"] == result["mean"]

    rows = read_csv(httpx.get(f"{url}/api/analyses/flatness", params={"format": "csv"}), "toroid-flatness.csv")
    assert [float(r["sigma"]) for r in rows] == SIGMAS
    assert [float(r["local_energy"]) for r in rows] == result["mean"]
    assert [int(r["samples"]) for r in rows] == result["samples"]
    assert all(r["name"] == "'=1+2" and float(r["test_error"]) == minimum["test_error"] for r in rows)


def test_distances_table_has_each_pair_and_metric_once(api_stack, minima):
    url = api_stack.url
    asked = httpx.post(f"{url}/api/analyses/distances", json={"minimum_ids": minima}).json()
    assert wait_job(url, asked["job"]["id"])["state"] == "succeeded"
    query = [("minimum_ids", i) for i in minima]
    data = httpx.get(f"{url}/api/analyses/distances", params=query).json()["result"]["data"]
    rows = read_csv(httpx.get(f"{url}/api/analyses/distances", params=[*query, ("format", "csv")]),
                    "toroid-distances.csv")
    assert list(rows[0]) == ["minimum_a", "name_a", "minimum_b", "name_b", "metric", "distance"]
    assert sorted(r["metric"] for r in rows) == sorted(data["matrices"])  # two minima: one pair
    for row in rows:
        assert (row["minimum_a"], row["minimum_b"]) == tuple(data["ids"])
        assert (row["name_a"], row["name_b"]) == ("'=1+2", "sgd-1")
        assert float(row["distance"]) == data["matrices"][row["metric"]][0][1]
    result_id = httpx.get(f"{url}/api/analyses/distances", params=query).json()["result"]["id"]
    result = read_csv(httpx.get(f"{url}/api/results/{result_id}.csv"), f"distances-{result_id}.csv")
    assert [(r["name_a"], r["name_b"]) for r in result] == [("'=1+2", "sgd-1")]  # the result's CSV guards it too
