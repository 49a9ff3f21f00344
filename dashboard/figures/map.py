"""The minima map: positions from pairwise distances (MDS, aligned to the previous layout) and its scatter figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.dashboard.mds import classical_mds, procrustes_align
from toroid.plots import (
    base_layout,
    by_sampler,
    percent,
    sampler_color,
)

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


