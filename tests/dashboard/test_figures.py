"""Figure builders of the dashboard, tested on result JSON shaped like the core's dataclasses (no browser)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from toroid.dashboard import figures
from toroid.dashboard.figures.torus import MARKER_LIFT
from toroid.plots import bend_profile, flatness_scatter


def minimum(mid: str, sampler: str | None, train: float, test: float, local_energy: float | None = None) -> dict:
    return {"id": mid, "name": f"{sampler or 'up'}-{mid}", "architecture": "mlp", "config": {}, "dataset": "digits",
            "sampler": sampler, "train_error": train, "test_error": test, "local_energy": local_energy}


def distances_of(points: dict[str, list[float]]) -> dict:
    ids = list(points)
    xy = np.asarray([points[k] for k in ids])
    d = np.linalg.norm(xy[:, None] - xy[None, :], axis=-1)
    return {"ids": ids, "names": ids, "matrices": {"geodesic": d.tolist(), "raw": (3 * d).tolist()}}


MINIMA = [minimum("a", "sgd", 0.0, 0.03, 0.002), minimum("b", "rsgd", 0.0, 0.02, 0.0002),
          minimum("c", "adv", 0.01, 0.05, 0.04), minimum("d", None, 0.02, 0.04)]
PLANE = {"a": [0.0, 0.0], "b": [3.0, 0.0], "c": [0.0, 4.0], "d": [3.0, 4.0]}


# --- map ------------------------------------------------------------------------------------------------------------

def test_map_positions_reproduce_the_distances():
    positions, method, pending = figures.map_positions(MINIMA, distances_of(PLANE), "geodesic")
    assert method == "mds" and pending == []
    for i in PLANE:
        for j in PLANE:
            want = math.dist(PLANE[i], PLANE[j])
            assert math.isclose(math.dist(positions[i], positions[j]), want, abs_tol=1e-9)
    raw, _, _ = figures.map_positions(MINIMA, distances_of(PLANE), "raw")
    assert math.isclose(math.dist(raw["a"], raw["d"]), 3 * 5.0, rel_tol=1e-9)


def test_map_positions_fall_back_to_errors_without_distances():
    positions, method, pending = figures.map_positions(MINIMA, None)
    assert method == "error" and pending == []
    assert positions["c"] == pytest.approx([1.0, 5.0])


def test_new_minimum_waits_below_and_old_ones_stay_put():
    before, _, _ = figures.map_positions(MINIMA[:3], distances_of({k: PLANE[k] for k in "abc"}))
    partial = distances_of({k: PLANE[k] for k in "abc"})
    positions, method, pending = figures.map_positions(MINIMA, partial, previous=before)
    assert method == "mds" and pending == ["d"]
    lowest = min(positions[k][1] for k in "abc")
    assert positions["d"][1] < lowest
    # once its distances exist, the old minima keep their places (Procrustes on the shared ones)
    after, _, pending = figures.map_positions(MINIMA, distances_of(PLANE), previous=before)
    assert pending == []
    for k in "abc":
        assert after[k] == pytest.approx(before[k], abs=1e-9)


def test_minima_map_points_carry_ids_and_hover_details():
    positions, method, _ = figures.map_positions(MINIMA, distances_of(PLANE))
    fig = figures.minima_map(MINIMA, positions, method, {"a": "a", "b": "c"}, pair_distance=4.0)
    samplers = [t.name for t in fig.data if t.customdata is not None]
    assert samplers == ["rsgd", "sgd", "adv", "upload"]  # flattest sampler first
    ids = [row[0] for t in fig.data if t.customdata is not None for row in t.customdata]
    assert sorted(ids) == ["a", "b", "c", "d"]
    rsgd = next(t for t in fig.data if t.name == "rsgd")
    assert list(rsgd.customdata[0][4:7]) == ["0.00%", "2.00%", "0.020%"]
    selected = next(t for t in fig.data if t.name == "selected")
    assert list(selected.text) == ["A · sgd-a", "B · adv-c"]
    assert list(rsgd.text) == ["rsgd-b"] and list(next(t for t in fig.data if t.name == "sgd").text) == [""]
    assert any("d = 4" in a.text for a in fig.layout.annotations)
    # flatter minima are drawn bigger: rsgd (smallest local energy) > sgd > adv
    size = {t.name: t.marker.size[0] for t in fig.data if t.name in ("rsgd", "sgd", "adv")}
    assert size["rsgd"] > size["sgd"] > size["adv"]
    # every point sits inside the axes with room for its marker and label
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    for x, y in positions.values():
        assert x0 < x < x1 and y0 < y < y1
        assert min(x - x0, x1 - x, y - y0, y1 - y) > 0.1 * 5.0


def test_minima_map_colored_by_flatness_separates_unknown_ones():
    positions, method, _ = figures.map_positions(MINIMA, None)
    fig = figures.minima_map(MINIMA, positions, method, color_by="flatness")
    known = next(t for t in fig.data if t.name == "local energy")
    assert list(known.marker.color) == pytest.approx([0.2, 0.02, 4.0])
    unknown = next(t for t in fig.data if t.name == "flatness not computed")
    assert [row[0] for row in unknown.customdata] == ["d"]
    assert fig.layout.xaxis.title.text == "train error (%)"


# --- paths ----------------------------------------------------------------------------------------------------------

def profile(kind: str, errors: list[float], length: float = 2.0) -> dict:
    n = len(errors)
    x = np.linspace(0, 1, n).tolist()
    return {"kind": kind, "x": x, "distance": x, "length": length, "train_error": errors,
            "test_error": [e + 0.01 for e in errors], "train_loss": [0.1] * n, "test_loss": [0.2] * n,
            "barrier": max(errors), "test_barrier": max(errors) + 0.01, "bn": "none", "points": n, "extra": {}}


def test_barrier_figure_names_each_barrier_in_the_legend_in_percent():
    paths = {"linear": profile("linear", [0, 0.3, 0.8, 0.2, 0]), "geodesic": profile("geodesic", [0, 0.008, 0])}
    fig = figures.barrier_figure(paths)
    names = [t.name for t in fig.data]
    assert names == ["linear (barrier 80.00%, length ‖A − B‖ = 2)", "geodesic (barrier 0.80%, length 2 rad)"]
    assert list(fig.data[0].y) == pytest.approx([0, 30, 80, 20, 0])
    test = figures.barrier_figure(paths, error="test")
    assert test.data[1].name == "geodesic (test barrier 1.80%, length 2 rad)"
    both = figures.barrier_figure(paths, error="both")
    assert len(both.data) == 4 and both.data[1].line.dash == "dash"
    with pytest.raises(ValueError, match="error must be"):
        figures.barrier_figure(paths, error="loss")


def test_streamed_partial_points_are_drawn_and_counted():
    partial = {"x": [0.0, 0.25, 0.5], "train_error": [0.0, 0.1, 0.2], "test_error": [0.0, 0.1, 0.25],
               "distance": [0.0, 0.25, 0.5]}
    fig = figures.barrier_figure({"geodesic": partial}, expected_points=5)
    assert fig.data[0].name == "geodesic (computing… 3/5 points)"
    assert list(fig.data[0].x) == [0.0, 0.25, 0.5]
    rows = figures.barrier_rows({"geodesic": partial})
    assert rows[0]["complete"] is False and rows[0]["barrier"] is None


def test_one_bend_segments_join_at_the_bend_in_proportion_to_their_lengths():
    bend = {"profiles": [profile("geodesic", [0, 0.01, 0.02]), profile("geodesic", [0.02, 0.005, 0])],
            "barrier": 0.02, "kind": "geodesic", "distance_to_a": 1.0, "distance_to_b": 3.0,
            "bend_train_error": 0.02, "epochs": 5, "extra": {}}
    p = bend_profile(bend)
    assert p["distance"] == pytest.approx([0, 0.125, 0.25, 0.625, 1.0])
    assert p["train_error"] == [0, 0.01, 0.02, 0.005, 0]
    assert p["bend_at"] == 0.25 and p["barrier"] == 0.02 and p["points"] == 5
    fig = figures.barrier_figure({"one_bend": bend})
    assert fig.data[0].name == "one-bend (barrier 2.00%, length 4 rad)"
    assert fig.data[1].x[0] == 0.25  # the bend point marker
    with pytest.raises(ValueError, match="two path segments"):
        bend_profile({**bend, "profiles": bend["profiles"][:1]})


def test_barrier_rows_report_the_results_numbers():
    rows = figures.barrier_rows({"linear_aligned": profile("linear_aligned", [0, 0.05, 0], length=7.5)})
    (row,) = rows
    assert (row["kind"], row["label"], row["points"], row["complete"]) == ("linear_aligned", "linear aligned", 3, True)
    assert (row["barrier"], row["test_barrier"], row["length"]) == pytest.approx((0.05, 0.06, 7.5))
    assert row["length_text"] == "‖A − B′‖ = 7.5" and "after" not in row["length_definition"]
    assert "aligned" in row["length_definition"]


# --- flatness -------------------------------------------------------------------------------------------------------

def local_energy(mean: list[float], std: list[float]) -> dict:
    sigmas = np.linspace(0, 0.5, len(mean)).tolist()
    return {"sigmas": sigmas, "mean": mean, "std": std, "stderr": [s / 10 for s in std],
            "samples": [0] + [100] * (len(mean) - 1), "base_train_error": 0.0, "base_test_error": 0.03,
            "noise_on": "all", "mode": "fast", "subsample": 2048, "binary": False, "extra": {}}


def test_flatness_curves_have_standard_error_bars_in_percent():
    data = {**local_energy([0, 0.01, 0.05], [0, 0.002, 0.01]), "capped": [False, False, True]}
    fig = figures.flatness_curves([{"label": "sgd", "color": "#000", "data": data}])
    assert list(fig.data[0].y) == pytest.approx([0, 1, 5])
    assert list(fig.data[0].error_y.array) == pytest.approx([0, 0.02, 0.1])  # the stderr, not the std
    assert [row[1:3] for row in fig.data[0].customdata] == [[0, 0], [pytest.approx(0.2), 100], [1, 100]]
    assert [row[3] for row in fig.data[0].customdata] == ["", "", " · sample cap reached"]
    assert "sigma" in fig.layout.xaxis.title.text and "percentage points" in fig.layout.yaxis.title.text
    assert "standard error" in fig.layout.title.text and "multiplicative noise" in fig.layout.title.text
    # records written before the capped flag have none
    old = figures.flatness_curves([{"label": "a", "data": local_energy([0, 0.01], [0, 0.002])}])
    assert old.data[0].customdata[1][3] == ""


def test_kendall_text_states_a_direction_only_when_significant():
    text = figures.kendall_text((0.7071, 0.18), 4)
    assert text == ("Kendall tau (local energy at the largest sigma vs test error) 0.71 (p = 0.18, n = 4): "
                    "not significant at 0.05.")
    for phrase in ("sharper", "flatter", "generalize", "worse"):
        assert phrase not in text
    assert figures.kendall_text((0.6, 0.05), 5).endswith("not significant at 0.05.")  # p = alpha is not below it
    assert figures.kendall_text((0.5, float("nan")), 5).endswith("not significant at 0.05.")
    assert figures.kendall_text((0.81, 0.012), 6) == (
        "Kendall tau (local energy at the largest sigma vs test error) 0.81 (p = 0.012, n = 6): significant at 0.05; "
        "sharper minima (higher local energy) have higher test error in these minima.")
    assert "flatter minima (lower local energy) have higher test error" in figures.kendall_text((-0.9, 0.001), 8)
    assert figures.kendall_text(None, 2).startswith("Kendall tau between local energy and test error needs 3 minima")
    assert "(2 so far)" in figures.kendall_text(None, 2)


def test_flatness_scatter_prints_kendall_tau_of_scipy():
    minima = [minimum(str(i), "sgd", 0.0, test, le) for i, (le, test) in
              enumerate([(0.01, 0.02), (0.02, 0.03), (0.03, 0.025), (0.05, 0.06), (0.04, 0.05)])]
    minima.append(minimum("x", "adv", 0.0, 0.1, None))  # no flatness yet: left out
    fig, tau = flatness_scatter(minima)
    want = stats.kendalltau([0.01, 0.02, 0.03, 0.05, 0.04], [0.02, 0.03, 0.025, 0.06, 0.05])
    assert tau == pytest.approx((want.statistic, want.pvalue))
    assert f"Kendall tau = {want.statistic:.2f}" in fig.layout.title.text and "n = 5" in fig.layout.title.text
    assert sum(len(t.x) for t in fig.data) == 5
    assert flatness_scatter(minima[:2])[1] is None


# --- distances ------------------------------------------------------------------------------------------------------

def test_distance_heatmap_orders_by_sampler_consistently():
    data = distances_of(PLANE)
    by_id = {m["id"]: m for m in MINIMA}
    fig = figures.distance_heatmap(data, "geodesic", by_id)
    heat = fig.data[0]
    assert [label.split(" (")[1] for label in heat.x] == ["rsgd)", "sgd)", "adv)", "upload)"]
    order = ["b", "a", "c", "d"]
    for i, p in enumerate(order):
        for j, q in enumerate(order):
            assert heat.z[i][j] == pytest.approx(math.dist(PLANE[p], PLANE[q]))
    # the unit is on the colour bar and in the hover, not only in the title (docs/method.md §5: geodesic in rad)
    assert heat.colorbar.title.text == "distance<br>(rad)" and heat.hovertemplate.endswith(" rad<extra></extra>")
    with pytest.raises(ValueError, match="available"):
        figures.distance_heatmap(data, "hamming", by_id)


# --- torus and section ----------------------------------------------------------------------------------------------

def torus_slice(n: int = 8) -> dict:
    grid = np.linspace(0, 2 * math.pi, n, endpoint=False).tolist()
    err = [[0.5 * (1 - math.cos(p1)) * 0.5 + 0.01 * j for p1 in grid] for j, _ in enumerate(grid)]
    return {"phi1": grid, "phi2": grid, "train_error": err, "test_error": err,
            "minima": {"A": [0.0, 0.0], "B": [1.0, 0.5]},
            "geodesic": [[t * 1.0, t * 0.5] for t in np.linspace(0, 1, 5)], "construction": "two groups", "extra": {}}


def test_torus_surface_closes_the_periodic_grid_on_a_torus():
    fig = figures.torus_surface(torus_slice(), {"A": "A · sgd-1"})
    surface = fig.data[0]
    assert surface.type == "surface"
    x, y, z = (np.asarray(v) for v in (surface.x, surface.y, surface.z))
    assert x.shape == (9, 9)
    np.testing.assert_allclose((np.hypot(x, y) - 2.0) ** 2 + z**2, 1.0, atol=1e-12)
    np.testing.assert_allclose(surface.surfacecolor[-1], surface.surfacecolor[0])  # wraps around
    geodesic = next(t for t in fig.data if t.name == "geodesic")
    assert geodesic.type == "scatter3d" and len(geodesic.x) == 5
    minima = next(t for t in fig.data if t.name == "minima")
    assert list(minima.text) == ["A", "B"] and minima.hovertext[0].startswith("<b>A · sgd-1</b>")
    bx, by, bz = figures.torus_embedding([1.0], [0.5], lift=MARKER_LIFT)
    assert (minima.x[1], minima.y[1], minima.z[1]) == pytest.approx((bx[0], by[0], bz[0]))


def test_torus_heatmap_and_shape_checks():
    fig = figures.torus_heatmap(torus_slice())
    assert fig.data[0].type == "heatmap" and np.asarray(fig.data[0].z).shape == (9, 9)
    assert list(fig.data[1].x) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    bad = {**torus_slice(), "train_error": [[0.0] * 3]}
    with pytest.raises(ValueError, match="expected"):
        figures.torus_surface(bad)


def test_section_contour_marks_the_three_minima():
    section = {"x": [0, 1, 2], "y": [0, 1], "train_error": [[0, 0.1, 0.2], [0.3, 0.4, 0.5]],
               "test_error": [[0, 0.1, 0.2], [0.3, 0.4, 0.5]], "points": {"w1": [0, 0], "w2": [2, 0], "w3": [0, 1]},
               "space": "normalized", "extra": {}}
    fig = figures.section_contour(section, {"w1": "A · x"})
    assert fig.data[0].type == "contour" and np.asarray(fig.data[0].z).max() == pytest.approx(50)
    assert list(fig.data[1].text) == ["A", "B", "C"] and fig.data[1].hovertext[0].startswith("<b>A · x</b>")
    with pytest.raises(ValueError, match="expected"):
        figures.section_contour({**section, "x": [0, 1]})


def test_training_curves_from_a_partial_record():
    partial = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.2], "train_error": [0.3, 0.1, 0.0],
               "test_error": [0.35, 0.15, 0.05]}
    fig = figures.training_curves(partial, "sgd-0")
    assert [t.name for t in fig.data] == ["train error (%)", "test error (%)", "train loss"]
    assert list(fig.data[1].y) == pytest.approx([35, 15, 5])
    empty = figures.training_curves({})
    assert empty.layout.annotations[0].text.startswith("Training curves")


def test_streamed_torus_cells_fill_the_unrolled_slice():
    partial = {"i": [0, 1, 2], "j": [0, 0, 0], "phi1": [0.0, 2.1, 4.2], "phi2": [0.0, 0.0, 0.0],
               "train_error": [0.0, 0.2, 0.4], "test_error": [0.01, 0.21, 0.41]}
    sliced = figures.torus_partial(partial, 3)
    grid = np.asarray(sliced["train_error"])
    assert grid[0].tolist() == [0.0, 0.2, 0.4] and np.isnan(grid[1:]).all()
    assert sliced["phi1"] == pytest.approx([0, 2 * math.pi / 3, 4 * math.pi / 3])
    fig = figures.torus_heatmap(sliced)
    assert fig.data[0].type == "heatmap" and len(fig.data) == 1  # no minima or geodesic before the end
    assert figures.torus_partial({}, 3) is None


def test_labels_of_nearly_coincident_minima_do_not_overlap():
    minima = [minimum("p", "sgd", 0, 0), minimum("q", "adv", 0, 0), minimum("r", "sgd", 0, 0)]
    positions = {"p": [0.0, 0.0], "q": [0.01, 0.0], "r": [10.0, 10.0]}
    fig = figures.minima_map(minima, positions, "mds")
    side = {t.customdata[i][0]: t.textposition[i] for t in fig.data for i in range(len(t.customdata))}
    assert side == {"p": "bottom center", "q": "top center", "r": "bottom center"}
