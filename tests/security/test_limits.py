"""Limits of decoding and of work, on the checks themselves and through a real API (Redis + uvicorn, no worker: the
accepted jobs stay queued):

* a 0.5 MB ``.pt`` whose tensors are views into a 512 MiB zero storage (deflated ~1000:1) is refused with 422 and the
  API's peak memory does not grow; a view into a storage 1.5x the tensor is refused too;
* weights above 1e6 in magnitude, and weights whose normalized form overflows float32, are refused (they made every
  distances job of their family fail with "matrix contains invalid numeric entries");
* ``hmm`` size options above their caps are refused (422) for uploads and training, without generating anything;
* the cost model refuses the oversized torus / section / flatness / training requests of the finding with a 422
  naming the estimate and TOROID_MAX_JOB_COST, while the requests of the paper's CPU presets are accepted.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.integration.conftest import ApiStack
from tests.security.stacks import api_only
from toroid.store.errors import Invalid
from toroid.store.loading import CheckpointError, check_state_dict, read_checkpoint, template_state
from toroid.store.params import TrainRequest, resolve_dataset, resolve_train
from toroid.worker.landscape import align, geodesic_distance, normalize
from toroid.worker.landscape.io import state_dict_bytes
from toroid.worker.landscape.nets import build_model

pytestmark = pytest.mark.integration

SMALL, PRESET, WIDE = {"widths": [32]}, {"widths": [512, 512]}, {"widths": [1024, 1024]}
DIGITS = ((1, 8, 8), 10)


def network(config: dict, seed: int = 0) -> torch.nn.Module:
    """An untrained digits MLP: a valid checkpoint of its architecture."""
    return build_model("mlp", config, DIGITS, seed=seed)


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def storage_bomb(state: dict[str, torch.Tensor], folder: Path, nbytes: int) -> bytes:
    """``torch.save`` of the state's tensors as views into one zero storage of ``nbytes`` (backed by a sparse file,
    so this process does not allocate it), re-zipped with deflate: a few hundred KB that declare ``nbytes``."""
    backing = folder / "zeros.bin"
    with open(backing, "wb") as fh:
        fh.truncate(nbytes)
    flat = torch.from_file(str(backing), shared=True, size=nbytes // 4, dtype=torch.float32)
    views, offset = {}, 0
    for key, value in state.items():
        flat[offset:offset + value.numel()] = value.reshape(-1).float()
        views[key] = flat[offset:offset + value.numel()].view(value.shape)
        offset += value.numel()
    raw, bomb = folder / "raw.pt", folder / "bomb.pt"
    torch.save(views, raw)
    del views, flat
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            with zin.open(info) as src, zout.open(info.filename, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    raw.unlink()
    backing.unlink()
    return bomb.read_bytes()


def view_checkpoint(state: dict[str, torch.Tensor], factor: float = 1.5) -> bytes:
    """A ``.pt`` whose first tensor is a view into a storage ``factor`` times its size (within the size cap)."""
    key = next(iter(state))
    storage = torch.randn(int(state[key].numel() * factor))
    storage[: state[key].numel()] = state[key].reshape(-1)
    return torch_bytes({**state, key: storage[: state[key].numel()].view(state[key].shape)})


def scaled(state: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    return {k: v * factor if v.is_floating_point() else v for k, v in state.items()}


def compounding(config: dict, magnitude: float = 9e5, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weight matrices scaled to ``magnitude`` (below the bound): normalization multiplies their unit norms along the
    layers, which leaves float32 after a few layers."""
    state = network(config, seed).state_dict()
    return {k: v / v.abs().max() * magnitude if v.dim() >= 2 else v for k, v in state.items()}


# ============================================================================================= the checks
def test_read_checkpoint_bounds_what_a_file_may_declare_by_the_architecture(tmp_path):
    template, _ = template_state("mlp", SMALL, *DIGITS)
    state = network(SMALL).state_dict()
    bomb = storage_bomb(state, tmp_path, 64 * 2**20)
    assert len(bomb) < 2**20
    for case in (template, None):
        with pytest.raises(CheckpointError, match="refused as a zip bomb"):
            read_checkpoint(bomb, case)
    with pytest.raises(CheckpointError, match="is a view into a storage"):
        read_checkpoint(view_checkpoint(state), template)
    # the checkpoint of a much larger network declared as this one: refused from the archive's directory
    wide = torch_bytes(network(WIDE).state_dict())
    with pytest.raises(CheckpointError, match=r"holds 4\.\d MiB of data but at most 1\.0 MiB is allowed"):
        read_checkpoint(wide, template)
    # legitimate forms: float32 / float64 .pt, safetensors, a training checkpoint with Adam's moments
    model = network(SMALL)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    optimizer.step()
    for data in (torch_bytes(state), torch_bytes({k: v.double() for k, v in state.items()}), state_dict_bytes(state),
                 torch_bytes({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1})):
        assert set(check_state_dict(read_checkpoint(data, template), template, "mlp")) == set(state)


def test_weights_that_break_the_normalized_form_are_refused():
    template, _ = template_state("mlp", SMALL, *DIGITS)
    state = network(SMALL).state_dict()
    with pytest.raises(CheckpointError, match=r"key 'fc1.weight' holds a value of magnitude .*e\+3\d, above the "
                                              r"limit of 1e\+06: .* float32"):
        check_state_dict(scaled(state, 1e38), template, "mlp")
    deep = {"widths": [64] * 8}
    deep_template, _ = template_state("mlp", deep, *DIGITS)
    bad = compounding(deep)
    with pytest.raises(CheckpointError, match=r"normalized form of deep mlp is not finite at key .*float32"):
        check_state_dict(bad, deep_template, "deep mlp")
    # what the check prevents: the distances of such weights are undefined (the finding's error)
    a, b = normalize(network(deep)), normalize(network(deep, 1))
    a.load_state_dict(normalize(_loaded(deep, bad)).state_dict())
    with pytest.raises(ValueError, match="matrix contains invalid numeric entries"):
        geodesic_distance(a, align(a, b))
    # large but sound weights pass, in every family of architectures
    assert check_state_dict(scaled(state, 1e3), template, "mlp")
    for arch, config, shape in (("vgg", {"depth": 11, "width_scale": 1 / 16}, (3, 8, 8)),
                                ("resnet", {"width": 4, "blocks": [2, 1]}, (3, 8, 8)),
                                ("binary_mlp", {"widths": [15]}, (1, 8, 8)), ("committee", {"hidden": 7}, (21,))):
        layout, _ = template_state(arch, config, shape, 10 if arch != "committee" else 2)
        built = build_model(arch, config, (shape, 10 if arch != "committee" else 2), seed=0)
        assert check_state_dict(built.state_dict(), layout, arch)


def _loaded(config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = network(config)
    model.load_state_dict(state)
    return model


def test_hmm_caps_are_invalid_before_anything_is_generated():
    start = time.monotonic()
    with pytest.raises(Invalid, match="option P_train=300000 is above its cap of 100,000"):
        resolve_dataset("hmm", {"P_train": 300_000})
    with pytest.raises(Invalid, match="option D=10000000 is above its cap of 10,000"):
        resolve_train(TrainRequest(dataset="hmm", dataset_options={"D": 10**7, "P_train": 10**9}, epochs=1))
    assert time.monotonic() - start < 1.0


# ============================================================================================= through the API
@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    yield from api_only(tmp_path_factory, "limits", {"TOROID_MAX_UPLOAD_MB": "16"})


def upload(url: str, payload: bytes, config: dict, filename: str = "m.pt", **fields) -> httpx.Response:
    form = {"architecture": "mlp", "config": json.dumps(config), "dataset": "digits", **fields}
    return httpx.post(f"{url}/api/minima", files={"file": (filename, payload)}, data=form, timeout=120)


def refused(response: httpx.Response, status: int, *phrases: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail, detail
    return detail


def stored(stack: ApiStack) -> tuple[int, int, set[str]]:
    return (stack.count("SELECT COUNT(*) FROM minima"), stack.count("SELECT COUNT(*) FROM jobs"), stack.artifacts())


def peak_rss_mb(stack: ApiStack) -> float:
    """The API process's peak resident memory (VmHWM) in MiB."""
    api = next(child for child in stack.supervisor.children if child.name == "api")
    status = Path(f"/proc/{api.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_a_storage_bomb_is_422_and_the_api_memory_stays_flat(stack, tmp_path):
    state = network(SMALL).state_dict()
    assert upload(stack.url, torch_bytes(state), SMALL).status_code == 201  # warm: dataset, model, evaluation
    before, peak = stored(stack), peak_rss_mb(stack)
    bomb = storage_bomb(state, tmp_path, 512 * 2**20)
    assert len(bomb) < 2**20
    refused(upload(stack.url, bomb, SMALL), 422, "expands from", "512.0 MiB", "zip bomb")
    refused(upload(stack.url, view_checkpoint(state), SMALL), 422, "'fc1.weight'", "is a view into a storage")
    assert peak_rss_mb(stack) - peak < 64, "the API decompressed the bomb"
    assert stored(stack) == before


def test_huge_or_compounding_weights_are_422(stack):
    before = stored(stack)
    refused(upload(stack.url, state_dict_bytes(scaled(network(SMALL).state_dict(), 1e38)), SMALL, "m.safetensors"),
            422, "above the limit of 1e+06")
    deep = {"widths": [64] * 8}
    refused(upload(stack.url, state_dict_bytes(compounding(deep)), deep, "m.safetensors"), 422,
            "normalized form of architecture 'mlp'", "not finite")
    assert stored(stack) == before


def test_hmm_options_above_their_caps_are_422_for_uploads_and_training(stack):
    before = stored(stack)
    start = time.monotonic()
    options = json.dumps({"P_train": 300_000})
    refused(upload(stack.url, b"never read", {"widths": [8]}, dataset="hmm", dataset_options=options), 422,
            "P_train=300000 is above its cap of 100,000")
    train = {"dataset": "hmm", "dataset_options": {"D": 10_000_000, "P_train": 1_000_000_000}, "epochs": 1}
    refused(httpx.post(f"{stack.url}/api/minima/train", json=train, timeout=30), 422, "above its cap of 10,000")
    big = {"dataset": "hmm", "dataset_options": {"N": 5000, "D": 5000, "P_train": 5000}, "epochs": 1}
    refused(httpx.post(f"{stack.url}/api/minima/train", json=big, timeout=30), 422, "above the cap of 20,000,000")
    assert time.monotonic() - start < 10
    assert stored(stack) == before


@pytest.fixture(scope="module")
def minima(stack) -> dict[str, list[str]]:
    """Ids of uploaded untrained minima: six of the digits-mlp preset's MLP, three wide ones."""
    ids: dict[str, list[str]] = {"preset": [], "wide": []}
    for family, config, count in (("preset", PRESET, 6), ("wide", WIDE, 3)):
        for seed in range(count):
            response = upload(stack.url, state_dict_bytes(network(config, seed)), config, "m.safetensors",
                              name=f"{family}-{seed}")
            assert response.status_code == 201, response.text
            ids[family].append(response.json()["id"])
    return ids


def post(stack: ApiStack, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/{path}", json=body, timeout=60)


def test_oversized_requests_are_422_with_the_estimate_and_the_limit(stack, minima):
    wide, preset = minima["wide"], minima["preset"]
    jobs = stack.count("SELECT COUNT(*) FROM jobs")
    oversized = [
        ("analyses/torus", {"minimum_ids": wide[:2], "resolution": 129}, "torus", "resolution 129^2"),
        ("analyses/section", {"minimum_ids": wide, "resolution": 101}, "section", "resolution 101^2"),
        ("analyses/flatness", {"minimum_id": preset[0], "sigmas": np.linspace(0, 0.5, 64).tolist(),
                               "samples": 10_000, "mode": "exact"}, "flatness", "64 sigmas x 10,000 samples"),
        ("minima/train", {"config": {"widths": [19000, 19000]}, "epochs": 10_000}, "train", "10,000 epochs"),
    ]
    for path, body, kind, words in oversized:
        detail = refused(post(stack, path, body), 422, f"this {kind} job is estimated at", words,
                         "above this server's limit of 1.00e+13 (TOROID_MAX_JOB_COST)", "raise TOROID_MAX_JOB_COST")
        assert "sample-parameter operations" in detail
    assert stack.count("SELECT COUNT(*) FROM jobs") == jobs


def test_the_cpu_presets_requests_are_accepted(stack, minima):
    """The largest request of each kind in the digits-mlp and hmm-committee presets (store/study_spec.py PRESETS)."""
    a, b = minima["preset"][:2]
    accepted = [
        ("minima/train", {"sampler": "rsgd", "epochs": 200, "seed": 0}),
        ("minima/train", {"sampler": "adv", "epochs": 200, "seed": 0}),
        ("analyses/flatness", {"minimum_id": a, "samples": 100, "mode": "exact"}),
        ("analyses/path", {"a": a, "b": b, "kind": "geodesic", "points": 17}),
        ("analyses/path", {"a": a, "b": b, "kind": "one_bend", "bend_kind": "geodesic", "points": 17,
                           "epochs": 100}),
        ("analyses/distances", {"minimum_ids": minima["preset"]}),
        ("minima/train", {"architecture": "committee", "config": {"hidden": 101}, "dataset": "hmm",
                          "dataset_options": {"D": 51, "N": 201, "P_train": 600, "P_test": 1000, "seed": 0},
                          "sampler": "binary", "hyperparameters": {"variant": "adv"}, "epochs": 20}),
    ]
    for path, body in accepted:
        response = post(stack, path, body)
        assert response.status_code == 202, (path, response.text)
