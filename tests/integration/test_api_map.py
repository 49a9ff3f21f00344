"""GET /api/map through the real stack (Redis, a Celery worker, the API; docs/api.md, "Map"): the map of a family
from the distances the worker computed, with stress-1 and the share of variance in two dimensions recomputed here
from the result, the CSV form, the largest computed subset (new minima pending) while the family's own matrix is not
there yet, the fallback by error, and what an attacker gets (unknown family 404, bad metric or format 422,
anonymous or wrong token 401 on a server with private reads)."""

from __future__ import annotations

import csv
import io
import json
import math

import httpx
import numpy as np
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack, wait_job
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration

TOKEN = "map-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory, request):
    """Redis, one worker and the API, reads private (TOROID_PUBLIC_READS=false): every read needs the token."""
    stack = ApiStack(tmp_path_factory.mktemp("map") / "home",
                     {"TOROID_API_TOKEN": TOKEN, "TOROID_PUBLIC_READS": "false"}, wait=False)
    try:
        request.getfixturevalue("minima_models")  # trained while the processes boot
        stack.wait_api()
        stack.wait_worker()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def minima_models(digits_minima):
    """Three minima of one family (widths [32]) and one of another (widths [16])."""
    import torch

    from toroid.worker.landscape import load_dataset, train_minimum

    torch.set_num_threads(1)
    data = load_dataset("digits")
    third = train_minimum("mlp", MINIMUM_CONFIG, data, sampler="sgd", seed=2, epochs=8)[0]
    other = train_minimum("mlp", {"widths": [16]}, data, sampler="sgd", seed=0, epochs=4)[0]
    return [*digits_minima, third], other


def upload(url: str, model, name: str, config: dict = MINIMUM_CONFIG) -> dict:
    response = httpx.post(
        f"{url}/api/minima", files={"file": (f"{name}.safetensors", state_dict_bytes(model))}, headers=BEARER,
        data={"architecture": "mlp", "config": json.dumps(config), "dataset": "digits", "name": name}, timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def distances_done(url: str, ids: list[str]) -> dict:
    """The finished distances result of these minima (the server queued the job itself when they joined)."""
    params = [("minimum_ids", i) for i in sorted(ids)]
    answer = httpx.get(f"{url}/api/analyses/distances", params=params, headers=BEARER, timeout=30)
    assert answer.status_code in (200, 202), answer.text
    job = wait_job(url, answer.json()["job"]["id"], timeout_s=180, headers=BEARER)
    assert job["state"] == "succeeded", job
    return httpx.get(f"{url}/api/results/{job['result_id']}", headers=BEARER).json()


def read_map(url: str, family: str, **params) -> httpx.Response:
    return httpx.get(f"{url}/api/map", params={"family": family, **params}, headers=BEARER, timeout=30)


def planar(body: dict) -> np.ndarray:
    xy = np.column_stack([body["x"], body["y"]])
    return np.linalg.norm(xy[:, None] - xy[None], axis=-1)


def test_the_map_of_a_family_json_csv_and_pending_minima(api_stack, minima_models):
    url = api_stack.url
    (m0, m1, m2), other = minima_models
    a, b = upload(url, m0, "sgd-0"), upload(url, m1, "sgd-1")
    family = a["family"]
    assert b["family"] == family
    for record in (a, b):
        assert wait_job(url, record["evaluation_job_id"], headers=BEARER)["state"] == "succeeded"
    first = distances_done(url, [a["id"], b["id"]])

    # a third minimum joins while no worker runs: its distances are missing, the map keeps the two it has
    api_stack.kill_worker()
    c = upload(url, m2, "sgd-2")
    body = read_map(url, family).json()
    assert body["result_id"] == first["id"] and body["method"] == "classical"
    assert body["ids"] == sorted([a["id"], b["id"]]) and body["pending"] == [c["id"]]
    d = first["data"]["matrices"]["geodesic"][0][1]
    assert planar(body)[0, 1] == pytest.approx(d, rel=1e-9) and body["stress"] == pytest.approx(0.0, abs=1e-9)
    api_stack.start_worker()
    api_stack.wait_worker()

    full = distances_done(url, [a["id"], b["id"], c["id"]])
    response = read_map(url, family)
    assert response.status_code == 200, response.text
    body = response.json()
    ids = sorted([a["id"], b["id"], c["id"]])
    assert body["ids"] == ids and body["pending"] == [] and body["result_id"] == full["id"]
    assert body["family"] == family and body["metric"] == "geodesic" and body["method"] in ("classical", "smacof")
    assert body["names"] == [{a["id"]: "sgd-0", b["id"]: "sgd-1", c["id"]: "sgd-2"}[i] for i in ids]
    order = [full["data"]["ids"].index(i) for i in ids]
    true = np.asarray(full["data"]["matrices"]["geodesic"])[np.ix_(order, order)]
    # stress-1 and the share of variance, recomputed here from their definitions (docs/api.md, "Map")
    stress = math.sqrt(np.sum((true - planar(body)) ** 2) / np.sum(true**2))
    assert body["stress"] == pytest.approx(stress, abs=1e-9)
    assert body["stress"] <= body["classical_stress"] + 1e-12
    n = len(ids)
    centering = np.eye(n) - 1.0 / n
    eigenvalues = np.sort(np.linalg.eigvalsh(-0.5 * centering @ true**2 @ centering))[::-1]
    positive = eigenvalues[eigenvalues > 1e-9]
    assert body["variance_2d"] == pytest.approx(positive[:2].sum() / positive.sum())
    assert body["variance_2d"] == pytest.approx(1.0)  # three points always lie on a plane
    assert body["stress"] < 1e-6

    euclidean = read_map(url, family, metric="euclidean").json()
    assert euclidean["metric"] == "raw"
    raw = np.asarray(full["data"]["matrices"]["raw"])[np.ix_(order, order)]
    np.testing.assert_allclose(planar(euclidean), raw, rtol=1e-6, atol=1e-12)

    table = read_map(url, family, format="csv")
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert "attachment" in table.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert list(rows[0]) == ["id", "name", "sampler", "x", "y", "train_error", "test_error"]
    minima = {m["id"]: m for m in httpx.get(f"{url}/api/minima", headers=BEARER).json()}
    assert [r["id"] for r in rows] == ids
    for row, x, y in zip(rows, body["x"], body["y"], strict=True):
        assert float(row["x"]) == pytest.approx(x) and float(row["y"]) == pytest.approx(y)
        assert row["sampler"] == "" and float(row["train_error"]) == pytest.approx(minima[row["id"]]["train_error"])

    # a family of one: no distances, the map falls back to train vs test error in percent; a name a spreadsheet
    # would run as a formula stays text in the CSV
    alone = upload(url, other, "=HYPERLINK(\"http://x\")", {"widths": [16]})
    wait_job(url, alone["evaluation_job_id"], headers=BEARER)
    single = read_map(url, alone["family"]).json()
    record = httpx.get(f"{url}/api/minima/{alone['id']}", headers=BEARER).json()
    assert single["method"] == "error" and single["stress"] is None and single["result_id"] is None
    assert single["x"] == [pytest.approx(100 * record["train_error"])]
    assert single["y"] == [pytest.approx(100 * record["test_error"])]
    row = next(csv.DictReader(io.StringIO(read_map(url, alone["family"], format="csv").text)))
    assert row["name"] == "'=HYPERLINK(\"http://x\")" and float(row["x"]) == pytest.approx(single["x"][0])


def test_what_an_attacker_gets(api_stack):
    url = api_stack.url
    unknown = read_map(url, "0123456789abcdef01234567")
    assert unknown.status_code == 404
    assert "family" in unknown.json()["detail"] and "GET /api/minima" in unknown.json()["detail"]
    injected = read_map(url, "' OR 1=1 --")
    assert injected.status_code == 404
    assert read_map(url, "x" * 65).status_code == 422
    assert read_map(url, "").status_code == 422
    bad_metric = read_map(url, "0123456789abcdef01234567", metric="cosine")
    assert bad_metric.status_code == 422 and "metric" in bad_metric.text
    assert read_map(url, "0123456789abcdef01234567", format="xml").status_code == 422
    anonymous = httpx.get(f"{url}/api/map", params={"family": "0123456789abcdef01234567"})
    assert anonymous.status_code == 401 and "TOROID_PUBLIC_READS" in anonymous.json()["detail"]
    wrong = httpx.get(f"{url}/api/map", params={"family": "x", "format": "csv"},
                      headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
