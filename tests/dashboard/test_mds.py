"""The minima map's embedding (toroid/mds.py): classical MDS, SMACOF, stress-1, share of variance, Procrustes
alignment and the spreading of coinciding points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toroid.mds import classical_mds, embed, procrustes_align, spread_coincident, stress, variance_share


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


# --- how faithful a map is: stress-1, the share of variance, SMACOF ------------------------------------------------

def test_points_on_a_plane_map_exactly_with_all_the_variance_in_two_dimensions():
    rng = np.random.default_rng(3)
    d = pairwise(rng.normal(size=(9, 2)) * 4.0)
    found = embed(d)
    assert found.method == "classical"  # nothing for SMACOF to improve
    assert found.stress < 1e-9 and found.classical_stress < 1e-9
    assert found.variance_2d == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(pairwise(found.coords), d, atol=1e-8)


def test_four_equidistant_points_cannot_be_drawn_flat_and_smacof_does_better():
    d = 1.0 - np.eye(4)  # a regular tetrahedron: three equal eigenvalues
    assert variance_share(d) == pytest.approx(2 / 3)
    found = embed(d)
    assert found.classical_stress > 0.1 and found.stress > 0.1  # no planar map keeps these distances
    assert found.stress <= found.classical_stress
    assert found.method == "smacof" and found.stress < found.classical_stress - 0.05
    assert found.stress == pytest.approx(stress(d, found.coords))
    # by hand: stress-1 of the classical map, from its definition
    coords = classical_mds(d)
    planar = pairwise(coords)
    by_hand = math.sqrt(sum((d[i, j] - planar[i, j]) ** 2 for i in range(4) for j in range(4)) / np.sum(d**2))
    assert found.classical_stress == pytest.approx(by_hand)


def test_variance_share_by_hand_on_a_box():
    # points at (+-3, 0, 0), (0, +-2, 0), (0, 0, +-1): Gram eigenvalues 18, 8, 2 -> (18 + 8) / 28
    points = np.array([[3, 0, 0], [-3, 0, 0], [0, 2, 0], [0, -2, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    assert variance_share(pairwise(points)) == pytest.approx(26 / 28)
    assert variance_share(pairwise(points), dims=1) == pytest.approx(18 / 28)


def test_smacof_is_kept_only_when_it_lowers_the_stress_and_is_deterministic():
    rng = np.random.default_rng(4)
    d = pairwise(rng.normal(size=(12, 6)))
    first, second = embed(d), embed(d.copy())
    assert first.stress <= first.classical_stress
    np.testing.assert_array_equal(first.coords, second.coords)
    assert first.method == ("smacof" if first.stress < first.classical_stress else "classical")


def test_zero_distances_are_a_perfect_map():
    found = embed(np.zeros((3, 3)))
    assert found.stress == 0.0 and found.variance_2d == 1.0


# --- coinciding points ---------------------------------------------------------------------------------------------

def test_coinciding_points_get_distinct_stable_positions_around_their_spot():
    points = {f"m{i}": [0.0, 2.5] for i in range(6)} | {"far": [5.0, 4.0]}
    spread, groups = spread_coincident(points)
    assert groups == [[f"m{i}" for i in range(6)]]
    assert spread["far"] == [5.0, 4.0]
    ring = np.array([spread[f"m{i}"] for i in range(6)])
    gaps = pairwise(ring)[~np.eye(6, dtype=bool)]
    assert gaps.min() > 0.03 * 5.0  # apart by a few percent of the map's span: each separately clickable
    np.testing.assert_allclose(ring.mean(axis=0), [0.0, 2.5], atol=1e-12)  # centred on the shared spot
    assert np.linalg.norm(ring - [0.0, 2.5], axis=1).max() < 0.1 * 5.0  # and close to it
    # the same input (in any order) gives the same layout
    again, _ = spread_coincident(dict(reversed(list(points.items()))))
    assert all(again[k] == pytest.approx(v) for k, v in spread.items())


def test_all_points_on_one_spot_use_the_given_span_and_distinct_points_stay_put():
    spread, groups = spread_coincident({"a": [1.0, 1.0], "b": [1.0, 1.0]}, span=2.0)
    assert groups == [["a", "b"]] and math.dist(spread["a"], spread["b"]) > 0.05
    many, groups = spread_coincident({f"p{i:02d}": [0.0, 0.0] for i in range(20)}, span=1.0)  # the sunflower
    xy = np.array(list(many.values()))
    assert pairwise(xy)[~np.eye(20, dtype=bool)].min() > 0.02
    apart = {"a": [0.0, 0.0], "b": [1.0, 0.0]}
    assert spread_coincident(apart) == (apart, [])
