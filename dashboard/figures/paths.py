"""Path profiles between minima: the barrier plot and its table rows (docs/method.md sec. 7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.plots import (
    KIND_COLORS,
    KIND_LABELS,
    base_layout,
    path_points,
    percent,
)

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


