"""Classical MDS and Procrustes alignment of the minima map (dashboard/mds.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toroid.dashboard.mds import classical_mds, procrustes_align, stress


def pairwise(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def test_mds_recovers_planar_distances_exactly():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 2)) * 3.0
    d = pairwise(points)
    coords = classical_mds(d)
    assert coords.shape == (7, 2)
    np.testing.assert_allclose(pairwise(coords), d, atol=1e-9)
    assert stress(d, coords) < 1e-10


def test_mds_of_higher_dimensional_points_is_the_best_planar_fit():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(12, 6)) * np.array([5.0, 3.0, 0.1, 0.1, 0.1, 0.1])
    d = pairwise(points)
    coords = classical_mds(d)
    # nearly planar data: the map keeps distances to within a few percent
    assert stress(d, coords) < 0.05
    # a random planar layout is far worse
    assert stress(d, rng.normal(size=(12, 2))) > 0.3


def test_mds_two_points_lie_at_their_distance_on_one_axis():
    coords = classical_mds([[0.0, 4.0], [4.0, 0.0]])
    assert math.isclose(float(np.linalg.norm(coords[0] - coords[1])), 4.0, rel_tol=1e-12)
    np.testing.assert_allclose(coords[:, 1], 0.0, atol=1e-12)


def test_mds_is_deterministic_in_sign():
    d = pairwise(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]]))
    np.testing.assert_array_equal(classical_mds(d), classical_mds(d.copy()))


@pytest.mark.parametrize(
    ("matrix", "match"),
    [([[0.0, 1.0, 2.0]], "square"), ([[0.0, float("nan")], [float("nan"), 0.0]], "NaN"),
     ([[0.0, -1.0], [-1.0, 0.0]], "non-negative")],
)
def test_mds_rejects_bad_matrices(matrix, match):
    with pytest.raises(ValueError, match=match):
        classical_mds(matrix)


def test_procrustes_undoes_rotation_reflection_and_translation():
    rng = np.random.default_rng(2)
    ref = {f"m{i}": list(rng.normal(size=2)) for i in range(5)}
    angle = 1.1
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) @ np.diag([1.0, -1.0])
    moved = {k: list(np.asarray(v) @ rot + np.array([5.0, -2.0])) for k, v in ref.items()}
    moved["new"] = [10.0, 10.0]
    aligned = procrustes_align(moved, ref)
    for key, value in ref.items():
        np.testing.assert_allclose(aligned[key], value, atol=1e-9)
    # the extra point moved rigidly with the others: its distance to m0 is unchanged
    before = np.linalg.norm(np.asarray(moved["new"]) - np.asarray(moved["m0"]))
    after = np.linalg.norm(np.asarray(aligned["new"]) - np.asarray(aligned["m0"]))
    assert math.isclose(before, after, rel_tol=1e-12)


def test_procrustes_without_shared_points_changes_nothing():
    points = {"a": [1.0, 2.0], "b": [3.0, 4.0]}
    assert procrustes_align(points, {"c": [0.0, 0.0]}) == points
