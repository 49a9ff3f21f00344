"""Torus slices and sections visit their grid coarse to fine (docs/method.md §7): the first report already covers the
whole grid, and the final grid is exactly the one a row-by-row visit computes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.core.conftest import quick_sgd
from toroid.worker.landscape.paths import section_2d
from toroid.worker.landscape.progressive import GridProgress, first_stride, grid_order
from toroid.worker.landscape.symmetry import align, normalize
from toroid.worker.landscape.torus import torus_slice

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def nets(digits):
    return [quick_sgd(digits, s, config={"widths": [24, 24]}, epochs=6) for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def prepared(nets):
    a = normalize(nets[0])
    return a, align(a, normalize(nets[1])), align(a, normalize(nets[2]))


@pytest.mark.parametrize("resolution", [2, 3, 6, 7, 9, 13, 20, 21, 23, 25, 33, 49, 129])
def test_every_cell_once_and_the_first_pass_spans_the_grid(resolution):
    cells = grid_order(resolution)
    assert sorted(cells) == sorted((i, j) for i in range(resolution) for j in range(resolution))
    assert grid_order(resolution, "rows") == [(i, j) for j in range(resolution) for i in range(resolution)]
    s = first_stride(resolution)
    first = [(i, j) for j in range(0, resolution, s) for i in range(0, resolution, s)]
    assert cells[: len(first)] == first
    if resolution >= 7:  # 4 to 6 cells per axis, up to the far edge
        assert 4 <= len(range(0, resolution, s)) <= 6
        assert max(i for i, _ in first) >= resolution - 1 - s and max(j for _, j in first) >= resolution - 1 - s
    with pytest.raises(ValueError, match="order"):
        grid_order(resolution, "spiral")


def test_the_progressive_torus_equals_the_row_by_row_one_exactly(digits, prepared):
    a, b, c = prepared
    for third in (None, c):
        fine = torus_slice(a, b, digits, c=third, resolution=9, device="cpu", prepared=True)
        rows = torus_slice(a, b, digits, c=third, resolution=9, device="cpu", prepared=True, order="rows")
        assert fine.to_dict() == rows.to_dict()  # every value, not approximately
        assert not np.isnan(np.asarray(fine.train_error)).any()


def test_the_progressive_section_equals_the_row_by_row_one_exactly(digits, nets):
    for space in ("raw", "normalized"):
        fine = section_2d(*nets, digits, space=space, resolution=7, device="cpu")
        rows = section_2d(*nets, digits, space=space, resolution=7, device="cpu", order="rows")
        assert fine.to_dict() == rows.to_dict()


def _reports(call, **kwargs) -> tuple[list[tuple[float, dict]], object]:
    seen: list[tuple[float, dict]] = []
    result = call(progress=lambda f, info: seen.append((f, info)), **kwargs)
    return seen, result


def test_the_first_torus_report_covers_the_whole_torus_and_grows_to_the_result(digits, prepared):
    a, b, _ = prepared
    n = 13
    seen, result = _reports(lambda **kw: torus_slice(a, b, digits, resolution=n, device="cpu", prepared=True, **kw))
    assert len(seen) == n * n and [f for f, _ in seen] == pytest.approx([(k + 1) / (n * n) for k in range(n * n)])
    assert all("cell" in info for _, info in seen)
    grids = [info["grid"] for _, info in seen if "grid" in info]
    first = grids[0]
    train = np.asarray(first["train_error"], dtype=float)
    known = np.isfinite(train)
    s = first_stride(n)
    # the first report: the coarse pass over the whole torus, nothing else; unknown cells are NaN, not zeros
    assert first["cells"] == known.sum() == len(range(0, n, s)) ** 2 and first["stride"] == s
    assert known[::s, ::s].all() and known.sum() == known[::s, ::s].size
    rows, cols = np.nonzero(known)
    assert rows.min() == 0 and cols.min() == 0 and rows.max() >= n - 1 - s and cols.max() >= n - 1 - s
    assert np.isnan(train[~known]).all()
    # the coordinates, minima and geodesic come with it; the counts grow; the last report is the result
    assert first["phi1"] == result.phi1 and first["minima"] == result.minima and first["geodesic"] == result.geodesic
    assert first["extra"]["minima_errors"] == result.extra["minima_errors"]
    assert [g["cells"] for g in grids] == sorted({g["cells"] for g in grids}) and grids[-1]["cells"] == n * n
    assert grids[-1]["train_error"] == result.train_error and grids[-1]["test_error"] == result.test_error
    assert len(grids) <= 32 + 3  # a bounded number of whole-grid reports
    for _, info in seen:  # each reported cell carries the value the result holds there
        cell = info["cell"]
        assert result.train_error[cell["j"]][cell["i"]] == cell["train_error"]
        assert cell["phi1"] == result.phi1[cell["i"]] and cell["phi2"] == result.phi2[cell["j"]]


def test_the_first_section_report_covers_the_whole_plane(digits, nets):
    n = 9
    seen, result = _reports(lambda **kw: section_2d(*nets, digits, resolution=n, device="cpu", **kw))
    first = next(info["grid"] for _, info in seen if "grid" in info)
    known = np.isfinite(np.asarray(first["train_error"], dtype=float))
    s = first_stride(n)
    assert known[::s, ::s].all() and known.sum() == len(range(0, n, s)) ** 2
    assert first["x"] == result.x and first["y"] == result.y and first["points"] == result.points
    assert first["extra"]["point_errors"] == result.extra["point_errors"] and first["space"] == "raw"


def test_grid_progress_reports_at_pass_ends_and_in_chunks():
    seen = []
    fill = GridProgress(21, progress=lambda f, info: seen.append(info), static={"x": [0.0]})
    for i, j in fill.cells():
        fill.record(i, j, {"train_error": (i + j) / 40, "test_error": 0.5})
    cells = [info["grid"]["cells"] for info in seen if "grid" in info]
    # passes of 36, 85 and 320 cells (strides 4, 2, 1); in between every 36 cells (the first pass's size)
    assert {36, 36 + 85, 441} <= set(cells) and cells[0] == 36
    assert max(b - a for a, b in zip(cells, cells[1:], strict=False)) <= 36
    assert seen[-1]["grid"]["stride"] == 1 and seen[-1]["grid"]["x"] == [0.0]
    assert fill.train[20][3] == pytest.approx(23 / 40) and not any(math.isnan(v) for row in fill.test for v in row)
    quiet = GridProgress(5)  # without a callback it only fills the grids
    for i, j in quiet.cells():
        quiet.record(i, j, {"train_error": 0.0, "test_error": 0.0})
    assert quiet.done == 25 and quiet.stride == 1
