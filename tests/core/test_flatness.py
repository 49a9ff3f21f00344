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
    precision_reached,
    sample_until,
    se_target,
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
    fast = local_energy(trained, digits, sigmas=sigmas, samples=40, mode="fast", subsample=700, device="cpu", seed=1)
    assert fast.mode == "fast" and fast.subsample == 700
    assert fast.mean[0] == 0.0
    for i in range(1, len(sigmas)):
        # stopped early once the standard error reached the tolerance, after min_samples draws
        assert 8 <= fast.samples[i] <= 40
        assert fast.stderr[i] < 0.005 or fast.samples[i] == 40
        assert abs(fast.mean[i] - exact.mean[i]) <= 4 * math.hypot(fast.stderr[i], exact.stderr[i]) + 0.003
    assert sum(fast.samples) < sum(exact.samples)
    assert fast.base_train_error == exact.base_train_error  # reported on the full training set
    assert fast.capped == [False] + [fast.stderr[i] >= 0.005 for i in (1, 2)]
    assert exact.capped == [False, False, False]


def test_sequential_rule_by_hand():
    """The stopping rule alone (docs/method.md §6): values alternating mean +- a have a standard error of
    a / sqrt(n - 1); with mean 0.01 the target is max(0.0005, 0.1 x 0.01) = 0.001, missed after the first batch
    of 16 (0.005 / sqrt(15) = 0.00129) and met after the second (0.005 / sqrt(31) = 0.00090)."""
    assert se_target(0.01, 0.0005, 0.1) == pytest.approx(0.001)
    assert se_target(-0.001, 0.0005, 0.1) == 0.0005  # the absolute floor; |mean| for a negative mean
    stream = [0.01 + (0.005 if k % 2 == 0 else -0.005) for k in range(10_000)]
    asked: list[int] = []

    def draw(count: int) -> list[float]:
        asked.append(count)
        start = sum(asked) - count
        return stream[start:start + count]

    got = sample_until(draw, tolerance=0.0005, rel_tolerance=0.1, min_samples=16, max_samples=1000, batch=16)
    assert len(got.values) == 32 and not got.capped and asked == [16, 16]
    assert not precision_reached(stream[:16], 0.0005, 0.1, 16) and precision_reached(stream[:32], 0.0005, 0.1, 16)
    # identical values: a standard error of 0 meets any target as soon as min_samples are in
    assert sample_until(lambda k: [0.002] * k, tolerance=0.0005, min_samples=20, batch=16) == ((20 * [0.002]), False)
    # a target never met: the cap stops it, the last batch cut to the cap, and the result says so
    asked.clear()
    noisy = sample_until(draw, tolerance=1e-9, rel_tolerance=0.0, min_samples=16, max_samples=40, batch=16)
    assert len(noisy.values) == 40 and noisy.capped and asked == [16, 16, 8]
    assert not precision_reached([0.1], 1.0)  # a standard error needs two values


def test_default_sequential_mode_meets_its_target_or_says_capped(trained, digits):
    res = local_energy(trained, digits, device="cpu")
    assert res.mode == "sequential" and res.subsample is None and res.sigmas == DEFAULT_SIGMAS["mlp"]
    assert res.samples[0] == 0 and res.capped[0] is False and res.stderr[0] == 0.0
    assert len(res.capped) == len(res.sigmas) == len(res.extra["se_target"])
    for i in range(1, len(res.sigmas)):
        target = max(0.0005, 0.1 * abs(res.mean[i]))
        assert res.extra["se_target"][i] == pytest.approx(target)
        assert 16 <= res.samples[i] <= 1000
        assert res.stderr[i] <= target or (res.capped[i] and res.samples[i] == 1000), (i, res.to_dict())
        assert res.stderr[i] == pytest.approx(res.std[i] / math.sqrt(res.samples[i]))
    assert res.mean[-1] > 10 * res.stderr[-1]  # the largest sigma's value is resolved
    assert LocalEnergy.from_dict(res.to_dict()) == res
    assert local_energy(trained, digits, device="cpu") == res  # seeded: the same draws, the same stops
    strict = local_energy(trained, digits, sigmas=[0.0, 0.5], device="cpu", tolerance=1e-9, rel_tolerance=0.0,
                          max_samples=20)
    assert strict.samples == [0, 20] and strict.capped == [False, True] and strict.stderr[1] > 1e-9


def test_seeded_and_stacked_evaluation_sees_the_same_noise(trained, digits):
    kwargs = {"sigmas": [0.0, 0.4], "samples": 12, "mode": "exact", "device": "cpu"}
    one = local_energy(trained, digits, **kwargs)
    assert local_energy(trained, digits, **kwargs) == one
    stacked = local_energy(trained, digits, stack=4, **kwargs)
    assert stacked.mean == pytest.approx(one.mean, abs=1e-12)
    other = local_energy(trained, digits, seed=5, **kwargs)
    assert other.mean[1] != one.mean[1]
    # sequential mode checks its rule after whole batches only: stacking changes neither the draws nor the stops
    seq = {"sigmas": [0.0, 0.4], "device": "cpu", "max_samples": 48}
    single, stacked = local_energy(trained, digits, **seq), local_energy(trained, digits, stack=5, **seq)
    assert stacked.samples == single.samples and stacked.mean == pytest.approx(single.mean, abs=1e-12)


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
    with pytest.raises(ValueError, match="max_samples"):
        local_energy(trained, digits, max_samples=8)
