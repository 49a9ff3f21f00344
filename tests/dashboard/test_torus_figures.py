"""The torus and plane figures (docs/dashboard.md, "Torus & plane"): a fixed 0-100 % colour scale from the first
streamed report, the coarse pass drawn over the whole grid, A/B/C everywhere, tight equal-aspect plane axes, angles
in radians with ticks in units of pi.

The partial records are the core's own (``GridProgress``, JSON-encoded as the job ledger stores them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from toroid.dashboard.figures.torus import (
    ERROR_RANGE,
    MARKER_LIFT,
    preview_grid,
    section_contour,
    section_partial,
    torus_heatmap,
    torus_partial,
    torus_surface,
)
from toroid.dashboard.views.torus import (
    DEFAULT_RESOLUTION,
    RESOLUTIONS,
    figure_key,
    section_caption,
    torus_caption,
)
from toroid.store.params import SectionRequest, TorusRequest
from toroid.worker.landscape.progressive import GridProgress, first_stride
from toroid.worker.landscape.results import to_json

N = 21
PHI = np.linspace(0.0, 2 * math.pi, N, endpoint=False).tolist()
B = [1.1, 0.9]


def error(i: int, j: int) -> float:
    """A smooth error on the torus, low near A = (0, 0) and B, up to 0.9 far from both (a fraction)."""
    return 0.9 * (1 - math.cos(PHI[i])) / 2 * (1 + math.sin(PHI[j])) / 2


def reports(static: dict, n: int = N) -> list[dict]:
    """Every ``partial`` a job ledger would hold: the core's grid reports, through JSON (NaN -> null)."""
    seen = []
    fill = GridProgress(n, progress=lambda f, info: seen.append(json.loads(json.dumps(to_json(info)))),
                        static=static)
    for i, j in fill.cells():
        fill.record(i, j, {"train_error": error(i, j) if n == N else (i + j) / (2 * n), "test_error": 0.5})
    return [{"grid": info["grid"]} for info in seen if "grid" in info]


TORUS_STATIC = {"phi1": PHI, "phi2": PHI, "minima": {"A": [0.0, 0.0], "B": B},
                "geodesic": [[t * B[0], t * B[1]] for t in np.linspace(0, 1, 17)],
                "construction": "two-groups (first_layer): circle maps per group",
                "extra": {"minima_errors": {"A": {"train_error": 0.0, "test_error": 0.03},
                                            "B": {"train_error": 0.001, "test_error": 0.04}}}}
LABELS = {"A": "A · sgd-0", "B": "B · sgd-1", "C": "C · rsgd-2", "w1": "A · sgd-0", "w2": "B · sgd-1",
          "w3": "C · rsgd-2"}


def test_the_first_partial_covers_the_torus_on_the_final_colour_scale():
    partials = reports(TORUS_STATIC)
    first = torus_partial(partials[0], N)
    train = np.asarray([[math.nan if v is None else v for v in row] for row in first["train_error"]])
    known = np.isfinite(train)
    s = first_stride(N)
    assert known.sum() == len(range(0, N, s)) ** 2 < N * N  # a coarse pass...
    rows, cols = np.nonzero(known)
    assert rows.max() - rows.min() >= N - 1 - s and cols.max() - cols.min() >= N - 1 - s  # ...over the whole grid
    for partial in (partials[0], partials[len(partials) // 2], partials[-1]):
        data = torus_partial(partial, N)
        surface, heat = torus_surface(data, LABELS), torus_heatmap(data, LABELS, height=430)
        assert (surface.data[0].cmin, surface.data[0].cmax) == ERROR_RANGE == (0.0, 100.0)
        assert (heat.data[0].zmin, heat.data[0].zmax) == ERROR_RANGE
        z = np.asarray(heat.data[0].z, dtype=float)
        assert np.isfinite(z).all()  # the preview fills every cell from the nearest computed one...
        grid = np.asarray([[math.nan if v is None else v for v in row] for row in data["train_error"]])
        done = np.isfinite(grid)
        np.testing.assert_allclose(z[:-1, :-1][done], 100 * grid[done])  # ...computed cells keep their value
        notes = [a.text for a in heat.layout.annotations if "preview" in (a.text or "")]
        assert bool(notes) == (not done.all())  # labelled a preview until every cell is in
        assert {t.name for t in surface.data} >= {"torus", "geodesic", "minima"}  # A, B, geodesic from the start
    final = torus_heatmap(torus_partial(partials[-1], N), LABELS)
    np.testing.assert_allclose(np.asarray(final.data[0].z)[:-1, :-1],
                               100 * np.asarray([[error(i, j) for i in range(N)] for j in range(N)]))


def test_before_a_complete_pass_unknown_cells_are_gaps_not_zeros():
    z = np.full((9, 9), np.nan)
    z[0, :3] = [0.1, 0.2, 0.3]
    shown, computed = preview_grid(z.copy(), periodic=True)
    assert computed == 3 and np.isnan(shown[1:]).all() and np.isnan(shown[0, 3:]).all()
    z[::4, ::4] = 0.5  # the stride-4 pass is complete: the rest is filled from its nearest cell, periodically
    shown, _ = preview_grid(z.copy(), periodic=True)
    assert np.isfinite(shown).all() and shown[7, 7] == 0.5 and shown[0, 1] == 0.2
    assert torus_partial({}, 3) is None and section_partial({}) is None


def test_torus_axes_in_radians_with_pi_ticks_and_tags_that_stay_visible():
    data = torus_partial(reports(TORUS_STATIC)[-1], N)
    heat = torus_heatmap(data, LABELS)
    for axis in (heat.layout.xaxis, heat.layout.yaxis):
        assert list(axis.range) == [0, pytest.approx(2 * math.pi)] and "(rad)" in axis.title.text
        assert list(axis.ticktext) == ["0", "π/2", "π", "3π/2", "2π"]
    assert "first-layer units" in heat.layout.xaxis.title.text and heat.layout.yaxis.scaleanchor == "x"
    assert {a.text for a in heat.layout.annotations} >= {"<b>A</b>", "<b>B</b>"}
    minima = next(t for t in heat.data if t.name == "minima")
    assert list(minima.text) == ["A", "B"] and "A · sgd-0" in minima.hovertext[0] and "test 3.0%" in minima.hovertext[0]
    copies = next(t for t in heat.data if t.name == "minima (periodic copies)")  # A = (0, 0) is every corner
    corners = sorted(zip(copies.x, copies.y, strict=True))
    assert np.asarray(corners) == pytest.approx(np.asarray([(0, 2 * math.pi), (2 * math.pi, 0), (2 * math.pi,) * 2]))
    surface = torus_surface(data, LABELS)
    tags = surface.layout.scene.annotations  # drawn over the WebGL canvas: never behind the surface
    assert [a.text for a in tags] == ["<b>A</b>", "<b>B</b>"]
    markers = next(t for t in surface.data if t.name == "minima")
    tube = np.hypot(np.hypot(markers.x, markers.y) - 2.0, markers.z)  # distance from the tube's core circle
    assert tube == pytest.approx([1 + MARKER_LIFT] * 2)
    eye = surface.layout.scene.camera.eye  # looking from above the minima's side of the ring
    azimuth = math.atan2(eye.y, eye.x)
    assert abs(azimuth - math.atan2(math.sin(B[0]), 1 + math.cos(B[0]))) < 1e-9 and eye.z > 0
    assert "rad" in surface.data[0].hovertemplate
    three = {**data, "minima": {"A": [0.0, 0.0], "B": [1.1, 0.0], "C": [0.0, 0.8]}, "construction": "three-minima",
             "extra": {"geodesic_ac": [[0.0, 0.1 * k] for k in range(9)]}}
    heat3 = torus_heatmap(three, LABELS)
    assert "A→C" in heat3.layout.yaxis.title.text and "geodesic A→C" in {t.name for t in heat3.data}
    caption = torus_caption(data)
    assert "radians" in caption and "B at (0.35π, 0.29π)" in caption and "0–100 %" in caption
    assert "φ₁ turns first-layer units" in caption
    assert "φ₂ every unit along its A→C circle" in torus_caption(three)


SECTION_STATIC = {"x": np.linspace(-8.0, 44.0, 11).tolist(), "y": np.linspace(-8.0, 38.0, 11).tolist(),
                  "points": {"w1": [0.0, 0.0], "w2": [36.0, 0.0], "w3": [12.0, 30.0]}, "space": "normalized",
                  "extra": {"point_errors": {"w1": {"train_error": 0.0, "test_error": 0.031}}}}


def test_plane_axes_span_the_data_with_equal_aspect_and_name_b_and_c():
    partials = reports(SECTION_STATIC, n=11)
    for partial in (partials[0], partials[-1]):
        fig = section_contour(section_partial(partial), LABELS, height=440)
        x0, x1 = SECTION_STATIC["x"][0], SECTION_STATIC["x"][-1]
        y0, y1 = SECTION_STATIC["y"][0], SECTION_STATIC["y"][-1]
        xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
        assert x0 - 0.15 * (x1 - x0) <= xr[0] <= x0 and x1 <= xr[1] <= x1 + 0.15 * (x1 - x0)
        assert y0 - 0.15 * (y1 - y0) <= yr[0] <= y0 and y1 <= yr[1] <= y1 + 0.15 * (y1 - y0)
        assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
        assert fig.layout.xaxis.constrain == fig.layout.yaxis.constrain == "domain"  # no range padding for the aspect
        assert "B" in fig.layout.xaxis.title.text and "C" in fig.layout.yaxis.title.text
        assert "w2" not in fig.layout.xaxis.title.text + fig.layout.yaxis.title.text
        assert "normalized" in fig.layout.xaxis.title.text
        assert (fig.data[0].zmin, fig.data[0].zmax) == ERROR_RANGE
        assert (fig.data[0].contours.start, fig.data[0].contours.end) == ERROR_RANGE
        minima = next(t for t in fig.data if t.name == "minima")
        assert list(minima.text) == ["A", "B", "C"] and "C · rsgd-2" in minima.hovertext[2]
        plot_w = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r - 78
        plot_h = 440 - fig.layout.margin.t - fig.layout.margin.b
        assert plot_w / plot_h == pytest.approx((x1 - x0) / (y1 - y0), rel=0.01)  # sized to the plot: no blank band
    caption = section_caption(section_partial(partials[-1]), LABELS)
    text = json.dumps([c.to_plotly_json() for c in caption], default=str)
    assert "|AB| = 36" in text and "|AC| = 32.3" in text and "Euclidean distance of normalized parameters" in text


def test_the_default_grid_is_offered_and_is_the_api_default():
    assert DEFAULT_RESOLUTION in RESOLUTIONS and DEFAULT_RESOLUTION <= 21
    ids = ["a", "b", "c"]
    assert TorusRequest(minimum_ids=ids[:2]).resolution == SectionRequest(minimum_ids=ids).resolution == (
        DEFAULT_RESOLUTION)
    assert TorusRequest.model_fields["resolution"].metadata[-1].le == 129  # the maximum stays


def test_a_flat_basin_gets_labelled_finer_levels_on_the_same_colour_scale():
    flat = {**SECTION_STATIC, "train_error": [[0.002 + 0.0001 * (i + j) for i in range(11)] for j in range(11)],
            "test_error": [[0.03] * 11 for _ in range(11)]}
    fig = section_contour(flat, LABELS)
    lines = next(t for t in fig.data if t.name == "finer levels")
    assert lines.contours.coloring == "none" and lines.contours.showlabels
    assert 0.2 <= lines.contours.start < lines.contours.end <= 0.4 and lines.contours.size == pytest.approx(0.05)
    assert (fig.data[0].zmin, fig.data[0].zmax) == ERROR_RANGE  # the fill keeps its fixed scale
    steep = section_contour(section_partial(reports(SECTION_STATIC, n=11)[-1]), LABELS)
    assert "finer levels" not in {t.name for t in steep.data}  # 0-95 %: the colours show the shape


def test_figures_redraw_per_grid_report_not_per_poll():
    partials = reports(TORUS_STATIC)
    entry = {"params": {"minimum_ids": ["a", "b"], "resolution": N}, "state": "running", "progress": 0.1,
             "partial": {**partials[0], "cell": {"i": 0, "j": 4}}}
    polled = {**entry, "progress": 0.11, "partial": {**partials[0], "cell": {"i": 4, "j": 4}}}
    assert figure_key(entry) == figure_key(polled)  # a new cell and progress: only the status bar moves
    assert figure_key({**entry, "partial": partials[1]}) != figure_key(entry)  # the next grid report redraws
    assert figure_key({**entry, "state": "succeeded", "result_id": "r"}) != figure_key(entry)
    assert figure_key(None) is None
