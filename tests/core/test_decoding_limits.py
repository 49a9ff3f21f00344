"""Bounded decoding in the core: checkpoint archives are checked from their directory before anything is
decompressed (zip bombs, declared totals), tensors that are views into larger storages are refused, the Hidden
Manifold Model's size options are capped, and the dataset cache is bounded in bytes (least recently used out)."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from toroid.worker.landscape.data import (
    HMM_CAPS,
    cache_limit_bytes,
    cached_bytes,
    clear_cache,
    dataset_info,
    dataset_nbytes,
    dataset_sizes,
    load_dataset,
    set_cache_limit_mb,
)
from toroid.worker.landscape.io import (
    MAX_COMPRESSION_RATIO,
    check_storages,
    inspect_archive,
    parse_checkpoint,
    safetensors_sizes,
)
from toroid.worker.landscape.nets import build_model


def small_state() -> dict[str, torch.Tensor]:
    return build_model("mlp", {"widths": [16]}, ((1, 8, 8), 10), seed=0).state_dict()


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def with_deflated_zeros(archive: bytes, name: str, size: int) -> bytes:
    """The archive re-zipped with deflate, plus an entry of ``size`` zero bytes (compresses about 1000:1)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        prefix = zin.infolist()[0].filename.split("/")[0]
        with zout.open(f"{prefix}/{name}", "w", force_zip64=True) as dst:
            chunk = bytes(1 << 20)
            for _ in range(size // len(chunk)):
                dst.write(chunk)
    return out.getvalue()


# ============================================================================================= archives
def test_a_deflated_run_of_zeros_is_refused_from_the_directory_alone():
    bomb = with_deflated_zeros(torch_bytes(small_state()), "data/99", 64 * 2**20)
    assert len(bomb) < 2**20  # 64 MiB declared in well under 1 MiB
    with pytest.raises(ValueError, match=f"more than {MAX_COMPRESSION_RATIO}:1.*zip bomb"):
        inspect_archive(bomb)
    with pytest.raises(ValueError, match="zip bomb"):
        parse_checkpoint(bomb)


def test_the_declared_total_is_bounded_before_loading():
    state = small_state()
    data = torch_bytes(state)
    total = inspect_archive(data)
    assert total >= sum(t.numel() * t.element_size() for t in state.values())
    assert set(parse_checkpoint(data, max_bytes=total)) == set(state)
    with pytest.raises(ValueError, match="at most 1,000 bytes is allowed for the declared architecture"):
        parse_checkpoint(data, max_bytes=1000)
    with pytest.raises(ValueError, match="safetensors file holds 4 entries, more than the 2 allowed"):
        parse_checkpoint(save_safetensors({k: v.contiguous() for k, v in state.items()}), max_entries=2)
    # a mildly compressible re-zipped checkpoint is fine: only absurd ratios are refused
    rezipped = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    loaded = parse_checkpoint(rezipped.getvalue())
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_safetensors_headers_are_checked_against_the_limit():
    state = {k: v.contiguous() for k, v in small_state().items()}
    data = save_safetensors(state)
    sizes = safetensors_sizes(data)
    assert sizes == {k: v.numel() * v.element_size() for k, v in state.items()}
    assert set(parse_checkpoint(data, max_bytes=sum(sizes.values()))) == set(state)
    with pytest.raises(ValueError, match="safetensors file holds"):
        parse_checkpoint(data, max_bytes=sum(sizes.values()) - 1)
    assert safetensors_sizes(torch_bytes(state)) is None


def test_views_into_larger_storages_are_refused_before_any_copy():
    state = small_state()
    key = "fc1.weight"
    larger = torch.zeros(state[key].numel() * 3 // 2)
    larger[: state[key].numel()] = state[key].reshape(-1)
    viewed = {**state, key: larger[: state[key].numel()].view(state[key].shape)}
    with pytest.raises(ValueError, match=rf"'{key}' \(4,096 bytes of values\) is a view into a storage of 6,144"):
        parse_checkpoint(torch_bytes(viewed))
    with pytest.raises(ValueError, match="is a view into a storage"):
        check_storages(viewed)
    # a tensor shared by two keys (tied weights) and a transposed full tensor are whole storages: accepted
    tied = {**state, "tied": state[key], "transposed": state[key].t()}
    check_storages(tied)
    assert set(parse_checkpoint(torch_bytes(tied))) == set(tied)


# ============================================================================================= datasets
def test_hmm_size_options_are_capped_with_the_cap_in_the_message():
    for key, cap in HMM_CAPS.items():
        with pytest.raises(ValueError, match=f"option {key}={cap + 1} is above its cap of {cap:,}"):
            dataset_info("hmm", **{key: cap + 1})
    with pytest.raises(ValueError, match=r"max\(N, D\) and N x D = 32,032,000 is above the cap of 20,000,000"):
        dataset_sizes("hmm", P_train=30_000)
    with pytest.raises(ValueError, match=r"\(P_train \+ P_test\) x N x D = .* above the cap of 20,000,000,000"):
        dataset_info("hmm", N=2000, D=2000, P_train=4000, P_test=2000)
    start = time.monotonic()
    with pytest.raises(ValueError, match="P_train=300000 is above its cap"):  # the finding: 6 s of API time
        load_dataset("hmm", P_train=300_000)
    assert time.monotonic() - start < 0.5
    with pytest.raises(ValueError, match="must be an integer"):
        dataset_info("hmm", D=1e7)
    assert dataset_info("hmm") == ((1001,), 2) and dataset_sizes("hmm") == (1503, 2000)


def test_dataset_sizes_match_the_loaded_data(tmp_path):
    digits = load_dataset("digits")
    assert dataset_sizes("digits") == (len(digits.y_train), len(digits.y_test))
    options = {"D": 5, "N": 7, "P_train": 30, "P_test": 20}
    assert dataset_sizes("hmm", **options) == (30, 20)
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(12, 3)), y_train=np.arange(12) % 2, x_test=rng.normal(size=(5, 3)),
             y_test=np.arange(5) % 2)
    assert dataset_sizes("npz", path=str(path)) == (12, 5)
    assert dataset_sizes("mnist", train_size=100) == (100, 10_000)
    assert dataset_sizes("cifar10") == (50_000, 10_000)


def test_the_dataset_cache_is_bounded_in_bytes_least_recently_used_out():
    clear_cache()
    try:
        sets = [dict(D=3, N=100, P_train=1000, P_test=1000, seed=s) for s in range(4)]  # 808,000 bytes each
        one = dataset_nbytes(load_dataset("hmm", **sets[0]))
        set_cache_limit_mb(2.5 * one / 2**20)  # room for two of them
        assert cache_limit_bytes() == int(2.5 * one)
        first = load_dataset("hmm", **sets[0])
        assert load_dataset("hmm", **sets[0]) is first
        second = load_dataset("hmm", **sets[1])
        assert load_dataset("hmm", **sets[0]) is first  # used again: now the most recent
        load_dataset("hmm", **sets[2])  # evicts the least recently used: sets[1]
        assert cached_bytes() == 2 * one <= cache_limit_bytes()
        assert load_dataset("hmm", **sets[0]) is first
        assert load_dataset("hmm", **sets[1]) is not second
        set_cache_limit_mb(0.5 * one / 2**20)  # shrinking evicts; a dataset above the bound is not kept
        assert cached_bytes() == 0
        big = load_dataset("hmm", **sets[3])
        assert load_dataset("hmm", **sets[3]) is not big and cached_bytes() == 0
    finally:
        set_cache_limit_mb(None)
        clear_cache()


def test_the_cache_bound_comes_from_the_environment_unless_set(monkeypatch):
    set_cache_limit_mb(None)  # the platform sets it from its settings (resolve_dataset, the Celery app)
    monkeypatch.setenv("TOROID_DATASET_CACHE_MB", "3")
    assert cache_limit_bytes() == 3 * 2**20
    monkeypatch.delenv("TOROID_DATASET_CACHE_MB")
    assert cache_limit_bytes() == 1024 * 2**20
    try:
        set_cache_limit_mb(5)
        assert cache_limit_bytes() == 5 * 2**20
    finally:
        set_cache_limit_mb(None)
