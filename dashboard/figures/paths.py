"""Path profiles between minima: the barrier plot and its table rows (docs/method.md sec. 7), with units: the
position along the path in [0, 1], errors in percent, lengths in their metric's unit (sec. 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.plots import (
    BARRIER_DEFINITION,
    KIND_COLORS,
    KIND_LABELS,
    POSITION_TITLE,
    base_layout,
    length_definition,
    length_text,
    path_points,
    percent,
    zero_visible_range,
)

# --- paths and barriers ---------------------------------------------------------------------------------------------

def _bend_kind(kind: str, data: Mapping[str, Any]) -> str | None:
    """The segments' kind of a one-bend result (its ``kind`` field), else None."""
    return (data.get("kind") or "geodesic") if kind == "one_bend" else None


def barrier_rows(paths: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per path kind: {"kind", "label", "barrier", "test_barrier", "length", "length_text",
    "length_definition", "points", "complete"} (``length_text``: the length with its unit, docs/method.md §7)."""
    rows = []
    for kind, data in paths.items():
        p = path_points(data)
        bend_kind = _bend_kind(kind, data)
        rows.append({"kind": kind, "label": KIND_LABELS.get(kind, kind), "barrier": p["barrier"],
                     "test_barrier": p["test_barrier"], "length": p["length"],
                     "length_text": length_text(kind, p["length"], bend_kind),
                     "length_definition": length_definition(kind, bend_kind), "points": p["points"],
                     "complete": p["complete"]})
    return rows


def _from_a(kind: str, fraction: float, length: float | None, bend_kind: str | None) -> str:
    """How far a point at ``fraction`` of the path lies from A, in the path length's unit (hover)."""
    if length is None:
        return f"{fraction:.3f} of the path"
    if kind in ("linear", "linear_aligned"):
        return f"‖p − A‖ = {fraction * length:.3g}"
    if kind == "flip":
        return f"{round(fraction * length)} weights flipped"
    return f"{length_text(kind, fraction * length, bend_kind)} from A"


def barrier_figure(
    paths: Mapping[str, Mapping[str, Any]], error: str = "train", expected_points: int = 33
) -> go.Figure:
    """Error along each path vs the position along it (distance from A over the path length, in [0, 1]); each legend
    entry names the path's barrier (its highest train error, raw max, docs/method.md §7) and its length with the
    unit, the legend's title defines the barrier, and the hover gives each point's distance from A in that unit. The
    y range starts below 0, so that a path at 0% error is drawn above the axis line, not on it.

    ``paths`` maps a kind (linear, linear_aligned, geodesic, one_bend) to a finished result or to a job's partial
    points (drawn as they stream in, the legend counting them). ``error`` is ``train``, ``test`` or ``both``.
    """
    if error not in ("train", "test", "both"):
        raise ValueError(f"error must be 'train', 'test' or 'both', got {error!r}")
    fig = go.Figure()
    drawn: list[float] = []
    for kind, data in paths.items():
        p = path_points(data)
        if not p["train_error"]:
            continue
        label = KIND_LABELS.get(kind, kind)
        color = KIND_COLORS.get(kind, "#444")
        bend_kind = _bend_kind(kind, data)
        if p["complete"]:
            value = p["test_barrier"] if error == "test" else p["barrier"]
            what = "test barrier" if error == "test" else "barrier"
            name = f"{label} ({what} {percent(value)}, length {length_text(kind, p['length'], bend_kind)})"
        else:
            total = p["points"] or expected_points
            name = f"{label} (computing… {len(p['train_error'])}/{total} points)"
        series = []
        if error in ("train", "both"):
            series.append(("train", p["train_error"], "solid"))
        if error in ("test", "both") and p["test_error"]:
            series.append(("test", p["test_error"], "dash" if error == "both" else "solid"))
        for i, (which, values, dash) in enumerate(series):
            x = p["distance"][: len(values)]
            drawn += [100.0 * v for v in values]
            fig.add_trace(go.Scatter(
                x=x, y=[100.0 * v for v in values],
                mode="lines+markers", name=name if i == 0 else f"{label} (test)",
                legendgroup=kind, showlegend=True,
                line=dict(color=color, width=3 if kind == "geodesic" else 2, dash=dash),
                marker=dict(size=5), meta=[kind, which], customdata=[_from_a(kind, d, p["length"], bend_kind)
                                                                     for d in x],
                hovertemplate=f"{label}: {which} error %{{y:.2f}}% · %{{customdata}}<extra></extra>",
            ))
        if p["bend_at"] is not None:
            k = int(np.argmin([abs(d - p["bend_at"]) for d in p["distance"]]))
            fig.add_trace(go.Scatter(
                x=[p["distance"][k]], y=[100.0 * p["train_error"][k]], mode="markers", showlegend=False,
                marker=dict(symbol="diamond", size=12, color=color, line=dict(width=1, color="white")),
                hovertemplate="bend point (retrained midpoint)<extra></extra>",
            ))
    ylabel = {"train": "train error along the path (%)", "test": "test error along the path (%)",
              "both": "error along the path (%): train solid, test dashed"}[error]
    defined = BARRIER_DEFINITION if error != "test" else "test barrier = highest test error along the path"
    legend = dict(orientation="h", y=1.02, yanchor="bottom", x=0, xanchor="left")
    base_layout(fig, hovermode="x unified", legend=legend, margin=dict(t=120),  # room for the title and legend
                title=dict(text=f"{defined}; length = distance from A to B in the path's own metric",
                           x=0.01, y=0.99, yanchor="top", font=dict(size=12, color="#4b5563")))
    fig.update_xaxes(title_text=POSITION_TITLE, range=[-0.02, 1.02], hoverformat=".3f")
    fig.update_yaxes(title_text=ylabel, range=zero_visible_range(drawn), zeroline=True, zerolinecolor="#c9ced6",
                     zerolinewidth=1)
    fig.update_layout(uirevision="paths")
    return fig
