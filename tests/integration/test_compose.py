"""docker-compose.yml is valid (checked offline with Debian's docker-compose v1, as CI installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT


def test_compose_file_validates():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose missing: `apt-get install -y --no-install-recommends docker-compose` (CI does)")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services_and_a_gpu_reservation():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"redis", "postgres", "api", "worker", "worker-cpu", "flower"} <= set(spec["services"])
    devices = spec["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert spec["services"]["worker-cpu"]["profiles"] == ["cpu"]
    assert "torch==2.14.1" in (ROOT / "Dockerfile").read_text()
