"""The torus slice through two minima (3-D and unrolled) and the section through three (docs/method.md sec. 7).

Errors are drawn in percent on one fixed colour scale, 0-100 %, from the first streamed cell to the end, so a
picture never changes its meaning while a job runs. A running job reports its grid coarse to fine (a subgrid over
the whole slice first, then finer passes; docs/method.md sec. 7): until a cell is computed it shows the value of
the nearest cell of the finest complete pass (a preview, labelled as such in the figure), and cells are drawn as
gaps only before the first pass ends. The minima are A, B (and C) everywhere: markers, axis titles, hover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.plots import (
    base_layout,
)

#: The fixed colour scale of every torus and plane figure: error in percent.
ERROR_RANGE = (0.0, 100.0)
COLORSCALE = "Viridis"
TAGS = {"w1": "A", "w2": "B", "w3": "C"}  # a section's networks are the chosen A, B, C
INK = "#1f2430"
GEODESIC = "#ff5a5f"
MARKER_LIFT = 0.08  # the minima's markers float this far above the 3-D surface (its tube radius is 1)
COLORBAR_PX = 78  # room a colour bar with its title takes right of the plot
EYE = (1.15, 0.8)  # the 3-D camera: distance from the axis (scene units) and height; the torus fills the panel


# --- shared helpers -------------------------------------------------------------------------------------------------

def _grid_array(values: Any) -> np.ndarray:
    """A grid of errors from JSON (``null`` for cells not computed yet) as floats, NaN for the missing ones."""
    return np.asarray([[math.nan if v is None else v for v in row] for row in values or []], dtype=np.float64)


def preview_grid(z: np.ndarray, periodic: bool) -> tuple[np.ndarray, int]:
    """``z`` with its missing cells (NaN) filled from the finest complete subgrid (the cells whose indices are
    multiples of a stride s, all computed), each from the nearest of them (periodically on a torus); the count of
    computed cells. Without a complete subgrid the missing cells stay NaN (drawn as gaps)."""
    known = np.isfinite(z)
    computed = int(known.sum())
    if known.all() or not known.any():
        return z, computed
    rows, cols = z.shape
    stride = 1  # the finest complete subgrid, with at least two cells per axis
    while not known[::stride, ::stride].all():
        stride *= 2
        if stride > min(rows, cols) - 1:
            return z, computed

    def nearest(m: int) -> np.ndarray:
        idx, coarse = np.arange(m), np.arange(0, m, stride)
        d = np.abs(idx[:, None] - coarse[None, :])
        if periodic:
            d = np.minimum(d, m - d)
        return coarse[np.argmin(d, axis=1)]

    return np.where(known, z, z[np.ix_(nearest(rows), nearest(cols))]), computed


def _preview_note(fig: go.Figure, computed: int, total: int) -> None:
    if computed < total:
        fig.add_annotation(text=f"preview: {computed} of {total} cells computed, the others show the nearest one",
                           x=0.0, y=1.0, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                           showarrow=False, font=dict(size=11, color="#6b7280"))


def _colorbar(error: str) -> dict[str, Any]:
    return dict(title=dict(text=f"{error} error (%)", side="right"), thickness=10, len=0.9,
                tickvals=[0, 25, 50, 75, 100], xpad=4)


def _tagged_minima(fig: go.Figure, where: Mapping[str, Sequence[float]], data: Mapping[str, Any],
                   labels: Mapping[str, str] | None, errors_key: str, **marker_trace: Any
                   ) -> tuple[list[str], list[float], list[float]]:
    """The minima at ``where`` (name -> (x, y)) as white markers with their A/B/C tags and their errors on hover;
    returns (names, xs, ys)."""
    names = list(where)
    xs, ys = [where[n][0] for n in names], [where[n][1] for n in names]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="minima", text=[TAGS.get(n, n) for n in names],
        hovertext=_minima_hover(names, data, labels, errors_key), hoverinfo="text",
        marker=dict(size=10, color="#ffffff", line=dict(color=INK, width=2)), **marker_trace,
    ))
    for n, px, py in zip(names, xs, ys, strict=True):
        fig.add_annotation(**_tag_annotation(TAGS.get(n, n), x=px, y=py, xref="x", yref="y"))
    return names, xs, ys


def _minima_hover(names: Sequence[str], slice_data: Mapping[str, Any], labels: Mapping[str, str] | None,
                  errors_key: str) -> list[str]:
    errors = (slice_data.get("extra") or {}).get(errors_key) or {}
    texts = []
    for n in names:
        e = errors.get(n) or {}
        line = " · ".join(f"{s} {100 * e[f'{s}_error']:.1f}%" for s in ("train", "test")
                          if e.get(f"{s}_error") is not None)
        tag = TAGS.get(n, n)
        name = (labels or {}).get(tag) or (labels or {}).get(n) or tag
        texts.append(f"<b>{name}</b>" + (f"<br>{line}" if line else ""))
    return texts


def _fit_width(fig: go.Figure, height: int | None, aspect: float) -> None:
    """With a ``height`` (px), fix the figure's size so that its equal-aspect plot area (``aspect`` = width / height
    in data units) fills it: no blank band between the plot and its colour bar."""
    if not height:
        return
    m = fig.layout.margin
    plot = max(50.0, height - (m.t or 0) - (m.b or 0))
    width = plot * min(max(aspect, 0.25), 4.0) + (m.l or 0) + (m.r or 0) + COLORBAR_PX
    fig.update_layout(height=height, width=int(round(width)), autosize=False)


def _tag_annotation(text: str, **where: Any) -> dict[str, Any]:
    """A minimum's tag: dark letter on a white box with a dark border, readable on any colour, never hidden (drawn
    over the plot), joined to its marker by a short arrow."""
    return dict(text=f"<b>{text}</b>", showarrow=True, arrowhead=0, arrowwidth=1.5, arrowcolor=INK, ax=14, ay=-22,
                bgcolor="rgba(255,255,255,0.92)", bordercolor=INK, borderwidth=1, borderpad=2,
                font=dict(size=13, color=INK), **where)


# --- torus ----------------------------------------------------------------------------------------------------------

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


def _closed_grid(slice_data: Mapping[str, Any], error: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The periodic grid (missing cells previewed, ``preview_grid``) with its first row/column repeated at +2 pi,
    so the surface closes; and the count of computed cells."""
    phi1 = np.asarray(slice_data["phi1"], dtype=np.float64)
    phi2 = np.asarray(slice_data["phi2"], dtype=np.float64)
    z = _grid_array(slice_data[f"{error}_error"])
    if z.shape != (phi2.size, phi1.size):
        raise ValueError(f"torus slice: {error}_error has shape {z.shape}, expected (len(phi2), len(phi1)) = "
                         f"({phi2.size}, {phi1.size})")
    z, computed = preview_grid(z, periodic=True)
    phi1 = np.append(phi1, phi1[0] + 2 * math.pi)
    phi2 = np.append(phi2, phi2[0] + 2 * math.pi)
    z = np.vstack([z, z[:1]])
    z = np.hstack([z, z[:, :1]])
    return phi1, phi2, z, computed


def torus_axes(slice_data: Mapping[str, Any]) -> tuple[str, str]:
    """What each torus angle turns (docs/method.md sec. 7), for axis titles and "φ₁ turns ...": (phi1, phi2)."""
    construction = str(slice_data.get("construction") or "")
    if "C" in (slice_data.get("minima") or {}) or construction.startswith("three"):
        return "every unit along its A→B circle", "every unit along its A→C circle"
    if "last_layer" in construction:
        return "hidden units on their A→B circles", "the last layer on its A→B circle"
    if "first_layer" in construction or not construction or construction == "partial":
        return "first-layer units on their A→B circles", "other layers' units on their A→B circles"
    return "the first group's units on their A→B circles", "the other units on their A→B circles"


def _camera(minima: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """A view from outside the ring, above the minima: azimuth their circular mean ring angle phi1."""
    if minima:
        angles = np.asarray([m[0] for m in minima.values()], dtype=np.float64)
        azimuth = math.atan2(float(np.sin(angles).mean()), float(np.cos(angles).mean()))
    else:
        azimuth = math.pi / 4
    return dict(eye=dict(x=EYE[0] * math.cos(azimuth), y=EYE[0] * math.sin(azimuth), z=EYE[1]),
                center=dict(x=0.0, y=0.0, z=-0.18))


def torus_surface(slice_data: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                  error: str = "train") -> go.Figure:
    """The torus slice drawn on a 3-D torus, colored by error (%, fixed 0-100: the colour bar is the unrolled
    heatmap's, beside it), with the minima and the geodesic between A and B (a straight segment in torus
    coordinates, hence a helix-like curve on the surface)."""
    phi1, phi2, z, computed = _closed_grid(slice_data, error)
    grid1, grid2 = np.meshgrid(phi1, phi2)
    x, y, zz = torus_embedding(grid1, grid2)
    ax1, ax2 = torus_axes(slice_data)
    fig = go.Figure(go.Surface(
        x=x, y=y, z=zz, surfacecolor=100.0 * z, colorscale=COLORSCALE, cmin=ERROR_RANGE[0], cmax=ERROR_RANGE[1],
        colorbar=_colorbar(error), customdata=np.dstack([grid1 / math.pi, grid2 / math.pi, 100.0 * z]),
        hovertemplate=(f"φ₁ %{{customdata[0]:.2f}}π rad ({ax1})<br>φ₂ %{{customdata[1]:.2f}}π rad ({ax2})"
                       f"<br>{error} error %{{customdata[2]:.1f}}%<extra></extra>"),
        name="torus", showscale=False, lighting=dict(ambient=0.85, diffuse=0.3, specular=0.05),
    ))
    extra = slice_data.get("extra") or {}
    for name, key, dash in (("geodesic", "geodesic", "solid"), ("geodesic A→C", "geodesic_ac", "dash")):
        points = slice_data.get(key) if key == "geodesic" else extra.get(key)
        if points:
            g = np.asarray(points, dtype=np.float64)
            gx, gy, gz = torus_embedding(g[:, 0], g[:, 1], lift=0.03)
            fig.add_trace(go.Scatter3d(x=gx, y=gy, z=gz, mode="lines", name=name, hoverinfo="name",
                                       line=dict(color=GEODESIC, width=7, dash=dash)))
    annotations = []
    minima = slice_data.get("minima") or {}
    if minima:
        names = list(minima)
        coords = np.asarray([minima[n] for n in names], dtype=np.float64)
        mx, my, mz = torus_embedding(coords[:, 0], coords[:, 1], lift=MARKER_LIFT)
        fig.add_trace(go.Scatter3d(
            x=mx, y=my, z=mz, mode="markers", name="minima", text=[TAGS.get(n, n) for n in names],
            hovertext=_minima_hover(names, slice_data, labels, "minima_errors"), hoverinfo="text",
            marker=dict(size=6, color="#ffffff", line=dict(color=INK, width=3)),
        ))
        annotations = [_tag_annotation(TAGS.get(n, n), x=float(px), y=float(py), z=float(pz))
                       for n, px, py, pz in zip(names, mx, my, mz, strict=True)]
    axis = dict(visible=False, showbackground=False)
    base_layout(fig, margin=dict(l=0, r=0, t=22, b=0), showlegend=False,
                scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data", camera=_camera(minima),
                           annotations=annotations))
    _preview_note(fig, computed, z[:-1, :-1].size)
    fig.update_layout(uirevision="torus")
    return fig


def torus_partial(partial: Mapping[str, Any], resolution: int) -> dict[str, Any] | None:
    """A torus slice dict from a running torus job's ``partial`` record, None when no cell has arrived.

    The core reports ``partial["grid"]``: the slice so far, cells not computed yet ``null``, with the minima and the
    geodesic (known before the first cell). A job of an older worker streamed cells (lists ``i``, ``j``,
    ``train_error``, ``test_error``); those are gathered into the grid, without minima or geodesic.
    """
    grid = partial.get("grid")
    if isinstance(grid, Mapping) and grid.get("phi1") and grid.get("train_error"):
        if not np.isfinite(_grid_array(grid["train_error"])).any():
            return None
        return dict(grid)
    cols, rows = partial.get("i") or [], partial.get("j") or []
    train, test = partial.get("train_error") or [], partial.get("test_error") or []
    n = min(len(cols), len(rows), len(train))
    if n == 0 or resolution < 2:
        return None
    axis = np.linspace(0.0, 2 * math.pi, resolution, endpoint=False).tolist()
    train_grid = np.full((resolution, resolution), np.nan)
    test_grid = np.full((resolution, resolution), np.nan)
    for k in range(n):
        i, j = int(cols[k]), int(rows[k])
        if 0 <= i < resolution and 0 <= j < resolution:
            train_grid[j, i] = train[k]
            if k < len(test) and test[k] is not None:
                test_grid[j, i] = test[k]
    return {"phi1": axis, "phi2": axis, "train_error": train_grid.tolist(), "test_error": test_grid.tolist(),
            "minima": {}, "geodesic": [], "construction": "partial", "extra": {"cells": n}}


def _pi_ticks() -> dict[str, Any]:
    values = [k * math.pi / 2 for k in range(5)]
    return dict(tickvals=values, ticktext=["0", "π/2", "π", "3π/2", "2π"], showgrid=False, zeroline=False,
                ticks="outside", ticklen=4)


def torus_heatmap(slice_data: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                  error: str = "train", height: int | None = None) -> go.Figure:
    """The same torus slice unrolled onto [0, 2 pi)^2 (radians, ticks in units of pi, equal aspect): error heatmap
    (%, fixed 0-100), the minima, the geodesic as a straight segment. ``height`` (px): fix the size to fit the
    square plot (``_fit_width``)."""
    phi1, phi2, z, computed = _closed_grid(slice_data, error)
    ax1, ax2 = torus_axes(slice_data)
    fig = go.Figure(go.Heatmap(
        x=phi1, y=phi2, z=100.0 * z, colorscale=COLORSCALE, zmin=ERROR_RANGE[0], zmax=ERROR_RANGE[1],
        colorbar=_colorbar(error), customdata=np.dstack(np.meshgrid(phi1 / math.pi, phi2 / math.pi)),
        hovertemplate=("φ₁ %{customdata[0]:.2f}π · φ₂ %{customdata[1]:.2f}π rad"
                       f"<br>{error} error %{{z:.1f}}%<extra></extra>"),
    ))
    extra = slice_data.get("extra") or {}
    for name, key, dash in (("geodesic", "geodesic", "solid"), ("geodesic A→C", "geodesic_ac", "dash")):
        points = slice_data.get(key) if key == "geodesic" else extra.get(key)
        if points:
            g = np.asarray(points, dtype=np.float64)
            fig.add_trace(go.Scatter(x=g[:, 0], y=g[:, 1], mode="lines", name=name, hoverinfo="name",
                                     line=dict(color=GEODESIC, width=3, dash=dash), cliponaxis=False))
    minima = slice_data.get("minima") or {}
    if minima:
        names, xs, ys = _tagged_minima(fig, minima, slice_data, labels, "minima_errors", cliponaxis=False)
        # a minimum on an edge (A at (0, 0)) is also at the opposite edge of the periodic square
        wrap = [(px + dx, py + dy) for px, py in zip(xs, ys, strict=True) for dx, dy in
                ((2 * math.pi, 0.0), (0.0, 2 * math.pi), (2 * math.pi, 2 * math.pi))
                if (dx == 0.0 or px == 0.0) and (dy == 0.0 or py == 0.0)]
        if wrap:
            fig.add_trace(go.Scatter(x=[w[0] for w in wrap], y=[w[1] for w in wrap], mode="markers",
                                     name="minima (periodic copies)", hoverinfo="skip", cliponaxis=False,
                                     marker=dict(size=10, color="#ffffff", line=dict(color=INK, width=2))))
    base_layout(fig, showlegend=False, margin=dict(l=58, r=8, t=22, b=44))
    fig.update_xaxes(title=dict(text=f"φ₁ (rad): {ax1}", standoff=4), range=[0, 2 * math.pi], constrain="domain",
                     **_pi_ticks())
    fig.update_yaxes(title=dict(text=f"φ₂ (rad): {ax2}", standoff=2), range=[0, 2 * math.pi], scaleanchor="x",
                     scaleratio=1, constrain="domain", **_pi_ticks())
    _preview_note(fig, computed, z[:-1, :-1].size)
    _fit_width(fig, height, 1.0)
    return fig


# --- section --------------------------------------------------------------------------------------------------------

def section_partial(partial: Mapping[str, Any]) -> dict[str, Any] | None:
    """A section dict from a running section job's ``partial["grid"]`` (the plane so far, cells not computed yet
    ``null``); None before its first pass arrived."""
    grid = partial.get("grid")
    if not isinstance(grid, Mapping) or not grid.get("x") or not grid.get("train_error"):
        return None
    if not np.isfinite(_grid_array(grid["train_error"])).any():
        return None
    return dict(grid)


def section_units(space: str) -> str:
    """The unit of the plane's coordinates (docs/method.md sec. 2 and 7): Euclidean distance over all floating
    parameters, of the normalized networks (every hidden unit's weight vector of norm 1) or the raw ones."""
    if space == "normalized":
        return "Euclidean distance of normalized parameters (unit-norm hidden units)"
    return "Euclidean distance of raw parameters"


def fine_levels(z_percent: np.ndarray, band: float = 5.0) -> dict[str, float] | None:
    """Contour line levels (``start``, ``end``, ``size`` in %) finer than the colour bands (``band`` %) when the
    values span less than two bands; None otherwise (the colours show the shape)."""
    finite = z_percent[np.isfinite(z_percent)]
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo >= 2 * band or hi - lo <= 0.0:
        return None
    raw = (hi - lo) / 6
    size = min((s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0) if s >= raw), default=2.0)
    start = math.ceil(lo / size) * size
    return dict(start=start, end=max(start, math.floor(hi / size) * size), size=size)


def section_contour(section: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                    error: str = "train", height: int | None = None) -> go.Figure:
    """Error (%, fixed 0-100) on the Gram-Schmidt plane through A, B, C (docs/method.md §7), as filled contours; the
    axes span the computed grid, in the distance unit of the parameter space, with equal aspect (true distances).
    ``height`` (px): fix the size to fit the plot (``_fit_width``)."""
    z = _grid_array(section[f"{error}_error"])
    x, y = list(section["x"]), list(section["y"])
    if z.shape != (len(y), len(x)):
        raise ValueError(
            f"section: {error}_error has shape {z.shape}, expected (len(y), len(x)) = ({len(y)}, {len(x)})"
        )
    z, computed = preview_grid(z, periodic=False)
    space = section.get("space", "raw")
    fig = go.Figure(go.Contour(
        x=x, y=y, z=100.0 * z, colorscale=COLORSCALE, zmin=ERROR_RANGE[0], zmax=ERROR_RANGE[1],
        autocontour=False, contours=dict(start=0.0, end=100.0, size=5.0, showlines=False),
        colorbar=_colorbar(error),
        hovertemplate=f"x %{{x:.3g}} · y %{{y:.3g}}<br>{error} error %{{z:.1f}}%<extra></extra>",
    ))
    levels = fine_levels(100.0 * z)
    if levels is not None:  # a flat basin: the colours cannot tell 0.2 % from 1.5 %, labelled lines can
        fig.add_trace(go.Contour(
            x=x, y=y, z=100.0 * z, autocontour=False, showscale=False, hoverinfo="skip", name="finer levels",
            contours=dict(coloring="none", showlabels=True, labelfont=dict(size=10, color="#ffffff"), **levels),
            line=dict(color="rgba(255,255,255,0.75)", width=1),
        ))
    points = section.get("points") or {}
    if points:
        _tagged_minima(fig, points, section, labels, "point_errors")
    base_layout(fig, showlegend=False, margin=dict(l=58, r=8, t=22, b=44))
    unit = "normalized" if space == "normalized" else "raw"
    fig.update_xaxes(title=dict(text=f"x: along A→B ({unit} parameter distance)", standoff=4),
                     range=[x[0], x[-1]], constrain="domain", showgrid=False, zeroline=False, ticks="outside")
    fig.update_yaxes(title=dict(text="y: towards C, ⟂ A→B (same unit)", standoff=2), range=[y[0], y[-1]],
                     scaleanchor="x", scaleratio=1, constrain="domain", showgrid=False, zeroline=False,
                     ticks="outside")
    _preview_note(fig, computed, z.size)
    _fit_width(fig, height, (x[-1] - x[0]) / (y[-1] - y[0]) if y[-1] != y[0] else 1.0)
    return fig
