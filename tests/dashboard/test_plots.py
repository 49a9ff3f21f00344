"""toroid.plots, the figures and conventions shared by the dashboard and the study report (plain dicts, no browser)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import toroid.plots as plots

ROOT = Path(__file__).resolve().parents[2]


def test_import_plots_needs_no_torch_nor_the_other_layers():
    code = (
        "import sys, toroid.plots\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'toroid.backend', "
        "'toroid.store', 'toroid.worker', 'toroid.dashboard')))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_backend_reaches_the_shared_figures_through_plots_not_the_dashboard():
    code = ("import sys, toroid.backend.services.report\n"
            "assert not [m for m in sys.modules if m.startswith('toroid.dashboard')]\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # main.py mounts the Dash app into the API process when asked to (the composition root): left out here
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "backend").rglob("*.py")
                 if "toroid.dashboard" in p.read_text() and p.name != "main.py"]
    assert offenders == []


def test_kendall_tau_is_scipys_and_none_when_undefined():
    x = [0.01, 0.02, 0.03, 0.05, 0.04, 0.06]
    y = [0.02, 0.03, 0.025, 0.06, 0.05, 0.04]
    want = stats.kendalltau(x, y)
    assert plots.kendall_tau(x, y) == pytest.approx((want.statistic, want.pvalue))
    assert plots.kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx((1.0, stats.kendalltau([1, 2, 3], [1, 2, 3])[1]))
    assert plots.kendall_tau(x[:2], y[:2]) is None  # fewer than 3 points
    assert plots.kendall_tau([1, 1, 1], [1, 2, 3]) is None  # a constant variable


def test_conventions_percent_and_grouping():
    assert plots.sampler_color("rsgd") == plots.SAMPLER_COLORS["rsgd"]
    assert plots.sampler_color(None) == plots.sampler_color("") == plots.UPLOAD_COLOR
    assert plots.sampler_color("my_sampler") == plots.sampler_color("my_sampler")  # stable extra color
    assert (plots.percent(0.01234), plots.percent(0.01234, 3, "g"), plots.percent(None)) == ("1.23%", "1.23%", "n/a")
    assert plots.percent(float("nan")) == "n/a" and plots.percent(0.5, 3, "g") == "50%"
    minima = [{"sampler": "adv"}, {"sampler": None}, {"sampler": "zeta"}, {"sampler": "rsgd"}, {"sampler": "adv"}]
    assert [(s, len(g)) for s, g in plots.by_sampler(minima)] == [("rsgd", 1), ("adv", 2), ("zeta", 1), ("", 1)]
    assert [s for s, _ in plots.by_sampler(minima, order=["adv", "sgd", "rsgd"])] == ["adv", "rsgd"]
    assert plots.mean_std([1.0, 3.0, None, float("nan")]) == (2.0, 1.0)
    assert all(np.isnan(plots.mean_std([])))


def path(ptype: str, kind: str, errors: list[float]) -> dict:
    x = np.linspace(0, 1, len(errors)).tolist()
    return {"type": ptype, "kind": kind, "a": ptype.split("-")[0] + "0", "b": ptype.split("-")[1] + "1",
            "data": {"x": x, "distance": x, "train_error": errors, "test_error": errors, "barrier": max(errors)}}


def bend(ptype: str, first: list[float], second: list[float]) -> dict:
    segments = [path(ptype, "geodesic", first)["data"], path(ptype, "geodesic", second)["data"]]
    return {"type": ptype, "kind": "one_bend", "a": "rsgd0", "b": "sgd1",
            "data": {"profiles": segments, "barrier": max(first + second), "kind": "geodesic",
                     "distance_to_a": 1.0, "distance_to_b": 3.0}}


PATHS = [path("sgd-sgd", "linear", [0, 0.4, 0]), path("rsgd-sgd", "linear", [0, 0.2, 0]),
         path("rsgd-sgd", "linear", [0, 0.4, 0]), path("rsgd-sgd", "geodesic", [0, 0.1, 0]),
         bend("rsgd-sgd", [0, 0.01, 0.02], [0.02, 0.03, 0])]


def test_barrier_profiles_draw_a_band_and_a_mean_per_pair_type_in_sampler_order():
    fig = plots.barrier_profiles(["rsgd", "sgd"], PATHS, "linear")
    assert [t.name for t in fig.data if t.showlegend is not False] == [
        "rsgd-sgd (2 pairs): barrier 30.00 ± 10.00%", "sgd-sgd (1 pairs): barrier 40.00 ± 0.00%"]
    band, mean = fig.data[0], fig.data[1]
    assert band.fill == "toself" and list(mean.y) == pytest.approx([0, 30, 0])  # mean of 20% and 40%
    assert list(band.y) == pytest.approx([0, 40, 0, 0, 20, 0])  # mean +- std, there and back
    assert mean.line.color == plots.SAMPLER_COLORS["sgd"] and fig.data[3].line.dash == "dash"
    assert fig.layout.title.text.startswith("Train error along linear paths")
    bent = plots.barrier_profiles(["rsgd", "sgd"], PATHS, "one_bend")
    assert list(bent.data[1].x) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])  # the report puts the bend at 0.5
    assert bent.layout.xaxis.title.text == "position x along the path (0 = A, bend at 0.5, 1 = B)"
    assert "length 4 rad" in bent.data[1].name  # the bend's distances to A and B, geodesic


def test_barrier_heights_and_bend_distances():
    fig = plots.barrier_heights(["rsgd", "sgd"], PATHS, ["linear", "geodesic"])
    assert [t.name for t in fig.data] == ["linear", "geodesic"]
    assert list(fig.data[0].x) == ["rsgd-sgd", "sgd-sgd"]
    assert list(fig.data[0].y) == pytest.approx([30, 40]) and list(fig.data[0].error_y.array) == pytest.approx([10, 0])
    assert list(fig.data[1].y) == [pytest.approx(10), None]
    assert fig.data[1].marker.color == plots.KIND_COLORS["geodesic"]
    bars = plots.bend_distances(PATHS)
    assert [(t.name, list(t.y)) for t in bars.data] == [("bend to A", [1.0]), ("bend to B", [3.0])]
    assert list(bars.data[0].x) == ["rsgd0-sgd1"]


def test_path_points_place_the_bend_by_length_or_where_asked():
    data = PATHS[-1]["data"]
    assert plots.path_points(data)["bend_at"] == 0.25
    assert plots.path_points(data, bend_at=0.5)["distance"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


MINIMA = [{"tag": f"{label}{seed}", "label": label, "id": f"id{label}{seed}", "test_error": test, "local_energy": le}
          for label, seed, test, le in [("rsgd", 0, 0.02, 0.001), ("rsgd", 1, 0.025, 0.002), ("sgd", 0, 0.03, 0.004),
                                        ("sgd", 1, 0.028, 0.003), ("adv", 0, 0.05, None)]]


def test_flatness_bands_average_the_seeds_of_each_sampler():
    curves = {m["tag"]: {"sigmas": [0, 0.1], "mean": [0, m["local_energy"]]} for m in MINIMA[:4]}
    fig = plots.flatness_bands(["rsgd", "sgd", "adv"], MINIMA, curves)
    assert [t.name for t in fig.data if t.name] == ["rsgd (2 seeds)", "sgd (2 seeds)"]
    assert list(fig.data[1].y) == pytest.approx([0, 0.15]) and fig.data[1].line.color == plots.SAMPLER_COLORS["rsgd"]
    assert fig.layout.xaxis.title.text == plots.SIGMA_TITLE


def test_flatness_scatter_serves_the_report_and_the_dashboard():
    report, tau = plots.flatness_scatter(MINIMA, key="label", text="tag", order=["sgd", "rsgd"], static=True)
    want = stats.kendalltau([0.001, 0.002, 0.004, 0.003], [0.02, 0.025, 0.03, 0.028])
    assert tau == pytest.approx((want.statistic, want.pvalue))
    # one trace per minimum, grouped under its sampler in the sampler order, named and labelled in place
    assert [(t.legendgroup, t.name, list(t.text), t.mode) for t in report.data] == [
        ("sgd", "sgd0", ["sgd0"], "markers+text"), ("sgd", "sgd1", ["sgd1"], "markers+text"),
        ("rsgd", "rsgd0", ["rsgd0"], "markers+text"), ("rsgd", "rsgd1", ["rsgd1"], "markers+text")]
    assert report.layout.title.text == f"Local energy vs test error (Kendall tau {tau[0]:.2f}, p {tau[1]:.2g})"
    assert report.layout.height == 420
    dashboard, same = plots.flatness_scatter([{**m, "sampler": m["label"]} for m in MINIMA])
    assert same == pytest.approx(tau)
    assert [t.legendgroup for t in dashboard.data] == ["rsgd", "rsgd", "sgd", "sgd"]
    assert dashboard.data[0].legendgrouptitle.text == "rsgd" and dashboard.data[0].mode == "markers+text"
    assert "Kendall tau = " in dashboard.layout.title.text and dashboard.layout.height is None
    assert plots.flatness_scatter([])[0].layout.annotations[0].text.startswith("No minimum")
    assert len(plots.flatness_scatter([], static=True)[0].data) == 0


def test_matrix_heatmap_static_and_interactive():
    matrix = [[0, 1], [1, 0]]
    static = plots.matrix_heatmap(matrix, ["a0", "b0"], "Distances: raw", static=True)
    heat = static.data[0]
    assert (heat.type, list(heat.x), heat.texttemplate) == ("heatmap", ["a0", "b0"], None)
    assert static.layout.title.text == "Distances: raw" and static.layout.yaxis.autorange == "reversed"
    live = plots.matrix_heatmap(matrix, ["a0", "b0"], "raw")
    assert live.data[0].texttemplate == "%{z:.3g}" and live.layout.yaxis.scaleanchor == "x"
    assert static.data[0].colorscale != live.data[0].colorscale
