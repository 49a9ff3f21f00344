"""The dashboard's own Plotly figure builders: API records and result JSON in, ``go.Figure`` out (no HTTP, no Dash).

What the study report draws too (sampler and path-kind colours and labels, the layout, Kendall's tau, path
normalization, the local energy vs test error scatter, the distance heatmap) lives in :mod:`toroid.plots`.
Errors arrive as fractions in [0, 1] (the API's convention) and are shown in percent. The builders follow the paper's
plots (docs/method.md):
paths against the distance along the path rescaled to [0, 1] with the barrier (highest train error,
raw max) in the legend (sec. 7); local-energy curves dE_train(sigma) with the std over noise samples as error bars
(sec. 6); distance matrices ordered by sampler (sec. 5); the minima map; the torus slice through two minima on a 3-D
torus and unrolled, and the Gram-Schmidt section through three minima (sec. 7); training curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.dashboard.mds import classical_mds, procrustes_align
from toroid.plots import (
    KIND_COLORS,
    KIND_LABELS,
    METRIC_LABELS,
    base_layout,
    by_sampler,
    empty_figure,
    matrix_heatmap,
    path_points,
    percent,
    sampler_color,
    sampler_rank,
)

__all__ = [
    "barrier_figure",
    "barrier_rows",
    "distance_heatmap",
    "flatness_curves",
    "kendall_text",
    "map_positions",
    "minima_map",
    "order_by_sampler",
    "section_contour",
    "torus_embedding",
    "torus_heatmap",
    "torus_partial",
    "torus_surface",
    "training_curves",
]

SELECTION_LABELS = ("A", "B", "C")


# --- minima map -----------------------------------------------------------------------------------------------------

def map_positions(
    minima: Sequence[Mapping[str, Any]],
    distances: Mapping[str, Any] | None = None,
    variant: str = "geodesic",
    previous: Mapping[str, Sequence[float]] | None = None,
) -> tuple[dict[str, list[float]], str, list[str]]:
    """Planar positions of ``minima`` (id -> [x, y]), the method used (``"mds"`` or ``"error"``) and the pending ids.

    With a distances result (``{"ids", "matrices": {variant: NxN}}``) covering at least two of the minima: classical
    MDS of the ``variant`` matrix restricted to them, turned (Procrustes) to match ``previous`` positions so that the
    map stays still; minima the result does not cover yet (just added, their distances still computing) are
    *pending*: lined up under the map. Otherwise the fallback layout: train error vs test error, in percent (uploads
    whose evaluation job has not finished are pending there).
    """
    ids = [m["id"] for m in minima]
    if distances and len(ids) >= 2:
        matrix = (distances.get("matrices") or {}).get(variant)
        index = {mid: i for i, mid in enumerate(distances.get("ids") or [])}
        covered = [mid for mid in ids if mid in index]
        if matrix is not None and len(covered) >= 2:
            full = np.asarray(matrix, dtype=np.float64)
            rows = [index[mid] for mid in covered]
            sub = full[np.ix_(rows, rows)]
            if np.all(np.isfinite(sub)):
                coords = classical_mds(sub, dims=2)
                positions = {mid: [float(x), float(y)] for mid, (x, y) in zip(covered, coords, strict=True)}
                if previous:
                    positions = procrustes_align(positions, previous)
                pending = [mid for mid in ids if mid not in index]
                return _line_up(positions, pending), "mds", pending
    known = [m for m in minima if m.get("train_error") is not None and m.get("test_error") is not None]
    positions = {m["id"]: [100.0 * float(m["train_error"]), 100.0 * float(m["test_error"])] for m in known}
    pending = [mid for mid in ids if mid not in positions]  # uploads whose evaluation has not finished
    return _line_up(positions, pending), "error", pending


def _line_up(positions: dict[str, list[float]], pending: Sequence[str]) -> dict[str, list[float]]:
    """``positions`` plus the ``pending`` ids lined up under them (or on a line of their own when none is placed)."""
    if not pending:
        return positions
    if positions:
        xy = np.asarray(list(positions.values()))
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    else:
        (x0, y0), (x1, y1) = (0.0, 0.0), (1.0, 0.0)
    span = max(x1 - x0, y1 - y0, 1e-9)
    xs = np.linspace(x0, x1, len(pending) + 2)[1:-1] if len(pending) > 1 else [(x0 + x1) / 2]
    for mid, x in zip(pending, xs, strict=True):
        positions[mid] = [float(x), float(y0 - 0.2 * span)]
    return positions


def _flatness_sizes(minima: Sequence[Mapping[str, Any]], small: float = 10.0, large: float = 26.0) -> list[float]:
    """Marker sizes: flatter (smaller local energy) is bigger; minima without a flatness result get a middle size."""
    values = [m.get("local_energy") for m in minima]
    known = [v for v in values if v is not None]
    if not known:
        return [14.0] * len(minima)
    lo, hi = min(known), max(known)
    sizes = []
    for v in values:
        if v is None:
            sizes.append(14.0)
        elif hi - lo <= 1e-12:
            sizes.append((small + large) / 2)
        else:
            sizes.append(large - (large - small) * (v - lo) / (hi - lo))
    return sizes


def error_text(minimum: Mapping[str, Any], field: str) -> str:
    """A minimum's train or test error as a percent, or what its evaluation is doing (uploads are evaluated by a
    job: ``evaluation`` is ``pending`` or ``failed`` until it succeeds)."""
    value = minimum.get(field)
    if value is not None:
        return percent(value)
    return "evaluation failed" if minimum.get("evaluation") == "failed" else "evaluating…"


def _hover_data(minimum: Mapping[str, Any]) -> list[Any]:
    local_energy = minimum.get("local_energy")
    return [
        minimum["id"],
        minimum.get("name") or minimum["id"],
        minimum.get("architecture") or "?",
        minimum.get("dataset") or "?",
        error_text(minimum, "train_error"),
        error_text(minimum, "test_error"),
        "not computed" if local_energy is None else percent(local_energy, 3),
        minimum.get("sampler") or "upload",
    ]


_MAP_HOVER = (
    "<b>%{customdata[1]}</b><br>%{customdata[2]} on %{customdata[3]} · %{customdata[7]}<br>"
    "train error %{customdata[4]} · test error %{customdata[5]}<br>local energy %{customdata[6]}<extra></extra>"
)


def minima_map(
    minima: Sequence[Mapping[str, Any]],
    positions: Mapping[str, Sequence[float]],
    method: str,
    selection: Mapping[str, Any] | None = None,
    color_by: str = "sampler",
    variant: str = "geodesic",
    pair_distance: float | None = None,
) -> go.Figure:
    """Every minimum as a clickable point (``customdata[0]`` is its id), colored by sampler (size: flatness) or by
    local energy, with the selected minima A, B (and C) ringed and A-B joined by a dashed line.
    """
    fig = go.Figure()
    placed = [m for m in minima if m["id"] in positions]
    label_points = len(placed) <= 16
    ringed = {mid for mid in ((selection or {}).get(k) for k in ("a", "b", "c")) if mid}
    where = _label_sides(placed, positions)
    sizes = dict(zip([m["id"] for m in placed], _flatness_sizes(placed), strict=True))
    if color_by == "flatness":
        known = [m for m in placed if m.get("local_energy") is not None]
        unknown = [m for m in placed if m.get("local_energy") is None]
        if known:
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in known], y=[positions[m["id"]][1] for m in known],
                mode="markers+text" if label_points else "markers", name="local energy", showlegend=False,
                text=[_point_label(m, ringed) for m in known], textposition=[where[m["id"]] for m in known],
                textfont=dict(size=11, color="#6b7280"),
                customdata=[_hover_data(m) for m in known], hovertemplate=_MAP_HOVER,
                marker=dict(size=16, color=[100.0 * m["local_energy"] for m in known], colorscale="Viridis",
                            line=dict(width=1, color="white"),
                            colorbar=dict(title=dict(text="local energy (%)"), thickness=12)),
            ))
        if unknown:
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in unknown], y=[positions[m["id"]][1] for m in unknown],
                mode="markers+text" if label_points else "markers", name="flatness not computed",
                text=[_point_label(m, ringed) for m in unknown], textposition=[where[m["id"]] for m in unknown],
                textfont=dict(size=11, color="#9aa0a6"),
                customdata=[_hover_data(m) for m in unknown], hovertemplate=_MAP_HOVER,
                marker=dict(size=12, color="#c4c8cf", line=dict(width=1, color="white")),
            ))
    else:
        for sampler, members in by_sampler(placed):
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in members], y=[positions[m["id"]][1] for m in members],
                mode="markers+text" if label_points else "markers", name=sampler or "upload",
                text=[_point_label(m, ringed) for m in members], textposition=[where[m["id"]] for m in members],
                textfont=dict(size=11, color="#6b7280"),
                customdata=[_hover_data(m) for m in members], hovertemplate=_MAP_HOVER,
                marker=dict(size=[sizes[m["id"]] for m in members], color=sampler_color(sampler or None),
                            opacity=0.9, line=dict(width=1.5, color="white")),
            ))
    chosen = [(label, (selection or {}).get(key)) for label, key in zip(SELECTION_LABELS, ("a", "b", "c"), strict=True)]
    chosen = [(label, mid) for label, mid in chosen if mid and mid in positions]
    names = {m["id"]: m.get("name") or m["id"] for m in minima}
    if len(chosen) >= 2 and chosen[0][0] == "A" and chosen[1][0] == "B":
        (xa, ya), (xb, yb) = positions[chosen[0][1]], positions[chosen[1][1]]
        fig.add_trace(go.Scatter(
            x=[xa, xb], y=[ya, yb], mode="lines", hoverinfo="skip", showlegend=False, name="pair",
            line=dict(color="#1f2430", width=1.5, dash="dash"),
        ))
        if pair_distance is not None:
            fig.add_annotation(x=(xa + xb) / 2, y=(ya + yb) / 2, text=f"d = {pair_distance:.3g}", showarrow=False,
                               yshift=10, font=dict(size=12, color="#1f2430"), bgcolor="rgba(255,255,255,0.7)")
    if chosen:
        fig.add_trace(go.Scatter(
            x=[positions[mid][0] for _, mid in chosen], y=[positions[mid][1] for _, mid in chosen],
            mode="markers+text", name="selected", showlegend=False, hoverinfo="skip",
            text=[f"{label} · {names[mid]}" for label, mid in chosen], textposition="top center",
            textfont=dict(size=12, color="#1f2430"),
            marker=dict(size=30, symbol="circle-open", color="#1f2430", line=dict(width=2.5)),
        ))
    if method == "mds":
        what = "geodesic (normalized + aligned)" if variant == "geodesic" else f"{variant.replace('_', ' ')} Euclidean"
        base_layout(fig, clickmode="event", hovermode="closest", dragmode="pan", margin=dict(t=56),
                     title=dict(text=f"Minima by {what} distance (classical MDS)", x=0.01, y=0.98, yanchor="top",
                                font=dict(size=14)))
        fig.update_xaxes(title_text="MDS 1", zeroline=False, showticklabels=False)
        fig.update_yaxes(title_text="MDS 2", zeroline=False, showticklabels=False, scaleanchor="x", scaleratio=1)
    else:
        base_layout(fig, clickmode="event", hovermode="closest", dragmode="pan", margin=dict(t=56),
                     title=dict(text="Minima by error (distances not computed yet)", x=0.01, y=0.98, yanchor="top",
                                font=dict(size=14)))
        fig.update_xaxes(title_text="train error (%)", zeroline=False)
        fig.update_yaxes(title_text="test error (%)", zeroline=False)
    if placed:
        xy = np.asarray([positions[m["id"]] for m in placed], dtype=np.float64)
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        pad = 0.15 * max(x1 - x0, y1 - y0, 1e-6 if method == "mds" else 1.0)
        fig.update_xaxes(range=[x0 - pad, x1 + pad])
        fig.update_yaxes(range=[y0 - pad, y1 + pad])
    fig.update_layout(uirevision=method + variant)
    return fig


def _label_sides(placed: Sequence[Mapping[str, Any]], positions: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """Label position per point: under it, or above it when an earlier point nearby already has its label under."""
    if not placed:
        return {}
    xy = np.asarray([positions[m["id"]] for m in placed], dtype=np.float64)
    near = 0.06 * max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 1e-12)
    sides: dict[str, str] = {}
    below: list[np.ndarray] = []
    for m, point in zip(placed, xy, strict=True):
        crowded = any(np.linalg.norm(point - other) < near for other in below)
        sides[m["id"]] = "top center" if crowded else "bottom center"
        if not crowded:
            below.append(point)
    return sides


def _point_label(minimum: Mapping[str, Any], ringed: set[str]) -> str:
    """A point's name under it, except for the selected ones (their ring carries 'A · name')."""
    return "" if minimum["id"] in ringed else (minimum.get("name") or minimum["id"])


# --- paths and barriers ---------------------------------------------------------------------------------------------

def barrier_rows(paths: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per path kind: {"kind", "label", "barrier", "test_barrier", "length", "points", "complete"}."""
    rows = []
    for kind, data in paths.items():
        p = path_points(data)
        rows.append({"kind": kind, "label": KIND_LABELS.get(kind, kind), "barrier": p["barrier"],
                     "test_barrier": p["test_barrier"], "length": p["length"], "points": p["points"],
                     "complete": p["complete"]})
    return rows


def barrier_figure(
    paths: Mapping[str, Mapping[str, Any]], error: str = "train", expected_points: int = 33
) -> go.Figure:
    """Error along each path vs normalized distance; the legend names each path's barrier.

    ``paths`` maps a kind (linear, linear_aligned, geodesic, one_bend) to a finished result or to a job's partial
    points (drawn as they stream in, the legend counting them). ``error`` is ``train``, ``test`` or ``both``.
    """
    if error not in ("train", "test", "both"):
        raise ValueError(f"error must be 'train', 'test' or 'both', got {error!r}")
    fig = go.Figure()
    for kind, data in paths.items():
        p = path_points(data)
        if not p["train_error"]:
            continue
        label = KIND_LABELS.get(kind, kind)
        color = KIND_COLORS.get(kind, "#444")
        if p["complete"]:
            value = p["test_barrier"] if error == "test" else p["barrier"]
            what = "test barrier" if error == "test" else "barrier"
            name = f"{label} ({what} {percent(value)})"
        else:
            total = p["points"] or expected_points
            name = f"{label} (computing… {len(p['train_error'])}/{total} points)"
        series = []
        if error in ("train", "both"):
            series.append(("train", p["train_error"], "solid"))
        if error in ("test", "both") and p["test_error"]:
            series.append(("test", p["test_error"], "dash" if error == "both" else "solid"))
        for i, (which, values, dash) in enumerate(series):
            fig.add_trace(go.Scatter(
                x=p["distance"][: len(values)], y=[100.0 * v for v in values],
                mode="lines+markers", name=name if i == 0 else f"{label} (test)",
                legendgroup=kind, showlegend=True,
                line=dict(color=color, width=3 if kind == "geodesic" else 2, dash=dash),
                marker=dict(size=5), meta=[kind, which],
                hovertemplate=f"{label} · {which} error %{{y:.2f}}%<br>distance %{{x:.3f}}<extra></extra>",
            ))
        if p["bend_at"] is not None:
            k = int(np.argmin([abs(d - p["bend_at"]) for d in p["distance"]]))
            fig.add_trace(go.Scatter(
                x=[p["distance"][k]], y=[100.0 * p["train_error"][k]], mode="markers", showlegend=False,
                marker=dict(symbol="diamond", size=12, color=color, line=dict(width=1, color="white")),
                hovertemplate="bend point<extra></extra>",
            ))
    ylabel = {"train": "train error (%)", "test": "test error (%)", "both": "error (%)"}[error]
    legend = dict(orientation="h", y=1.02, yanchor="bottom", x=0, xanchor="left")
    base_layout(fig, hovermode="x unified", legend=legend)
    fig.update_xaxes(title_text="normalized distance along the path", range=[-0.02, 1.02])
    fig.update_yaxes(title_text=ylabel, rangemode="tozero")
    fig.update_layout(uirevision="paths")
    return fig


# --- flatness -------------------------------------------------------------------------------------------------------

def flatness_curves(curves: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Local energy dE_train(sigma) (percent) with the standard error of each mean as error bars (what decides
    whether two curves differ; the paper's bars, the std over noise samples, are in the hover with the sample count
    and whether the sample cap stopped that sigma), one trace per minimum.

    ``curves``: [{"label", "color", "data": LocalEnergy dict}] (docs/method.md §6).
    """
    fig = go.Figure()
    binary = False
    for curve in curves:
        data = curve["data"]
        binary = binary or bool(data.get("binary"))
        count = len(data["sigmas"])
        capped = list(data.get("capped") or [False] * count)
        extra = [[100.0 * se, 100.0 * std, n, " · sample cap reached" if cap else ""]
                 for se, std, n, cap in zip(data["stderr"], data["std"], data.get("samples") or [None] * count, capped,
                                            strict=False)]
        fig.add_trace(go.Scatter(
            x=data["sigmas"], y=[100.0 * v for v in data["mean"]],
            error_y=dict(type="data", array=[100.0 * v for v in data["stderr"]], visible=True, thickness=1.2,
                         width=3),
            mode="lines+markers", name=curve["label"], line=dict(color=curve.get("color"), width=2),
            customdata=extra,
            hovertemplate=f"{curve['label']}<br>sigma %{{x:.3g}} · dE %{{y:.3f}}% ± %{{customdata[0]:.3f}} (SE)"
                          "<br>std %{customdata[1]:.3f}% · n %{customdata[2]}%{customdata[3]}<extra></extra>",
        ))
    base_layout(fig, hovermode="closest")
    fig.update_xaxes(title_text="flip fraction" if binary else "sigma (multiplicative Gaussian noise)")
    fig.update_yaxes(title_text="local energy dE_train (%) ± standard error", rangemode="tozero")
    return fig


def kendall_text(tau: tuple[float, float] | None, n: int, alpha: float = 0.05) -> str:
    """The sentence under the flatness scatter: Kendall's tau between the local energy at the largest sigma and the
    test error with its p-value and the number of minima. A direction is stated only when p < ``alpha``; otherwise
    the sentence says the correlation is not significant and draws no conclusion (docs/dashboard.md)."""
    if tau is None:
        return (f"Kendall tau between local energy and test error needs 3 minima with a flatness result and a test "
                f"error ({n} so far): use 'Compute for all minima'.")
    value, p = tau
    head = f"Kendall tau (local energy at the largest sigma vs test error) {value:.2f} (p = {p:.2g}, n = {n})"
    if not p < alpha:  # a NaN p-value is not significant either
        return f"{head}: not significant at {alpha:g}."
    if value > 0:
        reading = "sharper minima (higher local energy) have higher test error in these minima"
    elif value < 0:
        reading = "flatter minima (lower local energy) have higher test error in these minima"
    else:
        reading = "no association"
    return f"{head}: significant at {alpha:g}; {reading}."


# --- distances ------------------------------------------------------------------------------------------------------

def order_by_sampler(ids: Sequence[str], minima_by_id: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Indices of ``ids`` sorted by sampler (flattest first: rsgd, sgd, sam, entropy_sgd, adv, ...) then name."""
    def key(i: int) -> tuple:
        m = minima_by_id.get(ids[i], {})
        return (*sampler_rank(m.get("sampler")), m.get("name") or ids[i])

    return sorted(range(len(ids)), key=key)


def distance_heatmap(
    distances: Mapping[str, Any], variant: str, minima_by_id: Mapping[str, Mapping[str, Any]]
) -> go.Figure:
    """The ``variant`` distance matrix as a heatmap, rows and columns ordered by sampler."""
    matrices = distances.get("matrices") or {}
    if variant not in matrices:
        raise ValueError(f"distance variant {variant!r} not in the result; available: {sorted(matrices)}")
    ids = list(distances["ids"])
    names = list(distances.get("names") or ids)
    order = order_by_sampler(ids, minima_by_id)
    matrix = np.asarray(matrices[variant], dtype=np.float64)[np.ix_(order, order)]
    labels = []
    for i in order:
        m = minima_by_id.get(ids[i], {})
        labels.append(f"{m.get('name') or names[i]} ({m.get('sampler') or 'upload'})")
    if variant == "geodesic":
        title = "geodesic distance (normalized + aligned)"
    else:
        title = METRIC_LABELS.get(variant, f"Euclidean, {variant.replace('_', ' ')}")
    return matrix_heatmap(matrix, labels, title)


# --- torus and section ----------------------------------------------------------------------------------------------

def torus_embedding(
    phi1: np.ndarray | Sequence[float], phi2: np.ndarray | Sequence[float], major: float = 2.0, minor: float = 1.0,
    lift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3-D points of the torus at angles (phi1 around the ring, phi2 around the tube); ``lift`` moves them off the
    surface along its normal (to draw markers and curves on top of it)."""
    p1 = np.asarray(phi1, dtype=np.float64)
    p2 = np.asarray(phi2, dtype=np.float64)
    tube = minor + lift
    ring = major + tube * np.cos(p2)
    return ring * np.cos(p1), ring * np.sin(p1), tube * np.sin(p2)


def _closed_grid(slice_data: Mapping[str, Any], error: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The periodic grid with its first row/column repeated at +2 pi, so the surface closes."""
    phi1 = np.asarray(slice_data["phi1"], dtype=np.float64)
    phi2 = np.asarray(slice_data["phi2"], dtype=np.float64)
    z = np.asarray(slice_data[f"{error}_error"], dtype=np.float64)
    if z.shape != (phi2.size, phi1.size):
        raise ValueError(f"torus slice: {error}_error has shape {z.shape}, expected (len(phi2), len(phi1)) = "
                         f"({phi2.size}, {phi1.size})")
    phi1 = np.append(phi1, phi1[0] + 2 * math.pi)
    phi2 = np.append(phi2, phi2[0] + 2 * math.pi)
    z = np.vstack([z, z[:1]])
    z = np.hstack([z, z[:, :1]])
    return phi1, phi2, z


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    return (labels or {}).get(name, name)


def torus_surface(slice_data: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                  error: str = "train") -> go.Figure:
    """The torus slice drawn on a 3-D torus, colored by error (%), with the minima and the geodesic between A and B
    (a straight segment in torus coordinates, hence a helix-like curve on the surface)."""
    phi1, phi2, z = _closed_grid(slice_data, error)
    grid1, grid2 = np.meshgrid(phi1, phi2)
    x, y, zz = torus_embedding(grid1, grid2)
    fig = go.Figure(go.Surface(
        x=x, y=y, z=zz, surfacecolor=100.0 * z, colorscale="Viridis", cmin=0.0,
        colorbar=dict(title=dict(text=f"{error} error (%)"), thickness=12, len=0.7),
        customdata=np.dstack([grid1, grid2, 100.0 * z]),
        hovertemplate=(
            "phi1 %{customdata[0]:.2f} · phi2 %{customdata[1]:.2f}<br>error %{customdata[2]:.2f}%<extra></extra>"
        ),
        name="torus", showscale=True,
    ))
    geodesic = slice_data.get("geodesic") or []
    if geodesic:
        g = np.asarray(geodesic, dtype=np.float64)
        gx, gy, gz = torus_embedding(g[:, 0], g[:, 1], lift=0.03)
        fig.add_trace(go.Scatter3d(x=gx, y=gy, z=gz, mode="lines", name="geodesic",
                                   line=dict(color="#ff5a5f", width=7), hoverinfo="name"))
    minima = slice_data.get("minima") or {}
    if minima:
        names = list(minima)
        coords = np.asarray([minima[n] for n in names], dtype=np.float64)
        mx, my, mz = torus_embedding(coords[:, 0], coords[:, 1], lift=0.05)
        fig.add_trace(go.Scatter3d(
            x=mx, y=my, z=mz, mode="markers+text", name="minima", text=[_label(n, labels) for n in names],
            marker=dict(size=6, color="#ffffff", line=dict(color="#1f2430", width=3)),
            textfont=dict(color="#1f2430", size=13), hoverinfo="text",
        ))
    axis = dict(visible=False, showbackground=False)
    base_layout(fig, margin=dict(l=0, r=0, t=30, b=0), showlegend=False,
                 scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data",
                            camera=dict(eye=dict(x=1.25, y=1.25, z=1.05))))
    fig.update_layout(uirevision="torus")
    return fig


def torus_partial(partial: Mapping[str, Any], resolution: int) -> dict[str, Any] | None:
    """A torus slice dict from a running torus job's streamed cells (lists ``i``, ``j``, ``train_error``,
    ``test_error``), the cells not computed yet NaN; None when no cell has arrived. Minima and geodesic are only
    known at the end, so they are left empty."""
    cols, rows = partial.get("i") or [], partial.get("j") or []
    train, test = partial.get("train_error") or [], partial.get("test_error") or []
    n = min(len(cols), len(rows), len(train))
    if n == 0 or resolution < 2:
        return None
    grid = np.linspace(0.0, 2 * math.pi, resolution, endpoint=False).tolist()
    train_grid = np.full((resolution, resolution), np.nan)
    test_grid = np.full((resolution, resolution), np.nan)
    for k in range(n):
        i, j = int(cols[k]), int(rows[k])
        if 0 <= i < resolution and 0 <= j < resolution:
            train_grid[j, i] = train[k]
            if k < len(test) and test[k] is not None:
                test_grid[j, i] = test[k]
    return {"phi1": grid, "phi2": grid, "train_error": train_grid.tolist(), "test_error": test_grid.tolist(),
            "minima": {}, "geodesic": [], "construction": "partial", "extra": {"cells": n}}


def _pi_ticks() -> dict[str, Any]:
    values = [0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi]
    return dict(tickvals=values, ticktext=["0", "π/2", "π", "3π/2", "2π"])


def torus_heatmap(slice_data: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                  error: str = "train") -> go.Figure:
    """The same torus slice unrolled onto [0, 2 pi)^2: error heatmap, minima, the geodesic as a straight segment."""
    phi1, phi2, z = _closed_grid(slice_data, error)
    fig = go.Figure(go.Heatmap(
        x=phi1, y=phi2, z=100.0 * z, colorscale="Viridis", zmin=0.0,
        colorbar=dict(title=dict(text=f"{error} error (%)"), thickness=12),
        hovertemplate="phi1 %{x:.2f} · phi2 %{y:.2f}<br>error %{z:.2f}%<extra></extra>",
    ))
    geodesic = slice_data.get("geodesic") or []
    if geodesic:
        g = np.asarray(geodesic, dtype=np.float64)
        fig.add_trace(go.Scatter(x=g[:, 0], y=g[:, 1], mode="lines", name="geodesic",
                                 line=dict(color="#ff5a5f", width=3)))
    minima = slice_data.get("minima") or {}
    if minima:
        names = list(minima)
        fig.add_trace(go.Scatter(
            x=[minima[n][0] for n in names], y=[minima[n][1] for n in names], mode="markers+text", name="minima",
            text=[_label(n, labels) for n in names], textposition="top right",
            textfont=dict(color="#ffffff", size=13),
            marker=dict(size=11, color="#ffffff", line=dict(color="#1f2430", width=2)),
        ))
    base_layout(fig, showlegend=False)
    fig.update_xaxes(title_text="torus angle 1 (first hidden layer)", range=[0, 2 * math.pi], **_pi_ticks())
    fig.update_yaxes(title_text="torus angle 2 (other layers)", range=[0, 2 * math.pi], scaleanchor="x",
                     scaleratio=1, **_pi_ticks())
    return fig


def section_contour(section: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                    error: str = "train") -> go.Figure:
    """Error (%) on the Gram-Schmidt plane through three minima (docs/method.md §7), as filled contours."""
    z = np.asarray(section[f"{error}_error"], dtype=np.float64)
    x, y = section["x"], section["y"]
    if z.shape != (len(y), len(x)):
        raise ValueError(
            f"section: {error}_error has shape {z.shape}, expected (len(y), len(x)) = ({len(y)}, {len(x)})"
        )
    fig = go.Figure(go.Contour(
        x=x, y=y, z=100.0 * z, colorscale="Viridis", zmin=0.0, ncontours=24,
        colorbar=dict(title=dict(text=f"{error} error (%)"), thickness=12),
        hovertemplate="x %{x:.3g} · y %{y:.3g}<br>error %{z:.2f}%<extra></extra>",
        contours=dict(showlines=False),
    ))
    points = section.get("points") or {}
    if points:
        names = list(points)
        fig.add_trace(go.Scatter(
            x=[points[n][0] for n in names], y=[points[n][1] for n in names], mode="markers+text",
            text=[_label(n, labels) for n in names], textposition="top center",
            textfont=dict(color="#ffffff", size=13),
            marker=dict(size=11, color="#ffffff", line=dict(color="#1f2430", width=2)), name="minima",
        ))
    space = section.get("space", "raw")
    base_layout(fig, showlegend=False,
                 title=dict(text=f"Plane through three minima ({space} parameters)", x=0.01, font=dict(size=14)))
    fig.update_xaxes(title_text="u (towards w2)")
    fig.update_yaxes(title_text="v (towards w3, orthogonalized)", scaleanchor="x", scaleratio=1)
    return fig


# --- training -------------------------------------------------------------------------------------------------------

def training_curves(partial: Mapping[str, Any], title: str = "") -> go.Figure:
    """Train/test error (%) and train loss per epoch from a train job's partial results (streamed while it runs).

    When the reported epochs do not increase (a sampler with a preliminary phase, e.g. ADV's confusion training,
    reports several points at epoch 0) the points are drawn in report order instead, and the phase is named.
    """
    epochs = list(partial.get("epoch") or [])
    if not epochs:
        return empty_figure("Training curves appear here as epochs finish.")
    numeric = all(isinstance(e, int | float) for e in epochs)
    increasing = numeric and all(b > a for a, b in zip(epochs[:-1], epochs[1:], strict=True))
    xs = epochs if increasing else list(range(1, len(epochs) + 1))
    fig = go.Figure()
    for key, color in (("train_error", "#3b6fd4"), ("test_error", "#d1495b")):
        values = partial.get(key) or []
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=xs[: len(values)], y=[None if v is None else 100.0 * v for v in values],
                                     mode="lines+markers", name=key.replace("_", " ") + " (%)",
                                     line=dict(color=color), marker=dict(size=4)))
    loss = list(partial.get("train_loss") or [])
    if any(v is not None for v in loss):
        fig.add_trace(go.Scatter(x=xs[: len(loss)], y=loss, mode="lines", name="train loss", yaxis="y2",
                                 line=dict(color="#6b7280", dash="dot")))
    known_loss = [v for v in loss if v is not None]
    phase = partial.get("phase")
    if phase:
        title = f"{title} · phase: {phase}" if title else f"phase: {phase}"
    base_layout(fig, title=dict(text=title, x=0.01, y=0.98, yanchor="top", font=dict(size=14)),
                 hovermode="x unified", margin=dict(t=70),
                 yaxis=dict(title=dict(text="error (%)"), rangemode="tozero"),
                 yaxis2=dict(title=dict(text="train loss"), overlaying="y", side="right", showgrid=False,
                             type="log" if known_loss and min(known_loss) > 0 else "linear"),
                 legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"))
    fig.update_xaxes(title_text="epoch" if increasing else "progress report")
    return fig
