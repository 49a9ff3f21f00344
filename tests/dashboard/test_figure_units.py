"""Paths and flatness figures read like a paper's (issue 17): every axis has a unit or a definition, minima compared in
one figure look different, scatter points carry their names, a path at 0% is visible, log axes tick at powers of ten.
Builders of the dashboard (toroid.dashboard.figures) and of the study report (toroid.plots), no browser."""

from __future__ import annotations

import math

import numpy as np
import pytest

import toroid.plots as plots
from toroid.backend.services.report import ReportData, VariantData, build_figures
from toroid.dashboard import figures
from toroid.dashboard.views import paths as paths_view

# --- data -----------------------------------------------------------------------------------------------------------


def profile(kind: str, errors: list[float], length: float) -> dict:
    x = np.linspace(0, 1, len(errors)).tolist()
    return {"kind": kind, "x": x, "distance": x, "length": length, "train_error": errors, "test_error": errors,
            "barrier": max(errors), "test_barrier": max(errors), "points": len(errors), "extra": {}}


PATHS = {"linear": profile("linear", [0, 0.02, 0.03, 0.01, 0], 23.25),
         "linear_aligned": profile("linear_aligned", [0, 0.001, 0.002, 0, 0], 20.22),
         "geodesic": profile("geodesic", [0.0] * 5, 41.55)}  # 0% along its whole length


def local_energy(top: float) -> dict:
    sigmas = [0.0, 0.25, 0.5]
    return {"sigmas": sigmas, "mean": [0.0, top / 4, top], "std": [0.0, 0.001, 0.002],
            "stderr": [0.0, 0.0001, 0.0002], "samples": [0, 16, 16], "capped": [False] * 3, "binary": False}


def minimum(mid: str, sampler: str | None, test: float, energy: float | None, **more) -> dict:
    return {"id": mid, "name": f"{sampler or 'up'}-{mid}", "sampler": sampler, "architecture": "mlp",
            "dataset": "digits", "train_error": 0.0, "test_error": test, "local_energy": energy, **more}


MINIMA = [minimum("0", "sgd", 0.031, 0.0054), minimum("1", "sgd", 0.031, 0.0055),  # nearly the same point
          minimum("2", "rsgd", 0.030, 0.0025), minimum("3", "adv", 0.167, 0.065)]


def titles(fig) -> list[str]:
    return [fig.layout.xaxis.title.text or "", fig.layout.yaxis.title.text or ""]


UNIT_WORDS = ("%", "percentage points", "rad", "0 = A", "sigma:", "nats", "RMS", "fraction")


# --- units and definitions ------------------------------------------------------------------------------------------

def test_every_axis_of_the_paths_and_flatness_figures_has_a_unit_or_a_definition():
    styles = plots.minimum_styles(MINIMA)
    curves = [{"label": m["name"], **styles[m["id"]], "data": local_energy(m["local_energy"])} for m in MINIMA]
    built = {
        "barrier": figures.barrier_figure(PATHS),
        "barrier test": figures.barrier_figure(PATHS, error="test"),
        "curves": figures.flatness_curves(curves),
        "scatter": plots.flatness_scatter(MINIMA)[0],
        "sharpness": plots.sharpness_scatter([{**m, "top_eigenvalue": 1.0 + i} for i, m in enumerate(MINIMA)])[0],
    }
    for name, fig in built.items():
        for title in titles(fig):
            assert any(word in title for word in UNIT_WORDS), (name, title)
    assert "distance from A / path length" in built["barrier"].layout.xaxis.title.text
    assert built["curves"].layout.xaxis.title.text == plots.SIGMA_TITLE and "w (1 + sigma z)" in plots.SIGMA_TITLE
    assert "increase of the train error under multiplicative noise" in built["curves"].layout.title.text
    assert "local energy" in built["curves"].layout.yaxis.title.text
    assert "largest sigma" in built["scatter"].layout.xaxis.title.text
    assert "Hessian" in built["sharpness"].layout.xaxis.title.text


def test_barrier_legend_states_barrier_and_length_with_units_and_defines_the_barrier():
    fig = figures.barrier_figure(PATHS)
    assert [t.name for t in fig.data] == ["linear (barrier 3.00%, length ‖A − B‖ = 23.2)",
                                          "linear aligned (barrier 0.20%, length ‖A − B′‖ = 20.2)",
                                          "geodesic (barrier 0.00%, length 41.5 rad)"]
    # docs/method.md §7: the raw maximum of the train error, not minus the endpoints
    assert fig.layout.title.text.startswith(plots.BARRIER_DEFINITION) and "minus" not in fig.layout.title.text
    assert figures.barrier_figure(PATHS, error="test").layout.title.text.startswith("test barrier = highest test")
    # the hover gives each point's distance from A in the path's unit
    assert list(fig.data[2].customdata)[-1] == "41.5 rad from A"
    assert list(fig.data[0].customdata)[2] == "‖p − A‖ = 11.6"


def test_lengths_carry_the_unit_of_their_metric():
    assert plots.length_text("geodesic", 41.55) == "41.5 rad"
    assert plots.length_text("linear", 23.25) == "‖A − B‖ = 23.2"
    assert plots.length_text("flip", 812.0) == "812 flipped weights"
    assert plots.length_text("one_bend", 42.4) == "42.4 rad"
    assert plots.length_text("one_bend", 0.04, "linear_aligned") == "0.04 (RMS per parameter)"
    assert plots.length_text("geodesic", None) == "n/a"
    assert "rad" in plots.length_definition("geodesic") and "all parameters" in plots.length_definition("linear")
    assert set(plots.METRIC_UNITS) == set(plots.METRIC_LABELS)


def test_the_barrier_table_shows_lengths_with_units_and_defines_its_columns():
    entries = {kind: {"state": "succeeded", "result_id": None} for kind in PATHS}
    table = paths_view._table(entries, PATHS, "")
    header, body = table.children
    tips = {th.children: th.title for th in header.children.children}
    assert "highest train error" in tips["barrier (train)"] and "rad" in tips["length"]
    cells = {row.id: [td.children for td in row.children] for row in body.children}
    assert cells["barrier-row-geodesic"][3] == "41.5 rad"
    assert cells["barrier-row-linear"][3] == "‖A − B‖ = 23.2"


# --- zero lines -----------------------------------------------------------------------------------------------------

def test_a_path_at_zero_error_is_drawn_above_the_axis_line():
    fig = figures.barrier_figure({"geodesic": PATHS["geodesic"]})
    low, high = fig.layout.yaxis.range
    assert low < 0 < high and fig.layout.yaxis.autorange is not True
    fig = figures.barrier_figure(PATHS)
    low, high = fig.layout.yaxis.range
    assert low < 0 and high >= 3.0  # the highest barrier fits
    report = plots.barrier_profiles(["sgd"], [{"type": "sgd-sgd", "kind": "geodesic", "a": "sgd0", "b": "sgd1",
                                               "data": PATHS["geodesic"]}], "geodesic")
    assert report.layout.yaxis.range[0] < 0
    assert "length 41.5 rad" in report.data[1].name and "barrier 0.00 ± 0.00%" in report.data[1].name
    curves = figures.flatness_curves([{"label": "flat", "data": local_energy(0.0)}])
    assert curves.layout.yaxis.range[0] < 0
    bars = plots.barrier_heights(["sgd"], [{"type": "sgd-sgd", "kind": kind, "a": "sgd0", "b": "sgd1",
                                            "data": PATHS[kind]} for kind in ("linear", "geodesic")],
                                 ["linear", "geodesic"])
    assert [list(t.text) for t in bars.data] == [["3.00%"], ["0.00%"]]  # a bar of height 0 still says so


# --- one look per minimum -------------------------------------------------------------------------------------------

def test_two_minima_of_one_sampler_differ_in_the_flatness_curves_but_keep_its_colour_family():
    styles = plots.minimum_styles(MINIMA)
    sgd = [m for m in MINIMA if m["sampler"] == "sgd"]
    curves = [{"label": m["name"], **styles[m["id"]], "data": local_energy(m["local_energy"])} for m in sgd]
    first, second = figures.flatness_curves(curves).data
    assert (first.line.dash, first.marker.symbol) != (second.line.dash, second.marker.symbol)
    assert first.line.dash != second.line.dash and first.marker.symbol != second.marker.symbol
    assert first.line.color == plots.SAMPLER_COLORS["sgd"] and second.line.color != first.line.color

    def rgb(color: str) -> np.ndarray:
        return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)

    hue = rgb(second.line.color) / max(rgb(second.line.color).sum(), 1)  # a shade: the same proportions of r, g, b
    assert np.allclose(hue, rgb(first.line.color) / rgb(first.line.color).sum(), atol=0.03)
    # the first minimum of every sampler keeps the sampler's own colour; the look depends on the name, not the order
    assert styles["2"]["color"] == plots.SAMPLER_COLORS["rsgd"]
    assert plots.minimum_styles(MINIMA[::-1]) == styles


def test_flatness_scatter_labels_each_point_with_its_name_without_overprint():
    styles = plots.minimum_styles(MINIMA)
    fig, _ = plots.flatness_scatter(MINIMA, styles=styles)
    assert [list(t.text) for t in fig.data] == [[t.name] for t in fig.data]
    assert sorted(t.name for t in fig.data) == sorted(m["name"] for m in MINIMA)
    by_name = {t.name: t for t in fig.data}
    a, b = by_name["sgd-0"], by_name["sgd-1"]
    assert a.marker.symbol != b.marker.symbol  # two sgd minima
    assert a.textposition != b.textposition  # nearly the same point: the labels go to different sides
    assert a.legendgroup == b.legendgroup == "sgd"
    assert "sgd-0" in a.hovertemplate and "test error" in a.hovertemplate and "train error" in a.hovertemplate
    static, _ = plots.flatness_scatter(MINIMA, static=True)
    assert all(t.mode == "markers+text" for t in static.data)


# --- log axes -------------------------------------------------------------------------------------------------------

def powers_of_ten_or_1_2_5(values) -> bool:
    for v in values:
        exponent = math.floor(math.log10(v) + 1e-9)
        if not any(math.isclose(v, m * 10.0 ** exponent, rel_tol=1e-9) for m in (1, 2, 5)):
            return False
    return True


def test_a_wide_local_energy_axis_is_logarithmic_with_readable_ticks():
    fig, _ = plots.flatness_scatter(MINIMA)  # 0.25% .. 6.5%: a factor of 26
    axis = fig.layout.xaxis
    assert axis.type == "log" and axis.tickmode == "array" and "log scale" in axis.title.text
    assert powers_of_ten_or_1_2_5(axis.tickvals)
    assert list(axis.ticktext) == [f"{v:g}" for v in axis.tickvals]
    low, high = axis.range
    assert all(low <= math.log10(v) <= high for v in axis.tickvals) and len(axis.tickvals) >= 3
    narrow, _ = plots.flatness_scatter(MINIMA[:3])  # 0.25% .. 0.55%: linear
    assert narrow.layout.xaxis.type != "log"
    wide = plots.log_axis([0.001, 0.02, 3.0])
    assert wide["tickvals"] == pytest.approx([0.001, 0.01, 0.1, 1.0]) and wide["ticktext"] == ["0.001", "0.01", "0.1",
                                                                                                 "1"]
    assert plots.log_axis([1.0, 1e6])["ticktext"][-2:] == ["10<sup>5</sup>", "10<sup>6</sup>"]
    assert plots.log_axis([0.0, 1.0]) is None and plots.log_axis([-1.0, 100.0]) is None


def test_sharpness_scatter_shares_the_looks_and_turns_logarithmic_when_wide():
    minima = [{**m, "top_eigenvalue": value, "hessian_trace": 4.2} for m, value in zip(MINIMA, (1.0, 1.2, 2.0, 80.0),
                                                                                       strict=True)]
    styles = plots.minimum_styles(MINIMA)
    fig, _ = plots.sharpness_scatter(minima, styles=styles)
    by_name = {t.name: t for t in fig.data}
    assert by_name["sgd-1"].marker.symbol == styles["1"]["symbol"] != by_name["sgd-0"].marker.symbol
    assert fig.layout.xaxis.type == "log" and powers_of_ten_or_1_2_5(fig.layout.xaxis.tickvals)
    assert by_name["adv-3"].meta == "4.2" and "%{meta}" in by_name["adv-3"].hovertemplate


# --- the study report -----------------------------------------------------------------------------------------------

def test_report_figures_carry_units():
    tags = ["sgd0", "sgd1"]
    minima = [{"tag": t, "label": "sgd", "seed": i, "id": f"id{i}", "name": t, "train_error": 0.0,
               "test_error": 0.03, "local_energy": 0.005 + 0.001 * i, "top_eigenvalue": None, "hessian_trace": None}
              for i, t in enumerate(tags)]
    bend = {"profiles": [PATHS["geodesic"], PATHS["geodesic"]], "barrier": 0.0, "kind": "geodesic",
            "distance_to_a": 20.0, "distance_to_b": 21.0}
    variant = VariantData(
        name="", labels=["sgd"], minima=minima, flatness={t: local_energy(0.005) for t in tags},
        distances={"tags": tags, "matrices": {"geodesic": [[0, 41.5], [41.5, 0]], "raw": [[0, 0.05], [0.05, 0]]}},
        paths=[{"type": "sgd-sgd", "kind": "geodesic", "a": "sgd0", "b": "sgd1", "data": PATHS["geodesic"]},
               {"type": "sgd-sgd", "kind": "one_bend", "a": "sgd0", "b": "sgd1", "data": bend}])
    ((_, figs, _, _),) = build_figures(ReportData(study={}, variants=[variant]))
    for fig in figs:
        if fig.section == "Distances":
            unit = plots.METRIC_UNITS["geodesic" if "geodesic" in fig.title else "raw"]
            assert unit in fig.figure.data[0].colorbar.title.text
            continue
        for title in titles(fig.figure):
            assert any(word in title for word in UNIT_WORDS) or title.startswith("pair"), (fig.title, title)
    bends = next(f for f in figs if f.title == "Bend distances").figure
    assert "rad" in bends.layout.yaxis.title.text
