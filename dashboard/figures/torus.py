"""The torus slice through two minima (3-D and unrolled) and the section through three (docs/method.md sec. 7)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.plots import (
    base_layout,
)

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


