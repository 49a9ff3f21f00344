"""One-bend paths (docs/method.md §7): construction of the bend, the two segments, the barrier, and
the acceptance check that the bend removes the geodesic barrier between two SGD minima on digits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from toroid.worker.landscape.bend import midpoint, one_bend
from toroid.worker.landscape.distances import euclidean_distances, geodesic_angles, geodesic_distance
from toroid.worker.landscape.paths import path_profile
from toroid.worker.landscape.results import BendResult
from toroid.worker.landscape.samplers import train_minimum
from toroid.worker.landscape.symmetry import align, normalize, sphere_blocks

TINY = {"widths": [32]}




@pytest.fixture(scope="module")
def tiny_pair(digits):
    a, _ = train_minimum("mlp", TINY, digits, "sgd", {"lr": 0.05}, seed=0, epochs=8, target_error=None)
    b, _ = train_minimum("mlp", TINY, digits, "sgd", {"lr": 0.05}, seed=1, epochs=8, target_error=None)
    return a, b


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_midpoint_is_the_mean_of_every_floating_entry():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p))
        b[1].running_mean.add_(1.0)
    mid = midpoint(a, b)
    for key, value in mid.state_dict().items():
        va, vb = a.state_dict()[key], b.state_dict()[key]
        if value.is_floating_point():
            assert torch.allclose(value, (va + vb) / 2)
        else:
            assert torch.equal(value, va)


@pytest.mark.parametrize("kind", ["linear", "linear_aligned", "geodesic"])
def test_one_bend_structure_for_every_kind(digits, tiny_pair, kind):
    a, b = tiny_pair
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    result = one_bend(a, b, digits, kind, points=5, epochs=3, seed=0)
    assert _states_equal(a, a0) and _states_equal(b, b0)  # inputs untouched
    assert isinstance(result, BendResult) and result.kind == kind
    json.dumps(result.to_dict())
    assert BendResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    first, second = result.profiles
    assert len(first.x) == len(second.x) == 5
    assert first.kind == second.kind == kind
    assert result.barrier == max(first.barrier, second.barrier)
    # the segments meet at the bend, whose error is the reported one
    assert first.train_error[-1] == pytest.approx(result.bend_train_error)
    assert second.train_error[0] == pytest.approx(result.bend_train_error)
    assert 1 <= result.epochs <= 3
    assert result.extra["retrain_hyperparameters"]["lr"] == 0.02
    assert result.extra["retrain_hyperparameters"]["momentum"] == 0.9
    # the segments start and end at A and B (A's and B's own errors)
    direct = path_profile(a, b, digits, kind, points=2)
    assert first.train_error[0] == pytest.approx(direct.train_error[0])
    assert second.train_error[-1] == pytest.approx(direct.train_error[-1])
    assert result.distance_to_a > 0 and result.distance_to_b > 0
    if kind == "geodesic":
        assert result.distance_to_a == pytest.approx(first.length)
        assert result.distance_to_b == pytest.approx(second.length)
    else:
        frame_b = b if kind == "linear" else align(a, b)
        d_ab = euclidean_distances(a, frame_b, variants=["raw"])["raw"]
        # the bend was retrained from the midpoint for 3 epochs: it stays near the middle
        assert result.distance_to_a < d_ab and result.distance_to_b < d_ab


def test_geodesic_bend_starts_from_the_normalized_mean_and_stays_normalized(digits, tiny_pair):
    a, b = tiny_pair
    na = normalize(a)
    nb = align(na, normalize(b))
    start = normalize(midpoint(na, nb))
    # one epoch at lr 0: the bend is the starting point itself
    result = one_bend(a, b, digits, "geodesic", points=3, epochs=1, hparams={"lr": 0.0})
    d_start_a, d_start_b = geodesic_distance(na, start), geodesic_distance(start, nb)
    assert result.distance_to_a == pytest.approx(d_start_a, rel=1e-5, abs=1e-6)
    assert result.distance_to_b == pytest.approx(d_start_b, rel=1e-5, abs=1e-6)
    # first layer: each unit of the normalized mean is halfway along its great circle from A to B
    first = sphere_blocks(start)[0].param
    phi_a, phi_b = geodesic_angles(na, start)[first], geodesic_angles(start, nb)[first]
    assert phi_a == pytest.approx(phi_b, abs=1e-4)
    assert phi_a + phi_b == pytest.approx(geodesic_angles(na, nb)[first], abs=1e-4)
    for block in sphere_blocks(start):
        w = start.state_dict()[block.param].reshape(start.state_dict()[block.param].shape[0], -1)
        norms = w.norm(dim=1) if block.per_unit else w.norm().reshape(1)
        assert torch.allclose(norms.double(), torch.full_like(norms.double(), block.radius), atol=1e-4)


def test_progress_goes_through_retraining_then_both_segments(digits, tiny_pair):
    a, b = tiny_pair
    calls = []
    one_bend(
        a,
        b,
        digits,
        "linear_aligned",
        points=3,
        epochs=2,
        target_error=None,
        progress=lambda f, info: calls.append((f, info)),
    )
    stages = [info["stage"] for _, info in calls]
    assert stages == ["retrain"] * 2 + ["segment"] * 6
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {"epoch", "epochs", "train_loss", "train_error", "test_error"} <= set(calls[0][1])
    assert [info["segment"] for _, info in calls[2:]] == [0, 0, 0, 1, 1, 1]


def test_one_bend_is_deterministic(digits, tiny_pair):
    a, b = tiny_pair
    r1 = one_bend(a, b, digits, "linear_aligned", points=3, epochs=2, seed=4, target_error=None)
    r2 = one_bend(a, b, digits, "linear_aligned", points=3, epochs=2, seed=4, target_error=None)
    assert r1.to_dict() == r2.to_dict()


def test_bad_arguments_are_rejected(digits, tiny_pair):
    a, b = tiny_pair
    with pytest.raises(ValueError, match="kind must be one of"):
        one_bend(a, b, digits, "spline")
    with pytest.raises(ValueError, match="binary networks"):
        one_bend(a, b, digits, "flip")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        one_bend(a, b, digits, "geodesic", epochs=0)
    with pytest.raises(ValueError, match="no hyperparameter"):
        one_bend(a, b, digits, "geodesic", hparams={"rho": 0.1})


def test_binary_networks_bend_along_flip_paths(digits):
    cfg = {"widths": [64]}
    a, _ = train_minimum("binary_mlp", cfg, digits, "binary", seed=0, epochs=3, target_error=None)
    b, _ = train_minimum("binary_mlp", cfg, digits, "binary", seed=1, epochs=3, target_error=None)
    with pytest.raises(ValueError, match="flip"):
        one_bend(a, b, digits, "geodesic")
    result = one_bend(a, b, digits, "flip", points=5, epochs=2, target_error=None)
    assert result.kind == "flip" and [p.kind for p in result.profiles] == ["flip", "flip"]
    assert 0.0 < result.distance_to_a < 1.0 and 0.0 < result.distance_to_b < 1.0  # Hamming fractions
    assert result.barrier == max(p.barrier for p in result.profiles)
    assert result.extra["retrain_hyperparameters"]["variant"] == "sgd"


@pytest.mark.slow
def test_one_bend_removes_the_geodesic_barrier_between_sgd_minima(digits):
    """docs/method.md §7/11: the one-bend barrier is lower than the geodesic one and ~0 (< 2%)."""
    a, pa = train_minimum("mlp", None, digits, "sgd", seed=0, epochs=60)  # stops at 0 train error
    b, pb = train_minimum("mlp", None, digits, "sgd", seed=1, epochs=60)
    assert pa["train_error"] == 0.0 and pb["train_error"] == 0.0
    geodesic = path_profile(a, b, digits, "geodesic", points=17)
    result = one_bend(a, b, digits, "geodesic", points=17, epochs=20, seed=0)
    # measured: geodesic barrier 0.28% (4 images), one-bend 0.07% (1 image); bend at 0% train error
    assert result.barrier < geodesic.barrier, (result.barrier, geodesic.barrier)
    assert result.barrier < 0.02
    assert result.bend_train_error == 0.0
    d_ab = geodesic.length
    assert result.distance_to_a < 0.7 * d_ab and result.distance_to_b < 0.7 * d_ab
