"""docker-compose.yml is valid (checked offline with Debian's docker-compose v1, as CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from toroid.backend.supervisor import parse_gpus


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
    # the interactive queue has a worker of its own, and no other worker takes it (docs/operations.md, Queues)
    queues = {name: s["command"][s["command"].index("--queues") + 1].split(",")
              for name, s in spec["services"].items() if "worker" in (s.get("command") or [])}
    assert [name for name, q in queues.items() if "interactive" in q] == ["worker-interactive"], queues
    assert queues["worker-interactive"] == ["interactive"]
    # and the batch workers' containers weigh less on a shared CPU (what the batch niceness does in `toroid up`)
    weights = {name: spec["services"][name].get("cpu_shares", 1024) for name in queues}
    assert weights == {"worker": 256, "worker-cpu": 256, "worker-interactive": 1024}, weights
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.14.1" in dockerfile


def test_compose_runs_one_worker_process_per_gpu():
    """Compose cannot count GPUs: the `worker` service reserves all of them and `toroid worker --gpus all` starts
    one process per GPU inside (docs/operations.md, "One worker per GPU"); TOROID_GPUS narrows it; the interactive
    worker stays a plain one; the image can be built with a CUDA torch (TORCH_INDEX)."""
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = spec["services"]["worker"]
    command = worker["command"]
    assert command[:2] == ["toroid", "worker"] and command[command.index("--gpus") + 1] == "${TOROID_GPUS:-all}"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert worker["init"] is True and worker["stop_grace_period"] == "30s"
    interactive = spec["services"]["worker-interactive"]
    assert "--gpus" not in interactive["command"] and "deploy" not in interactive
    assert spec["services"]["api"]["build"]["args"]["TORCH_INDEX"].startswith("${TORCH_INDEX:-")
    if shutil.which("docker-compose") is None:
        return
    resolved = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True,
                              text=True, env={"PATH": os.environ.get("PATH", ""), "TOROID_GPUS": "0,1"})
    assert resolved.returncode == 0, resolved.stderr
    command = yaml.safe_load(resolved.stdout)["services"]["worker"]["command"]
    assert command[command.index("--gpus") + 1] == "0,1"  # the value `toroid worker` parses (parse_gpus)
    assert parse_gpus("0,1") == ["0", "1"]


def test_the_image_reads_the_papers_datasets_and_never_downloads_by_default():
    """The image installs the pinned vision extra (torchvision and timm for library models, docs/models.md), and
    the shared stack leaves downloads off unless its operator turns them on (docs/data.md)."""
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    install = next(line for line in dockerfile.splitlines() if 'pip install' in line and '".[' in line)
    assert "vision" in install.split('".[', 1)[1].split("]", 1)[0].split(",")
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vision"]
    assert any(p.startswith("torchvision==") for p in pins)
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in ("api", "worker", "worker-interactive", "worker-cpu"):
        env = spec["services"][service]["environment"]
        assert env["TOROID_ALLOW_DOWNLOADS"] == "${TOROID_ALLOW_DOWNLOADS:-false}", service
