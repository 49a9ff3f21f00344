"""The map of hundreds of minima (docs/dashboard.md, "Large families"): MDS with a bounded SMACOF that still only
keeps an improvement, the layout of a result aligned to a common reference (said in the caption), and a figure that
stays readable (no names beside hundreds of points, small markers, every point hoverable and clickable)."""

from __future__ import annotations

import numpy as np
import pytest

from toroid import mds
from toroid.dashboard.figures.map import CROWDED, LABELS_MAX, map_caption, map_layout, minima_map


def distances(n: int, dims: int = 6, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).normal(size=(n, dims)) * np.linspace(3, 0.5, dims)
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def test_smacof_iterations_shrink_with_the_map_but_stay_bounded():
    assert mds.smacof_iterations(10) == mds.SMACOF_MAX_ITER
    assert mds.smacof_iterations(2000) == mds.SMACOF_MIN_ITER
    assert mds.smacof_iterations(700) < mds.smacof_iterations(500) <= mds.SMACOF_MAX_ITER


def test_a_large_map_keeps_smacof_only_when_it_lowers_stress_and_is_deterministic():
    d = distances(200)
    found = mds.embed(d)
    assert found.coords.shape == (200, 2)
    assert found.stress <= found.classical_stress
    assert found.stress == pytest.approx(mds.stress(d, found.coords))
    mds._CACHE.clear()
    again = mds.embed(d.copy())
    assert np.array_equal(again.coords, found.coords) and again.method == found.method
    assert mds.embed(d) is again  # remembered: a redraw does not lay it out again


def test_smacof_never_raises_the_raw_stress():
    d = distances(80, seed=3)
    start = mds.classical_mds(d)
    raw = [float(np.sum((d - mds._planar(mds.smacof(d, start, k)[0])) ** 2)) for k in (1, 2, 5, 20)]
    assert all(b <= a + 1e-9 for a, b in zip(raw, raw[1:], strict=False))


def result_of(minima: list[dict], d: np.ndarray, alignment: str = "reference") -> dict:
    ids = [m["id"] for m in minima]
    return {"ids": ids, "matrices": {"geodesic": d.tolist(), "raw": d.tolist()}, "alignment": alignment,
            "reference": {"id": ids[0], "name": minima[0]["name"], "sha256": "0" * 64}}


def minima_of(n: int) -> list[dict]:
    return [{"id": f"m{k:04d}", "name": f"q{k:04d}", "sampler": "sgd" if k % 2 else "rsgd", "train_error": 0.01,
             "test_error": 0.05, "local_energy": 0.01 * (k % 7) if k % 3 else None} for k in range(n)]


def test_hundreds_of_minima_are_drawn_without_names_small_and_hoverable():
    minima = minima_of(150)
    layout = map_layout(minima, result_of(minima, distances(150, seed=1)))
    assert layout.method == "mds" and not layout.pending and layout.alignment == "reference"
    fig = minima_map(minima, layout.positions, layout.method, {"a": "m0001"}, "sampler", "geodesic", layout=layout)
    points = [t for t in fig.data if t.name in ("sgd", "rsgd")]
    assert sum(len(t.x) for t in points) == 150 > LABELS_MAX and 150 > CROWDED
    for trace in points:
        assert trace.mode == "markers"  # no names beside the points
        assert max(trace.marker.size) <= 12
        assert trace.hovertemplate and len(trace.customdata) == len(trace.x)
        assert all(row[0].startswith("m") for row in trace.customdata)  # the id a click selects
    hover = next(row[8] for t in points for row in t.customdata if row[0] == "m0002")
    assert "distance to A" in hover  # from the result's matrix, placed or not


def test_the_caption_says_the_distances_are_aligned_to_a_common_reference():
    minima = minima_of(40)
    d = distances(40, seed=2)
    reference = map_layout(minima, result_of(minima, d))
    text = map_caption(reference, 40)
    assert "common reference (q0000)" in text and "upper bound" in text
    assert "common reference" not in map_caption(map_layout(minima, result_of(minima, d), "raw"), 40)
    assert "common reference" not in map_caption(map_layout(minima, result_of(minima, d, "pairwise")), 40)
