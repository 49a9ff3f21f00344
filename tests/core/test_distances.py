"""Distances (docs/method.md §5 and 10): geodesic, per-parameter Euclidean, Hamming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.conftest import make
from toroid.worker.landscape.distances import (
    euclidean_distances,
    geodesic_angles,
    geodesic_distance,
    hamming_distance,
    unit_angles,
)
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.symmetry import align, normalize, random_symmetry, sphere_blocks

DATA = ((1, 8, 8), 10)


def rotate_rows(w: torch.Tensor, rows: list[int], theta: float, seed: int = 0) -> torch.Tensor:
    """Rotate the given rows (unit vectors) by exactly ``theta`` toward a random orthogonal direction."""
    g = torch.Generator().manual_seed(seed)
    out = w.clone().double()
    for r in rows:
        a = out[r]
        u = torch.randn(a.shape, generator=g, dtype=torch.float64)
        u = u - (u @ a) * a
        u = u / u.norm()
        out[r] = math.cos(theta) * a + math.sin(theta) * u
    return out


def test_identical_networks_have_geodesic_distance_exactly_zero():
    """Numerical note (docs/method.md §10): float32 arccos(dot) gives ~1e-3 rad per unit for identical vectors."""
    model = normalize(build_model("mlp", {"widths": [512, 512]}, DATA, seed=0))
    w = model.state_dict()["fc1.weight"]
    naive = torch.arccos((w * w).sum(dim=1).clamp(max=1.0))  # float32, the trap
    assert float(naive.max()) > 0  # the trap is real on this machine
    assert geodesic_distance(model, model) == 0.0
    assert all(float(np.max(phi)) == 0.0 for phi in geodesic_angles(model, model).values())


def test_geodesic_distance_of_known_rotations():
    """D^2 = sum_k phi_k^2 + H_L phi_L^2 (docs/method.md §5), checked against rotations by known angles."""
    a = normalize(build_model("mlp", {"widths": [20, 15]}, DATA, seed=1))
    state = {k: v.clone() for k, v in a.state_dict().items()}
    state["fc1.weight"] = rotate_rows(state["fc1.weight"], [0, 3, 7], 0.3).float()
    state["fc2.weight"] = rotate_rows(state["fc2.weight"], [2], 1e-4, seed=1).float()
    out = state["out.weight"].double()
    flat = out.reshape(1, -1) / out.norm()
    state["out.weight"] = (rotate_rows(flat, [0], 0.05, seed=2) * out.norm()).reshape(out.shape).float()
    b = build_model("mlp", {"widths": [20, 15]}, DATA)
    b.load_state_dict(state)
    expected = math.sqrt(3 * 0.3**2 + 1e-4**2 + 10 * 0.05**2)
    assert geodesic_distance(a, b) == pytest.approx(expected, rel=1e-5)
    angles = geodesic_angles(a, b)
    assert angles["fc1.weight"][[0, 3, 7]] == pytest.approx([0.3] * 3, rel=1e-5)
    assert angles["fc2.weight"][2] == pytest.approx(1e-4, rel=1e-2)
    assert angles["out.weight"].shape == (1,)


def test_unit_angles_are_accurate_for_tiny_and_large_angles():
    a = torch.eye(3, dtype=torch.float64)
    for theta in (1e-9, 1e-4, 1.0, 3.0):
        b = torch.tensor([[math.cos(theta), math.sin(theta), 0.0]] * 3, dtype=torch.float64)
        assert float(unit_angles(a[:1], b[:1])[0]) == pytest.approx(theta, rel=1e-9)
    assert float(unit_angles(a[:1], -a[:1])[0]) == pytest.approx(math.pi)


def test_geodesic_distance_is_symmetric_and_accepts_state_dicts():
    a = normalize(make("vgg", {"depth": 11, "width_scale": 1 / 16}, ((3, 8, 8), 10), seed=0))
    b = normalize(make("vgg", {"depth": 11, "width_scale": 1 / 16}, ((3, 8, 8), 10), seed=1))
    d = geodesic_distance(a, b)
    assert d > 1.0
    assert geodesic_distance(b, a) == d
    assert geodesic_distance(a.state_dict(), b.state_dict(), blocks=sphere_blocks(a)) == d
    with pytest.raises(ValueError, match="nn.Module"):
        geodesic_distance(a.state_dict(), b.state_dict())


def test_alignment_reduces_the_geodesic_distance():
    a = normalize(build_model("mlp", {"widths": [32, 32]}, DATA, seed=0))
    b = normalize(build_model("mlp", {"widths": [32, 32]}, DATA, seed=1))
    assert geodesic_distance(a, align(a, b)) < geodesic_distance(a, b)


@settings(max_examples=10, deadline=None)
@given(seeds=st.lists(st.integers(0, 10_000), min_size=3, max_size=3, unique=True))
def test_property_geodesic_distance_is_a_metric(seeds):
    """Product-of-spheres geodesic distance: symmetric, zero on the diagonal, triangle inequality."""
    a, b, c = (normalize(build_model("mlp", {"widths": [6, 5]}, ((4,), 3), seed=s)) for s in seeds)
    ab, bc, ac = geodesic_distance(a, b), geodesic_distance(b, c), geodesic_distance(a, c)
    assert geodesic_distance(b, a) == pytest.approx(ab, abs=1e-12)
    assert geodesic_distance(c, c) == 0.0
    assert ac <= ab + bc + 1e-9


def test_euclidean_distances_four_variants():
    model = make("lenet", {"channels": [4, 6], "hidden": [10]}, DATA, seed=0)
    moved, _ = random_symmetry(model, seed=1, rescale=(0.5, 2.0))
    d = euclidean_distances(model, moved)
    assert list(d) == ["raw", "aligned", "normalized", "normalized_aligned"]
    assert d["raw"] > 0.01
    assert d["normalized"] > 0.01  # normalization alone does not undo the permutation
    assert d["aligned"] > 1e-3  # alignment alone does not undo the rescaling
    assert d["normalized_aligned"] < 1e-6
    n_params = sum(p.numel() for p in model.parameters())
    pairs = zip(model.parameters(), moved.parameters(), strict=True)
    sq = sum(float(((p.detach() - q.detach()).double() ** 2).sum()) for p, q in pairs)
    assert d["raw"] == pytest.approx(math.sqrt(sq / n_params))
    assert euclidean_distances(moved, model, variants=["raw"]) == {"raw": d["raw"]}
    assert euclidean_distances(model, model)["raw"] == 0.0
    with pytest.raises(ValueError, match="unknown variant"):
        euclidean_distances(model, moved, variants=["geodesic"])


def test_hamming_distance_counts_differing_binary_weights():
    model = build_model("binary_mlp", {"widths": [10]}, ((6,), 2), seed=0)
    assert hamming_distance(model, model) == 0.0
    other = build_model("binary_mlp", {"widths": [10]}, ((6,), 2), seed=0)
    with torch.no_grad():
        other.fc1.weight[0, :3] *= -1  # flip exactly 3 of 60 + 20 binary weights
    assert hamming_distance(model, other) == pytest.approx(3 / 80)
    assert hamming_distance(other, model) == hamming_distance(model, other)
    continuous = build_model("mlp", {"widths": [10]}, ((6,), 2), seed=0)
    with pytest.raises(ValueError, match="binary"):
        hamming_distance(continuous, continuous)
    with pytest.raises(ValueError, match="hamming_distance"):
        geodesic_distance(model, other)
