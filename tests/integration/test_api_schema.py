"""The API against its own OpenAPI schema (schemathesis: hundreds of generated requests, no 5xx), optional
bearer-token auth, and the demo seeding, on stacks without a worker (jobs stay queued)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from tests.integration.conftest import ApiStack
from toroid.cli import request_demo

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, ApiStack]:
    """Two Redis + API stacks without a worker, booting at the same time: ``public`` (a token guards writes, reads are
    public, the default) and ``private`` (TOROID_PUBLIC_READS=false; demo budget 3 epochs)."""
    envs = {
        "public": {"TOROID_API_TOKEN": TOKEN},
        "private": {"TOROID_API_TOKEN": TOKEN, "TOROID_PUBLIC_READS": "false", "TOROID_DEMO_EPOCHS": "3"},
    }
    started: dict[str, ApiStack] = {}
    try:
        for name, env in envs.items():
            started[name] = ApiStack(tmp_path_factory.mktemp(name) / "home", env, worker=False, wait=False)
        for stack in started.values():
            stack.wait_api()
        yield started
    finally:
        for stack in started.values():
            stack.stop()


@pytest.fixture(scope="module")
def public_reads(stacks) -> ApiStack:
    return stacks["public"]


@pytest.fixture(scope="module")
def private_reads(stacks) -> ApiStack:
    return stacks["private"]


def test_mutating_routes_need_the_token(public_reads):
    url = public_reads.url
    body = {"config": {"widths": [8]}, "epochs": 1}
    missing = httpx.post(f"{url}/api/minima/train", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = httpx.post(f"{url}/api/minima/train", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]
    assert httpx.post(f"{url}/api/demo").status_code == 401
    assert httpx.delete(f"{url}/api/minima/x").status_code == 401
    assert httpx.get(f"{url}/api/minima").status_code == 200  # reads stay public
    assert httpx.get(f"{url}/api/health").status_code in (200, 503)  # public (503: no worker in this stack)
    accepted = httpx.post(f"{url}/api/minima/train", json=body, headers=BEARER)
    assert accepted.status_code == 202 and accepted.json()["state"] == "queued"
    assert public_reads.count("SELECT COUNT(*) FROM jobs") == 1


def test_private_reads_and_the_demo_seeds_once(private_reads):
    url = private_reads.url
    assert httpx.get(f"{url}/api/minima").status_code == 401
    assert httpx.get(f"{url}/api/jobs").status_code == 401
    assert httpx.get(f"{url}/api/health").status_code in (200, 503)  # probes stay public (no worker here: 503)
    assert request_demo(url, token=TOKEN) == 6
    jobs = httpx.get(f"{url}/api/jobs", headers=BEARER).json()
    assert sorted(j["params"]["name"] for j in jobs) == ["adv-0", "adv-1", "rsgd-0", "rsgd-1", "sgd-0", "sgd-1"]
    for job in jobs:
        assert job["kind"] == "train" and job["state"] == "queued"
        assert job["params"]["architecture"] == "mlp" and job["params"]["dataset"] == "digits"
        assert job["params"]["epochs"] == 3 and job["params"]["source"] == "demo"
    assert request_demo(url, token=TOKEN) == 0  # jobs exist: nothing more
    assert private_reads.count("SELECT COUNT(*) FROM jobs") == 6


def test_schemathesis_finds_no_server_error(public_reads, tmp_path):
    """Hundreds of generated requests (valid and invalid) against the live OpenAPI schema: no 5xx, documented
    status codes, responses matching their schemas."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{public_reads.url}/openapi.json",
         "--header", f"Authorization: Bearer {TOKEN}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,negative_data_rejection",
         "--exclude-path", "/api/health",  # 503 without a worker is its answer, not a server error
         "--phases", "coverage,fuzzing", "--max-examples", "8", "--seed", "7", "--no-shrink",
         "--request-timeout", "30", "--workers", "2"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,  # its caches go to the temporary folder
    )
    output = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", output)
    assert generated, output[-3000:]
    assert int(generated.group(1)) >= 200, output[-3000:]
    assert result.returncode == 0, output[-6000:]
    assert public_reads.count("SELECT COUNT(*) FROM minima") == 0  # nothing random was accepted as a checkpoint
