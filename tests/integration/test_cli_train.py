"""`toroid train` writes a checkpoint + sidecar that reload into the declared architecture with the same errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT
from toroid.worker.landscape.data import load_dataset
from toroid.worker.landscape.io import parse_sidecar
from toroid.worker.landscape.nets import build_model


def test_train_writes_checkpoint_and_sidecar(tmp_path):
    out = tmp_path / "m.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "toroid.cli", "train", "--arch", "mlp", "--config", '{"widths": [64]}',
         "--dataset", "digits", "--sampler", "sgd", "--seed", "3", "--epochs", "3", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 3/3" in result.stdout  # the progress bar's last state
    sidecar = parse_sidecar((tmp_path / "m.json").read_bytes())
    assert sidecar["architecture"] == "mlp" and sidecar["dataset"] == "digits"
    assert sidecar["provenance"]["seed"] == 3 and sidecar["provenance"]["sampler"] == "sgd"
    data = load_dataset("digits")
    model = build_model("mlp", sidecar["config"], data)
    model.load_state_dict(load_file(out))
    model.eval()
    with torch.no_grad():
        train_error = (model(data.x_train).argmax(1) != data.y_train).double().mean().item()
    assert abs(train_error - sidecar["provenance"]["train_error"]) < 1e-9
    assert sidecar["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_train_rejects_unknown_sampler(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "toroid.cli", "train", "--sampler", "nope", "--epochs", "1",
         "--out", str(tmp_path / "x.safetensors")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "unknown sampler 'nope'" in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def _listed_samplers() -> list[str]:
    """The samplers `toroid list samplers` prints (one name at the start of each entry's first line)."""
    listed = subprocess.run([sys.executable, "-m", "toroid.cli", "list", "samplers"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line and not line[0].isspace()]


#: Small budgets per sampler: adv's confusion pre-training capped at 2 epochs, the binary sampler on a binary MLP.
CLI_RUNS = {"adv": ["--hp", "confusion_epochs=2"], "binary": ["--arch", "binary_mlp", "--config", '{"widths": [33]}']}


def test_every_listed_sampler_trains_through_the_cli(tmp_path):
    """`toroid train --sampler X` exits 0 for every sampler of `toroid list samplers` (the README's command;
    adv's confusion phase reports no test error, which once crashed the progress line)."""
    samplers = _listed_samplers()
    assert {"sgd", "rsgd", "adv", "sam", "entropy_sgd", "binary"} <= set(samplers)
    for sampler in samplers:
        out = tmp_path / f"{sampler}.safetensors"
        extra = CLI_RUNS.get(sampler, [])
        arch = [] if "--arch" in extra else ["--arch", "mlp", "--config", '{"widths": [16]}']
        result = subprocess.run(
            [sys.executable, "-m", "toroid.cli", "train", *arch, "--dataset", "digits", "--sampler", sampler,
             "--seed", "1", "--epochs", "2", "--out", str(out), *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, (sampler, result.stderr[-2000:])
        assert "epoch 2/2" in result.stdout and "saved" in result.stdout, (sampler, result.stdout[-2000:])
        provenance = parse_sidecar((tmp_path / f"{sampler}.json").read_bytes())["provenance"]
        assert provenance["sampler"] == sampler and provenance["epochs"] == 2
        if sampler == "adv":
            assert provenance["extra"]["confusion_epochs_run"] == 2


def test_target_error_none_runs_the_whole_budget(tmp_path):
    """`--target-error none`: the paper's protocol, every epoch of the budget and its schedule (docs/samplers.md);
    RSGD's coupling reaches its final strength gamma0 x gamma_growth."""
    out = tmp_path / "r.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "toroid.cli", "train", "--sampler", "rsgd", "--epochs", "40", "--target-error", "none",
         "--config", '{"widths": [16]}', "--dataset", "digits", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "after 40 epochs (stopped by the whole budget)" in result.stdout
    provenance = parse_sidecar((tmp_path / "r.json").read_bytes())["provenance"]
    assert provenance["epochs_run"] == 40 and len(provenance["history"]) == 40
    assert provenance["target_error"] is None and provenance["stop_rule"] == "budget"
    assert provenance["hyperparameters"]["replicas"] == 5
    extra = provenance["extra"]
    assert extra["gamma_final"] == pytest.approx(extra["gamma0"] * provenance["hyperparameters"]["gamma_growth"])


def test_target_error_values_are_checked(tmp_path):
    from toroid.cli import parse_target_error

    assert parse_target_error("none") is None and parse_target_error("NULL") is None
    assert parse_target_error("0") == 0.0 and parse_target_error("0.01") == 0.01
    result = subprocess.run(
        [sys.executable, "-m", "toroid.cli", "train", "--epochs", "1", "--target-error", "1.5",
         "--out", str(tmp_path / "x.safetensors")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "--target-error must be a fraction in [0, 1] or 'none'" in result.stderr


def test_the_progress_line_reads_every_phase():
    from toroid.cli import progress_text

    confusion = {"epoch": 0, "epochs": 5, "train_loss": 2.3, "train_error": 0.9, "test_error": None,
                 "phase": "confusion", "confusion_epoch": 3}
    assert progress_text(confusion) == "confusion pre-training epoch 3  loss 2.3000  confusion-set error 90.00%"
    assert progress_text({"epoch": 2, "epochs": 5, "train_loss": 0.5, "train_error": 0.1, "test_error": None}) == (
        "epoch 2/5  loss 0.5000  train 10.00%  test -")
    assert progress_text({}) == "epoch None/None  loss -  train -  test -"
