"""`toroid upload`, `toroid analyze` and `toroid minima` as a user runs them: the CLI in a subprocess against a real
stack (Redis, a Celery worker, uvicorn); their answers are checked against the core computed in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import MINIMUM_CONFIG, ApiStack, wait_job
from toroid.backend.supervisor import free_port
from toroid.worker.landscape import load_dataset, path_profile
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.io import save_minimum, state_dict_bytes

pytestmark = pytest.mark.integration

TOKEN = "cli-client-secret-token"


def toroid(*args: str, server: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The CLI as a subprocess; TOROID_SERVER names the stack, and no token leaks in from this environment."""
    environ = {k: v for k, v in os.environ.items() if k not in ("TOROID_TOKEN", "TOROID_API_TOKEN", "TOROID_SERVER")}
    environ.update(env, OMP_NUM_THREADS="1", COLUMNS="200")
    if server:
        environ["TOROID_SERVER"] = server
    return subprocess.run([sys.executable, "-m", "toroid.cli", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)


def write_minimum(model, folder: Path, name: str) -> Path:
    """A checkpoint and its sidecar, as `toroid train` writes them."""
    checkpoint, _sidecar = save_minimum(model, folder / f"{name}.safetensors", architecture="mlp",
                                        config=MINIMUM_CONFIG, dataset="digits",
                                        provenance={"sampler": "sgd", "seed": 0, "epochs": 8}, name=name)
    return checkpoint


@pytest.fixture(scope="module")
def pair(api_stack, digits_minima) -> list[str]:
    """The two digits minima uploaded over HTTP directly, evaluated."""
    ids = []
    for i, model in enumerate(digits_minima):
        response = httpx.post(f"{api_stack.url}/api/minima", files={"file": ("m.safetensors", state_dict_bytes(model))},
                              data={"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits",
                                    "name": f"pair-{i}"}, timeout=60)
        assert response.status_code == 201, response.text
        assert wait_job(api_stack.url, response.json()["evaluation_job_id"])["state"] == "succeeded"
        ids.append(response.json()["id"])
    return ids


def test_upload_with_its_sidecar_waits_for_the_evaluated_errors(api_stack, digits_minima, tmp_path):
    model = digits_minima[0]
    checkpoint = write_minimum(model, tmp_path, "cli-sgd-0")
    done = toroid("upload", str(checkpoint), "--json", server=api_stack.url)
    assert done.returncode == 0, done.stderr
    assert "using the sidecar" in done.stderr and "cli-sgd-0.json" in done.stderr
    record = json.loads(done.stdout)
    expected = Evaluator(model, load_dataset("digits")).evaluate_state(model, "both")
    assert (record["name"], record["evaluation"], record["source"]) == ("cli-sgd-0", "done", "upload")
    assert (record["sampler"], record["seed"], record["config"]) == ("sgd", 0, MINIMUM_CONFIG)
    assert record["train_error"] == pytest.approx(expected["train_error"], abs=1e-12)
    assert record["test_error"] == pytest.approx(expected["test_error"], abs=1e-12)

    # human output, and the list of minima
    plain = toroid("upload", str(checkpoint), "--name", "again", server=api_stack.url)
    assert plain.returncode == 0, plain.stderr
    assert f"again: train error {100 * expected['train_error']:.2f}%" in plain.stdout
    listed = toroid("minima", "--json", server=api_stack.url)
    assert listed.returncode == 0, listed.stderr
    assert record["id"] in {m["id"] for m in json.loads(listed.stdout)}
    table = toroid("minima", server=api_stack.url)
    assert table.returncode == 0 and f"{record['id']}  cli-sgd-0" in table.stdout


def test_upload_without_waiting_and_from_form_fields(api_stack, digits_minima, tmp_path):
    checkpoint = tmp_path / "bare.safetensors"
    checkpoint.write_bytes(state_dict_bytes(digits_minima[1]))
    queued = toroid("upload", str(checkpoint), "--architecture", "mlp", "--config", json.dumps(MINIMUM_CONFIG),
                    "--dataset", "digits", "--key-map", "auto", "--no-wait", "--json", server=api_stack.url)
    assert queued.returncode == 0, queued.stderr
    record = json.loads(queued.stdout)
    assert (record["name"], record["evaluation"], record["train_error"]) == ("bare", "pending", None)
    assert wait_job(api_stack.url, record["evaluation_job_id"])["state"] == "succeeded"
    bad_map = toroid("upload", str(checkpoint), "--architecture", "mlp", "--dataset", "digits", "--key-map", "{0: 1",
                     server=api_stack.url)
    assert bad_map.returncode == 2 and "--key-map must be 'auto' or a JSON object" in bad_map.stderr


def test_a_training_script_pushes_an_exported_program(api_stack, digits_minima, tmp_path):
    """docs/models.md, recipe 1: `toroid upload m.pt2 --dataset digits` is all a program needs."""
    import torch

    from toroid.worker.landscape.pt2 import save_pt2_bytes

    program = torch.export.export(digits_minima[0].eval(), (torch.randn(4, 1, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "mynet.pt2"
    path.write_bytes(save_pt2_bytes(program))
    pushed = toroid("upload", str(path), "--dataset", "digits", "--json", server=api_stack.url)
    assert pushed.returncode == 0, pushed.stderr
    record = json.loads(pushed.stdout)
    assert (record["name"], record["architecture"], record["evaluation"]) == ("mynet", "export", "done")
    assert record["symmetries"]["groups"] and record["train_error"] is not None


def test_a_refused_upload_exits_2_with_the_servers_advice(api_stack, digits_minima, tmp_path):
    checkpoint = tmp_path / "m.safetensors"
    checkpoint.write_bytes(state_dict_bytes(digits_minima[0]))
    refused = toroid("upload", str(checkpoint), "--architecture", "mlp", "--config", '{"widths": [16]}',
                     "--dataset", "digits", server=api_stack.url)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "422" in refused.stderr and "expected shape (16, 64), got shape (32, 64)" in refused.stderr
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(checkpoint.read_bytes()[:100])
    bad = toroid("upload", str(truncated), "--architecture", "mlp", "--dataset", "digits", server=api_stack.url)
    assert bad.returncode == 2 and "safetensors" in bad.stderr
    unknown = toroid("analyze", "path", "nosuch", "nosuch2", server=api_stack.url)
    assert unknown.returncode == 2 and "404" in unknown.stderr
    misused = toroid("analyze", "flatness", "a", "b", server=api_stack.url)
    assert misused.returncode == 2 and "flatness takes 1 minimum id" in misused.stderr


def test_analyze_path_matches_the_core_and_is_cached(api_stack, digits_minima, pair, tmp_path):
    out = tmp_path / "path.json"
    done = toroid("analyze", "path", *pair, "--kind", "geodesic", "--points", "5", "--json", "--out", str(out),
                  server=api_stack.url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result
    direct = path_profile(*digits_minima, load_dataset("digits"), kind="geodesic", points=5)
    assert result["kind"] == "path" and result["minimum_ids"] == pair
    assert result["data"]["points"] == 5 and result["data"]["kind"] == "geodesic"
    assert result["data"]["barrier"] == pytest.approx(direct.barrier, abs=1e-6)
    assert result["data"]["test_barrier"] == pytest.approx(direct.test_barrier, abs=1e-6)

    again = toroid("analyze", "path", *pair, "--kind", "geodesic", "--points", "5", server=api_stack.url)
    assert again.returncode == 0, again.stderr
    assert f"path result {result['id']} (cached)" in again.stdout
    assert f"barrier {100 * direct.barrier:.2f}% (train), test barrier {100 * direct.test_barrier:.2f}%" in again.stdout


def test_analyze_flatness_with_params(api_stack, pair):
    done = toroid("analyze", "flatness", pair[0], "--param", "samples=2", "--param", "sigmas=[0.0, 0.5]",
                  "--param", "mode=exact", server=api_stack.url)
    assert done.returncode == 0, done.stderr
    assert "local energy" in done.stdout and "at the largest sigma 0.5" in done.stdout
    record = httpx.get(f"{api_stack.url}/api/minima/{pair[0]}", timeout=10).json()
    assert f"local energy {record['local_energy']:.6g}" in done.stdout
    wrong = toroid("analyze", "flatness", pair[0], "--param", "samples=0", server=api_stack.url)
    assert wrong.returncode == 2 and "samples" in wrong.stderr


def test_an_unreachable_server_exits_3_with_advice(tmp_path):
    server = f"http://127.0.0.1:{free_port()}"
    checkpoint = tmp_path / "m.safetensors"
    checkpoint.write_bytes(b"x")
    for args in (("upload", str(checkpoint), "--architecture", "mlp"), ("analyze", "path", "a", "b"), ("minima",)):
        result = toroid(*args, server=server)
        assert result.returncode == 3, (args, result.stderr)
        assert f"cannot reach the Toroid server at {server}" in result.stderr
        assert "start it with `toroid up` or pass --server" in result.stderr


def test_a_token_protected_server(tmp_path, digits_minima):
    """401 without a token (exit 2, the server's words); the token from --token or TOROID_TOKEN works and is
    never printed."""
    stack = ApiStack(tmp_path / "home", {"TOROID_API_TOKEN": TOKEN}, worker=False)
    try:
        checkpoint = write_minimum(digits_minima[0], tmp_path, "guarded")
        refused = toroid("upload", str(checkpoint), "--no-wait", server=stack.url)
        assert refused.returncode == 2, refused.stderr
        assert "401" in refused.stderr and "needs an API token" in refused.stderr
        wrong = toroid("upload", str(checkpoint), "--no-wait", "--token", "nope", server=stack.url)
        assert wrong.returncode == 2 and "the API token is wrong" in wrong.stderr
        accepted = toroid("upload", str(checkpoint), "--no-wait", "--json", "--token", TOKEN, server=stack.url)
        assert accepted.returncode == 0, accepted.stderr
        assert json.loads(accepted.stdout)["name"] == "guarded"
        from_env = toroid("upload", str(checkpoint), "--no-wait", server=stack.url, TOROID_TOKEN=TOKEN)
        assert from_env.returncode == 0, from_env.stderr
        assert "evaluation pending" in from_env.stdout
        for result in (refused, wrong, accepted, from_env):
            assert TOKEN not in result.stdout + result.stderr
    finally:
        stack.stop()
