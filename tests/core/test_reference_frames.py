"""Distances in a common reference frame (docs/method.md §5, "Many minima"; worker/landscape/distances.py
``frame_features``, ``ReferenceFrames``), on real small networks: the alignment-free variants are exactly those of
``euclidean_distances``; a pair with the reference is exactly the pairwise alignment onto it; a copy moved by a random
symmetry (permutations, flips, rescalings) is at distance 0 from its original; the frame distance is a symmetric
function bounded by the two distances to the reference (triangle inequality); binary networks get Hamming rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.core.conftest import make
from toroid.worker.landscape.distances import (
    ReferenceFrames,
    euclidean_distances,
    frame_features,
    geodesic_distance,
    hamming_distance,
)
from toroid.worker.landscape.symmetry import align, normalize, random_symmetry, sphere_blocks

DATA = ((1, 8, 8), 10)


@pytest.fixture(scope="module")
def mlps() -> list[torch.nn.Module]:
    models = [make("mlp", {"widths": [12, 10]}, DATA, seed=s) for s in range(5)]
    moved, _ = random_symmetry(models[2], seed=3, rescale=(0.5, 2.0))
    return [*models, moved]


@pytest.fixture(scope="module")
def frames(mlps) -> ReferenceFrames:
    blocks = sphere_blocks(mlps[0])
    return ReferenceFrames([frame_features(mlps[0], m, blocks) for m in mlps], blocks)


def test_alignment_free_variants_are_exact_and_pairs_with_the_reference_are_the_pairwise_alignment(mlps, frames):
    for j in range(1, len(mlps)):
        row = frames.row(j, range(j))
        for i in range(j):
            exact = euclidean_distances(mlps[i], mlps[j])
            assert row["raw"][i] == pytest.approx(exact["raw"], rel=1e-12, abs=1e-14)
            assert row["normalized"][i] == pytest.approx(exact["normalized"], rel=1e-12, abs=1e-14)
        ref, model = normalize(mlps[0]), normalize(mlps[j])
        assert row["geodesic"][0] == pytest.approx(geodesic_distance(ref, align(ref, model)), rel=1e-6)
        assert row["aligned"][0] == pytest.approx(euclidean_distances(mlps[0], mlps[j])["aligned"], rel=1e-6)


def test_a_copy_moved_by_a_symmetry_is_at_distance_zero(mlps, frames):
    row = frames.row(len(mlps) - 1, [2])
    for metric in ("geodesic", "normalized_aligned"):
        assert row[metric][0] == pytest.approx(0.0, abs=1e-5), metric
    assert frames.row(len(mlps) - 1, [2])["raw"][0] > 1e-2  # the parameters themselves moved


def test_frame_distances_are_symmetric_and_bounded_through_the_reference(mlps, frames):
    n = len(mlps)
    full = np.zeros((n, n))
    for j in range(n):
        full[j] = frames.row(j, range(n))["geodesic"]
    assert np.allclose(full, full.T, atol=1e-9) and np.allclose(np.diag(full), 0.0)
    for i in range(1, n):
        for j in range(1, n):
            assert full[i, j] <= full[i, 0] + full[0, j] + 1e-9
    # never below the best alignment of the pair found pairwise by more than the heuristic's slack; usually above
    pairwise = [geodesic_distance(normalize(mlps[i]), align(normalize(mlps[i]), normalize(mlps[j])))
                for i in range(1, 4) for j in range(i + 1, 5)]
    framed = [full[i, j] for i in range(1, 4) for j in range(i + 1, 5)]
    assert np.mean(framed) >= 0.95 * np.mean(pairwise)


def test_binary_networks_get_hamming_rows():
    models = [make("binary_mlp", {"widths": [15]}, DATA, seed=s) for s in range(3)]
    frames = ReferenceFrames([frame_features(models[0], m) for m in models])
    assert frames.metrics == ("hamming", "hamming_raw", "raw", "aligned")
    row = frames.row(2, [0, 1])
    assert row["hamming_raw"][1] == pytest.approx(hamming_distance(models[1], models[2]))
    assert row["hamming"][0] == pytest.approx(hamming_distance(models[0], align(models[0], models[2])))


def test_features_of_other_families_are_refused(mlps):
    other = make("mlp", {"widths": [12]}, DATA, seed=0)
    features = [frame_features(mlps[0], mlps[1]), {"raw": np.zeros(3, dtype=np.float32)}]
    with pytest.raises(ValueError, match="not one family"):
        ReferenceFrames(features, sphere_blocks(mlps[0]))
    with pytest.raises(ValueError, match="at least one"):
        ReferenceFrames([], sphere_blocks(other))
