"""Local energy (docs/method.md §6): zero at sigma 0, growing with sigma, fast mode ~ exact mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.core.conftest import quick_sgd
from toroid.worker.landscape.flatness import (
    DEFAULT_SIGMAS,
    _flipped,
    architecture_family,
    binary_weight_keys,
    default_sigmas,
    local_energy,
    noise_keys,
    stratified_indices,
)
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.results import LocalEnergy

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def trained(digits):
    """A 64-64-64-10 MLP trained to ~0 train error with a few epochs of plain SGD."""
    return quick_sgd(digits, 0, config={"widths": [64, 64]}, epochs=10)


def test_local_energy_is_zero_at_sigma_zero_and_grows(trained, digits):
    res = local_energy(trained, digits, sigmas=[0.0, 0.1, 0.3, 0.5], samples=24, mode="exact", device="cpu")
    assert res.mean[0] == 0.0 and res.std[0] == 0.0 and res.stderr[0] == 0.0 and res.samples[0] == 0
    assert res.samples[1:] == [24, 24, 24]
    assert res.base_train_error < 0.02
    # grows with sigma, with margin at the largest sigma
    for lo, hi, se_lo, se_hi in zip(res.mean, res.mean[1:], res.stderr, res.stderr[1:], strict=False):
        assert hi >= lo - 2 * (se_lo + se_hi)
    assert res.mean[-1] > res.mean[1] + 3 * (res.stderr[-1] + res.stderr[1])
    assert res.mean[-1] > 0.01
    assert all(s >= 0 for s in res.std)
    assert res.stderr[-1] == pytest.approx(res.std[-1] / math.sqrt(24))
    assert LocalEnergy.from_dict(res.to_dict()) == res


def test_fast_mode_agrees_with_exact_mode(trained, digits):
    sigmas = [0.0, 0.2, 0.5]
    exact = local_energy(trained, digits, sigmas=sigmas, samples=40, mode="exact", device="cpu")
    fast = local_energy(trained, digits, sigmas=sigmas, samples=40, subsample=700, device="cpu", seed=1)
    assert fast.mode == "fast" and fast.subsample == 700
    assert fast.mean[0] == 0.0
    for i in range(1, len(sigmas)):
        # stopped early once the standard error reached the tolerance, after min_samples draws
        assert 8 <= fast.samples[i] <= 40
        assert fast.stderr[i] < 0.005 or fast.samples[i] == 40
        assert abs(fast.mean[i] - exact.mean[i]) <= 4 * math.hypot(fast.stderr[i], exact.stderr[i]) + 0.003
    assert sum(fast.samples) < sum(exact.samples)
    assert fast.base_train_error == exact.base_train_error  # reported on the full training set


def test_seeded_and_stacked_evaluation_sees_the_same_noise(trained, digits):
    kwargs = {"sigmas": [0.0, 0.4], "samples": 12, "mode": "exact", "device": "cpu"}
    one = local_energy(trained, digits, **kwargs)
    assert local_energy(trained, digits, **kwargs) == one
    stacked = local_energy(trained, digits, stack=4, **kwargs)
    assert stacked.mean == pytest.approx(one.mean, abs=1e-12)
    other = local_energy(trained, digits, seed=5, **kwargs)
    assert other.mean[1] != one.mean[1]


def test_noise_on_weights_only_and_progress(trained, digits):
    keys = noise_keys(trained, "weights")
    assert keys == ["fc1.weight", "fc2.weight", "out.weight"]
    assert set(noise_keys(trained, "all")) == {n for n, _ in trained.named_parameters()}
    seen = []
    res = local_energy(
        trained, digits, sigmas=[0.0, 0.3], samples=10, noise_on="weights", mode="exact", device="cpu",
        progress=lambda f, info: seen.append((f, info["sigma"], info["samples"])),
    )
    assert res.noise_on == "weights"
    assert seen == [(0.5, 0.0, 0), (1.0, 0.3, 10)]

    def stop(fraction: float, info: dict) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        local_energy(trained, digits, sigmas=[0.1, 0.2], samples=4, mode="exact", device="cpu", progress=stop)


def test_default_sigmas_per_family(digits):
    mlp = build_model("mlp", {"widths": [8]}, digits, seed=0)
    lenet = build_model("lenet", {"channels": [4, 4], "hidden": [8]}, digits, seed=0)
    vgg = build_model("vgg", {"depth": 11, "width_scale": 0.05}, digits, seed=0)
    binary = build_model("binary_mlp", {"widths": [8]}, digits, seed=0)
    assert [architecture_family(m) for m in (mlp, lenet, vgg, binary)] == ["mlp", "lenet", "vgg", "binary"]
    for family, top in (("mlp", 0.5), ("lenet", 0.25), ("vgg", 0.05)):
        sig = DEFAULT_SIGMAS[family]
        assert len(sig) == 8 and sig[0] == 0.0 and sig[-1] == pytest.approx(top)
    assert default_sigmas(lenet) == DEFAULT_SIGMAS["lenet"]


def test_stratified_subsample_keeps_class_proportions(digits):
    idx = stratified_indices(digits.y_train, 500, seed=3)
    assert len(idx) == 500 and len(set(idx.tolist())) == 500
    counts = np.bincount(digits.y_train[idx].numpy(), minlength=10)
    expected = 500 * np.bincount(digits.y_train.numpy(), minlength=10) / len(digits.y_train)
    assert np.all(np.abs(counts - expected) < 1.0)
    assert torch.equal(idx, stratified_indices(digits.y_train, 500, seed=3))
    assert not torch.equal(idx, stratified_indices(digits.y_train, 500, seed=4))
    assert torch.equal(stratified_indices(digits.y_train, 10**6), torch.arange(len(digits.y_train)))


def test_binary_local_energy_flips_a_fraction_of_weights(digits):
    model = build_model("binary_mlp", {"widths": [32]}, digits, seed=0)
    keys = binary_weight_keys(model)
    assert keys == ["fc1.weight", "out.weight"]
    state = model.state_dict()
    total = sum(state[k].numel() for k in keys)
    gen = torch.Generator().manual_seed(0)
    flipped = _flipped(state, keys, 0.1, gen)
    changed = sum(int(((flipped[k] >= 0) != (state[k] >= 0)).sum()) for k in keys)
    assert changed == round(0.1 * total)
    res = local_energy(model, digits, sigmas=[0.0, 0.05, 0.2], mode="exact", device="cpu")
    assert res.binary and res.noise_on == "binary_weights"
    assert res.samples == [0, 10, 10] and res.mean[0] == 0.0


def test_bad_arguments_raise_clear_errors(trained, digits):
    with pytest.raises(ValueError, match="mode"):
        local_energy(trained, digits, mode="slow")
    with pytest.raises(ValueError, match="noise_on"):
        local_energy(trained, digits, noise_on="biases")
    with pytest.raises(ValueError, match="sigmas"):
        local_energy(trained, digits, sigmas=[-0.1])
    with pytest.raises(ValueError, match="tolerance"):
        local_energy(trained, digits, tolerance=0)
