"""`toroid train` writes a checkpoint + sidecar that reload into the declared architecture with the same errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys

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
