"""The device of a worker process (worker/landscape/device.py) and the GPU lists of `toroid worker --gpus`
(docs/operations.md, "One worker per GPU")."""

from __future__ import annotations

import pytest
import torch

from toroid.backend.supervisor import parse_gpus
from toroid.worker.landscape.device import assigned_gpus, default_device, visible_gpus


def test_a_worker_reports_its_gpu_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", " 3 ")
    assert assigned_gpus() == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert assigned_gpus() is None


def test_visible_gpus_are_what_torch_sees(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides every GPU
    if not torch.cuda.is_available():
        assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert gpus == [str(i) for i in range(count)]


def test_auto_device_is_the_first_visible_gpu_or_the_cpu(monkeypatch):
    monkeypatch.delenv("TOROID_DEVICE", raising=False)
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert default_device() == expected
    if torch.cuda.is_available():
        monkeypatch.setenv("TOROID_DEVICE", f"cuda:{torch.cuda.device_count()}")
        with pytest.raises(ValueError, match="indices count the visible GPUs"):
            default_device()


def test_parse_gpus():
    assert parse_gpus("all", visible=lambda: ["2", "3"]) == ["2", "3"]
    assert parse_gpus(" 0, 1 ") == ["0", "1"]
    uuid = "GPU-5f3c2a1e-0000-1111-2222-333344445555"
    assert parse_gpus(f"01,{uuid}") == ["1", uuid]
    with pytest.raises(ValueError, match="no GPU is visible to torch here"):
        parse_gpus("ALL", visible=lambda: [])
    for bad, reason in [("x,", "malformed: 'x', ''"), ("", "malformed: ''"), ("-1", "'-1'"), ("0;1", "'0;1'"),
                        ("1,1", "GPU 1 named twice"), ("0,00", "GPU 0 named twice")]:
        with pytest.raises(ValueError, match="--gpus") as info:
            parse_gpus(bad)
        assert reason in str(info.value), (bad, str(info.value))
