"""Hessian sharpness through the real stack (Redis, a Celery worker, the API; docs/api.md, "Analyses"): a request
on an uploaded digits minimum runs on the worker and matches the core computed here, its CSV downloads, the same
request again is a cache hit, bad requests answer 422 (binary networks too) and anonymous ones 401 when the server
has a token."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack, wait_job
from toroid.worker.landscape import build_model, load_dataset
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.sharpness import hessian_sharpness

pytestmark = pytest.mark.integration

TOKEN = "sharpness-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
REQUEST = {"iterations": 20, "probes": 5, "samples": 512, "seed": 1}


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory, request):
    """Redis, one worker and the API, with an API token (writes need it, reads stay public)."""
    stack = ApiStack(tmp_path_factory.mktemp("sharpness") / "home",
                     {"TOROID_API_TOKEN": TOKEN, "TOROID_MAX_UPLOAD_MB": "1"}, wait=False)
    try:
        request.getfixturevalue("digits_minima")  # trained while the processes boot
        stack.wait_api()
        stack.wait_worker()
        yield stack
    finally:
        stack.stop()


def upload(url: str, model, name: str, architecture: str = "mlp", config: dict = MINIMUM_CONFIG) -> str:
    response = httpx.post(
        f"{url}/api/minima", files={"file": (f"{name}.safetensors", state_dict_bytes(model))}, headers=BEARER,
        data={"architecture": architecture, "config": json.dumps(config), "dataset": "digits", "name": name},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def minimum(api_stack, digits_minima) -> str:
    return upload(api_stack.url, digits_minima[0], "a")


def test_sharpness_runs_on_the_worker_matches_the_core_and_is_cached(api_stack, minimum, digits_minima):
    url = api_stack.url
    body = {"minimum_id": minimum, **REQUEST}
    anonymous = httpx.post(f"{url}/api/analyses/sharpness", json=body)
    assert anonymous.status_code == 401, anonymous.text

    response = httpx.post(f"{url}/api/analyses/sharpness", json=body, headers=BEARER)
    assert response.status_code == 202 and response.json()["cached"] is False, response.text
    job = wait_job(url, response.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["kind"] == "sharpness" and job["params"]["samples"] == 512
    assert job["partial"]["lanczos"]["iteration"][0] == 1 and len(job["partial"]["trace"]["probe"]) == 5
    record = httpx.get(f"{url}/api/results/{job['result_id']}").json()
    data = record["data"]
    assert record["kind"] == "sharpness" and record["minimum_ids"] == [minimum]

    direct = hessian_sharpness(digits_minima[0], load_dataset("digits"), device="cpu", **REQUEST)
    assert data["top_eigenvalue"] == pytest.approx(direct.top_eigenvalue, rel=1e-4)
    assert data["trace"] == pytest.approx(direct.trace, rel=1e-4)
    assert data["samples"] == 512 and data["probes"] == 5 and data["normalized"] is True
    assert data["iterations"] <= 20 and data["top_eigenvalue"] > 0

    table = list(csv.reader(io.StringIO(httpx.get(f"{url}/api/results/{record['id']}.csv").text)))
    assert table[0][:4] == ["top_eigenvalue", "residual", "iterations", "trace"] and len(table) == 2
    assert float(table[1][0]) == pytest.approx(data["top_eigenvalue"])

    jobs_before = len(httpx.get(f"{url}/api/jobs", params={"limit": 1000}).json())
    again = httpx.post(f"{url}/api/analyses/sharpness", json=body, headers=BEARER)
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True and again.json()["result"]["id"] == record["id"]
    assert again.json()["job"]["id"] == job["id"]
    assert len(httpx.get(f"{url}/api/jobs", params={"limit": 1000}).json()) == jobs_before
    # a page load looks up the default request (GET): never computed -> 404, and nothing is queued by asking
    looked = httpx.get(f"{url}/api/analyses/sharpness", params={"minimum_id": minimum}, headers=BEARER)
    assert looked.status_code == 404 and "POST /api/analyses/sharpness" in looked.json()["detail"], looked.text
    unknown = httpx.get(f"{url}/api/analyses/sharpness", params={"minimum_id": "nosuch"}, headers=BEARER)
    assert unknown.status_code == 404
    assert len(httpx.get(f"{url}/api/jobs", params={"limit": 1000}).json()) == jobs_before


def test_bad_requests_are_refused(api_stack, minimum):
    url = api_stack.url

    def post(body: dict) -> httpx.Response:
        return httpx.post(f"{url}/api/analyses/sharpness", json=body, headers=BEARER)

    for bad in ({"iterations": 0}, {"iterations": 1001}, {"probes": -1}, {"samples": 0}, {"samples": "all"},
                {"seed": -1}, {"tolerance": 0.1}):
        response = post({"minimum_id": minimum, **bad})
        assert response.status_code == 422, (bad, response.text)
    assert post({"minimum_id": "nosuch"}).status_code == 404
    assert post({}).status_code == 422

    binary = upload(url, build_model("binary_mlp", {"widths": [15]}, load_dataset("digits"), seed=0), "bin",
                    architecture="binary_mlp", config={"widths": [15]})
    refused = post({"minimum_id": binary})
    assert refused.status_code == 422 and "no Hessian" in refused.text


def test_a_study_with_sharpness_measures_every_minimum_and_reports_it(api_stack):
    """The optional study section (docs/studies.md): one sharpness step per minimum, run by the study's own job, in
    the report's figures and in sharpness.csv."""
    import time
    import zipfile

    url = api_stack.url
    spec = {"name": "sharp", "architecture": "mlp", "config": {"widths": [16]}, "dataset": "digits",
            "samplers": [{"sampler": "sgd", "epochs": 2}], "seeds": [0, 1], "flatness": {"enabled": False},
            "distances": False, "paths": {"kinds": []}, "one_bend": {"enabled": False},
            "sharpness": {"enabled": True, "iterations": 5, "probes": 2, "samples": 256}}
    posted = httpx.post(f"{url}/api/studies", json=spec, headers=BEARER, timeout=30)
    assert posted.status_code == 202, posted.text
    deadline, study = time.monotonic() + 150, posted.json()
    while study["state"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        study = httpx.get(f"{url}/api/studies/{study['id']}", timeout=10).json()
    assert study["state"] == "succeeded", study
    assert study["steps_done"] == study["steps_total"] == 4 and len(study["result_ids"]) == 2
    results = [httpx.get(f"{url}/api/results/{r}").json() for r in study["result_ids"]]
    assert {r["kind"] for r in results} == {"sharpness"} and all(r["data"]["samples"] == 256 for r in results)
    report = httpx.get(f"{url}/api/studies/{study['id']}/report.zip", timeout=60)
    archive = zipfile.ZipFile(io.BytesIO(report.content))
    rows = archive.read("sharpness.csv").decode().splitlines()
    assert rows[0].startswith("variant,minimum,top_eigenvalue") and len(rows) == 3
    page = archive.read("report.html").decode()
    assert "<h2>Sharpness</h2>" in page and "Top Hessian eigenvalue (normalized network) vs test error" in page
