"""The minima map: positions from pairwise distances (MDS, aligned to the previous layout), how faithful they are,
and the scatter figure.

The embedding and its stress-1 / share of variance come from :mod:`toroid.mds` (shared with ``GET /api/map``); this
module decides which minima can be placed (every pair among them has a known distance, from a finished result or the
pairs a running distances job has streamed so far), lines up the others as pending, spreads minima drawn on one spot,
and writes the figure with its caption.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.mds import embed, procrustes_align, spread_coincident
from toroid.plots import METRIC_UNITS, base_layout, by_sampler, percent, sampler_color

SELECTION_LABELS = ("A", "B", "C")
#: Maps of more minima than this draw no names beside the points (the hover and the pair dropdowns have them)
LABELS_MAX = 16
#: Maps of more minima than this draw smaller markers with thin outlines, so hundreds stay apart
CROWDED = 100

#: Short names of the distances (docs/method.md §5), as the caption and the hover say them
METRIC_NAMES = {
    "geodesic": "geodesic", "raw": "raw Euclidean", "aligned": "aligned Euclidean",
    "normalized": "normalized Euclidean", "normalized_aligned": "normalized + aligned Euclidean",
    "hamming": "Hamming (aligned)", "hamming_raw": "raw Hamming",
}
#: What one unit of each distance is and what the distance measures (docs/method.md §5), for the caption
METRIC_DEFINITIONS = {
    "geodesic": ("1 rad of geodesic distance", "the arc length on the normalized network's product of unit spheres"),
    "euclidean": ("1 unit of Euclidean distance", "the RMS difference per parameter, ||A - B|| / sqrt(N)"),
    "hamming": ("a Hamming distance of 1", "the fraction of differing +-1 weights"),
}


def metric_name(variant: str) -> str:
    return METRIC_NAMES.get(variant, variant.replace("_", " "))


def metric_unit(variant: str) -> str:
    """The unit of a distance: rad (geodesic), RMS per parameter (Euclidean), fraction of weights (Hamming)."""
    return METRIC_UNITS.get(variant, "")


def _definition(variant: str) -> tuple[str, str]:
    if variant == "geodesic":
        return METRIC_DEFINITIONS["geodesic"]
    return METRIC_DEFINITIONS["hamming" if variant.startswith("hamming") else "euclidean"]


# --- layout ---------------------------------------------------------------------------------------------------------

@dataclass
class MapLayout:
    """Where each minimum is drawn and what the drawing means.

    ``positions``: id -> [x, y] as drawn (minima sharing a spot moved onto a small ring, pending ones lined up under
    the others); ``coords``: the placed minima's own coordinates before that (the MDS embedding, or train/test error
    in percent); ``method``: ``"mds"`` or ``"error"`` (the fallback); ``embedding``: ``"classical"`` or ``"smacof"``;
    ``stress``/``classical_stress``: stress-1 of the map and of classical MDS; ``variance_2d``: the classical share of
    variance in two dimensions; ``groups``: the ids moved off a shared spot; ``pairs``: the known distances
    ((a, b) with a < b -> distance); ``streamed``: placed (partly) from a distances job still running;
    ``alignment``: how the distances removed the permutations (``pairwise``, or ``reference``: every minimum aligned
    to ``reference``, the name of that minimum, docs/method.md §5 "Many minima").
    """

    positions: dict[str, list[float]]
    method: str
    pending: list[str]
    coords: dict[str, list[float]] = field(default_factory=dict)
    variant: str = "geodesic"
    embedding: str | None = None
    stress: float | None = None
    classical_stress: float | None = None
    variance_2d: float | None = None
    groups: list[list[str]] = field(default_factory=list)
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    streamed: bool = False
    alignment: str = "pairwise"
    reference: str | None = None

    def distance(self, a: str, b: str) -> float | None:
        """The known distance between two minima (0 for a minimum and itself), else None."""
        return 0.0 if a == b else self.pairs.get((a, b) if a < b else (b, a))

    def planar(self, a: str, b: str) -> float | None:
        """Their distance on the map (before spreading), when both are placed by distance."""
        if self.method != "mds" or a not in self.coords or b not in self.coords:
            return None
        return float(math.dist(self.coords[a], self.coords[b]))


def known_pairs(distances: Mapping[str, Any] | None, variant: str,
                job: Mapping[str, Any] | None = None) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]]]:
    """The finite ``variant`` distances known so far, (a, b) with a < b -> distance, and which of them came from
    ``job`` only: a finished result (``{"ids", "matrices"}``) and/or the pairs a running distances job streamed
    (``{"ids": its minimum ids, "partial": {"i": [...], "j": [...], variant: [...]}}``, docs/api.md, jobs)."""
    pairs: dict[tuple[str, str], float] = {}
    matrix = ((distances or {}).get("matrices") or {}).get(variant)
    ids = list((distances or {}).get("ids") or [])
    if matrix is not None:
        for i, a in enumerate(ids):
            for j in range(i + 1, len(ids)):
                value = matrix[i][j]
                if value is not None and math.isfinite(value):
                    pairs[_pair(a, ids[j])] = float(value)
    streamed: set[tuple[str, str]] = set()
    partial = (job or {}).get("partial") or {}
    job_ids = list((job or {}).get("ids") or [])
    rows, cols, values = partial.get("i"), partial.get("j"), partial.get(variant)
    if isinstance(rows, list) and isinstance(cols, list) and isinstance(values, list):
        for i, j, value in zip(rows, cols, values, strict=False):
            if not (isinstance(i, int) and isinstance(j, int) and 0 <= i < len(job_ids) and 0 <= j < len(job_ids)):
                continue
            if isinstance(value, int | float) and math.isfinite(value) and i != j:
                key = _pair(job_ids[i], job_ids[j])
                if key not in pairs:
                    streamed.add(key)
                pairs[key] = float(value)
    return pairs, streamed


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def map_layout(
    minima: Sequence[Mapping[str, Any]],
    distances: Mapping[str, Any] | None = None,
    variant: str = "geodesic",
    previous: Mapping[str, Sequence[float]] | None = None,
    job: Mapping[str, Any] | None = None,
) -> MapLayout:
    """The map of ``minima`` from the distances known so far (see :func:`known_pairs`).

    The largest set of minima whose every pair is known (the finished result's minima first, then those of the
    running job in its order) is embedded (:func:`toroid.mds.embed`: classical MDS, refined by SMACOF when that
    lowers stress-1) and turned (Procrustes) to match ``previous`` positions so that the map stays still; the minima
    left out are *pending*: lined up under the map until their distances are in. With fewer than two placeable
    minima: the fallback layout, train error vs test error in percent (uploads whose evaluation job has not finished
    are pending there). Minima drawn on one spot are moved onto a small ring around it (:func:`spread_coincident`).
    """
    ids = [m["id"] for m in minima]
    pairs, streamed = known_pairs(distances, variant, job)
    placed: list[str] = []
    if pairs and len(ids) >= 2:
        present = set(ids)
        order = [mid for mid in (distances or {}).get("ids") or [] if mid in present]
        order += [mid for mid in (job or {}).get("ids") or [] if mid in present and mid not in order]
        order += [mid for mid in ids if mid not in order]
        for mid in order:
            if all(_pair(mid, other) in pairs for other in placed):
                placed.append(mid)
    if len(placed) >= 2:
        placed = [mid for mid in ids if mid in placed]  # the minima's own order
        sub = np.asarray([[pairs.get(_pair(a, b), 0.0) for b in placed] for a in placed], dtype=np.float64)
        found = embed(sub)
        coords = {mid: [float(x), float(y)] for mid, (x, y) in zip(placed, found.coords, strict=True)}
        if previous:
            coords = procrustes_align(coords, previous)
        pending = [mid for mid in ids if mid not in coords]
        drawn, groups = spread_coincident(coords)
        used = bool(streamed) and any(_pair(a, b) in streamed for i, a in enumerate(placed) for b in placed[i + 1:])
        alignment = (distances or {}).get("alignment") or "pairwise"
        reference = ((distances or {}).get("reference") or {}).get("name") if alignment == "reference" else None
        return MapLayout(_line_up(drawn, pending), "mds", pending, coords, variant, found.method, found.stress,
                         found.classical_stress, found.variance_2d, groups, pairs, used, alignment, reference)
    known = [m for m in minima if m.get("train_error") is not None and m.get("test_error") is not None]
    coords = {m["id"]: [100.0 * float(m["train_error"]), 100.0 * float(m["test_error"])] for m in known}
    pending = [mid for mid in ids if mid not in coords]  # uploads whose evaluation has not finished
    drawn, groups = spread_coincident(coords, span=1.0)
    return MapLayout(_line_up(drawn, pending), "error", pending, coords, variant, groups=groups, pairs=pairs)


def map_positions(
    minima: Sequence[Mapping[str, Any]],
    distances: Mapping[str, Any] | None = None,
    variant: str = "geodesic",
    previous: Mapping[str, Sequence[float]] | None = None,
    job: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[float]], str, list[str]]:
    """Planar positions of ``minima`` (id -> [x, y]), the method used (``"mds"`` or ``"error"``) and the pending ids
    (:func:`map_layout`, without the rest of what it says)."""
    layout = map_layout(minima, distances, variant, previous, job)
    return layout.positions, layout.method, layout.pending


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
    if x1 - x0 < 0.5 * span:  # a narrow map: give the row room
        middle = (x0 + x1) / 2
        x0, x1 = middle - 0.5 * span, middle + 0.5 * span
    xs = np.linspace(x0, x1, len(pending) + 2)[1:-1] if len(pending) > 1 else [(x0 + x1) / 2]
    for mid, x in zip(pending, xs, strict=True):
        positions[mid] = [float(x), float(y0 - 0.2 * span)]
    return positions


def map_caption(layout: MapLayout, count: int) -> str:
    """What the map is and how far to trust it, in one to three short lines (``<br>``-separated)."""
    lines = []
    if layout.method == "mds":
        if layout.embedding == "smacof":
            how = f"metric MDS (SMACOF; classical stress-1 {layout.classical_stress:.2f})"
        else:
            how = "classical MDS"
        first = (f"{metric_name(layout.variant)} distance · {how} · stress-1 {layout.stress:.2f} · "
                 f"top-2 variance {100 * (layout.variance_2d or 0):.0f}%")
        if layout.pending:
            first += f" · {count - len(layout.pending)} of {count} placed"
        lines.append(first)
        unit, meaning = _definition(layout.variant)
        lines.append(f"Axes have no meaning of their own; equal scales: 1 unit = {unit},")
        lines.append(f"{meaning}.")
        if layout.stress is not None and layout.stress >= 0.2:  # Kruskal's rule of thumb
            lines.append("Stress-1 of 0.2 or more is poor (Kruskal): planar distances mislead; the hover gives the "
                         "true ones.")
        elif layout.stress is not None and layout.stress >= 0.1:
            lines.append("Stress-1 between 0.1 and 0.2 is fair (Kruskal): read planar distances as rough.")
        if layout.streamed:
            lines.append("Placed from the distances computed so far (the distances job is still running).")
        if layout.alignment == "reference" and layout.variant in ("geodesic", "aligned", "normalized_aligned",
                                                                  "hamming"):
            lines.append(f"Approximation: distances after alignment to a common reference ({layout.reference or '?'}),")
            lines.append("an upper bound on the symmetry-reduced distance; select two for their pairwise one.")
    else:
        lines.append("Laid out by train vs test error until the distances are computed.")
    if layout.groups:
        moved = sum(len(g) for g in layout.groups)
        what = "equal errors" if layout.method == "error" else "distance ~0"
        lines.append(f"{moved} minima with {what} are drawn on a small ring around their shared spot.")
    return "<br>".join(lines)


# --- figure ---------------------------------------------------------------------------------------------------------

def _flatness_sizes(minima: Sequence[Mapping[str, Any]], small: float = 10.0, large: float = 26.0) -> list[float]:
    """Marker sizes: flatter (smaller local energy) is bigger; minima without a flatness result get a middle size."""
    values = [m.get("local_energy") for m in minima]
    known = [v for v in values if v is not None]
    middle = small + (large - small) / 4
    if not known:
        return [middle] * len(minima)
    lo, hi = min(known), max(known)
    sizes = []
    for v in values:
        if v is None:
            sizes.append(middle)
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


def _to_a_text(minimum: Mapping[str, Any], a: str | None, layout: MapLayout | None, a_name: str) -> str:
    """The hover's line about the selected A: the true distance and the planar one, or why there is none."""
    if not a or layout is None:
        return ""
    if minimum["id"] == a:
        return "<br><b>A</b> (selected)"
    distance = layout.distance(a, minimum["id"])
    name = metric_name(layout.variant)
    if distance is None:
        return f"<br>{name} distance to A ({a_name}): not computed yet"
    unit = " rad" if layout.variant == "geodesic" else ""
    planar = layout.planar(a, minimum["id"])
    plane = f" (in the plane: {planar:.3g})" if planar is not None else " (not placed by distance yet)"
    return f"<br>{name} distance to A ({a_name}): {distance:.3g}{unit}{plane}"


def _hover_data(minimum: Mapping[str, Any], to_a: str = "") -> list[Any]:
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
        to_a,
    ]


_MAP_HOVER = (
    "<b>%{customdata[1]}</b><br>%{customdata[2]} on %{customdata[3]} · %{customdata[7]}<br>"
    "train error %{customdata[4]} · test error %{customdata[5]}<br>local energy %{customdata[6]}%{customdata[8]}"
    "<extra></extra>"
)


def minima_map(
    minima: Sequence[Mapping[str, Any]],
    positions: Mapping[str, Sequence[float]],
    method: str,
    selection: Mapping[str, Any] | None = None,
    color_by: str = "sampler",
    variant: str = "geodesic",
    pair_distance: float | None = None,
    layout: MapLayout | None = None,
) -> go.Figure:
    """Every minimum as a clickable point (``customdata[0]`` is its id), colored by sampler (size: flatness) or by
    local energy, with the selected minima A, B (and C) ringed and A-B joined by a dashed line. With ``layout``
    (:func:`map_layout`): a caption under the plot (distance, MDS method, stress-1, share of variance, the unit),
    each point's hover gives its distance to A, true and planar, and minima moved off a shared spot label outward.
    """
    fig = go.Figure()
    placed = [m for m in minima if m["id"] in positions]
    label_points = len(placed) <= LABELS_MAX
    crowded = len(placed) > CROWDED  # hundreds of minima: smaller markers, thin outlines, names on hover only
    ringed = {mid for mid in ((selection or {}).get(k) for k in ("a", "b", "c")) if mid}
    where = _label_sides(placed, positions, layout.groups if layout else ())
    sizes = dict(zip([m["id"] for m in placed],
                     _flatness_sizes(placed, *((5.0, 12.0) if crowded else (10.0, 26.0))), strict=True))
    outline = 0.5 if crowded else 1.5
    names = {m["id"]: m.get("name") or m["id"] for m in minima}
    a = (selection or {}).get("a")
    a = a if a in names else None

    def hover(members: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        return [_hover_data(m, _to_a_text(m, a, layout, names.get(a, ""))) for m in members]

    if color_by == "flatness":
        known = [m for m in placed if m.get("local_energy") is not None]
        unknown = [m for m in placed if m.get("local_energy") is None]
        if known:
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in known], y=[positions[m["id"]][1] for m in known],
                mode="markers+text" if label_points else "markers", name="local energy", showlegend=False,
                text=[_point_label(m, ringed) for m in known], textposition=[where[m["id"]] for m in known],
                textfont=dict(size=11, color="#6b7280"),
                customdata=hover(known), hovertemplate=_MAP_HOVER,
                marker=dict(size=8 if crowded else 16, color=[100.0 * m["local_energy"] for m in known],
                            colorscale="Viridis", line=dict(width=outline, color="white"),
                            colorbar=dict(title=dict(text="local energy (%)", side="right"), thickness=12,
                                          len=0.8, y=0.45)),
            ))
        if unknown:
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in unknown], y=[positions[m["id"]][1] for m in unknown],
                mode="markers+text" if label_points else "markers", name="flatness not computed",
                text=[_point_label(m, ringed) for m in unknown], textposition=[where[m["id"]] for m in unknown],
                textfont=dict(size=11, color="#9aa0a6"),
                customdata=hover(unknown), hovertemplate=_MAP_HOVER,
                marker=dict(size=6 if crowded else 12, color="#c4c8cf", line=dict(width=outline, color="white")),
            ))
    else:
        for sampler, members in by_sampler(placed):
            fig.add_trace(go.Scatter(
                x=[positions[m["id"]][0] for m in members], y=[positions[m["id"]][1] for m in members],
                mode="markers+text" if label_points else "markers", name=sampler or "upload",
                text=[_point_label(m, ringed) for m in members], textposition=[where[m["id"]] for m in members],
                textfont=dict(size=11, color="#6b7280"),
                customdata=hover(members), hovertemplate=_MAP_HOVER,
                marker=dict(size=[sizes[m["id"]] for m in members], color=sampler_color(sampler or None),
                            opacity=0.8 if crowded else 0.9, line=dict(width=outline, color="white")),
            ))
    chosen = [(label, (selection or {}).get(key)) for label, key in zip(SELECTION_LABELS, ("a", "b", "c"), strict=True)]
    chosen = [(label, mid) for label, mid in chosen if mid and mid in positions]
    if len(chosen) >= 2 and chosen[0][0] == "A" and chosen[1][0] == "B":
        (xa, ya), (xb, yb) = positions[chosen[0][1]], positions[chosen[1][1]]
        fig.add_trace(go.Scatter(
            x=[xa, xb], y=[ya, yb], mode="lines", hoverinfo="skip", showlegend=False, name="pair",
            line=dict(color="#1f2430", width=1.5, dash="dash"),
        ))
        if pair_distance is not None:
            unit = " rad" if variant == "geodesic" else ""
            fig.add_annotation(x=(xa + xb) / 2, y=(ya + yb) / 2, text=f"d = {pair_distance:.3g}{unit}",
                               showarrow=False, yshift=10, font=dict(size=12, color="#1f2430"),
                               bgcolor="rgba(255,255,255,0.7)")
    if chosen:
        fig.add_trace(go.Scatter(
            x=[positions[mid][0] for _, mid in chosen], y=[positions[mid][1] for _, mid in chosen],
            mode="markers+text", name="selected", showlegend=False, hoverinfo="skip",
            text=[f"{label} · {names[mid]}" for label, mid in chosen],
            textposition=[_away(positions, mid, [other for _, other in chosen if other != mid]) for _, mid in chosen],
            textfont=dict(size=12, color="#1f2430"),
            marker=dict(size=30, symbol="circle-open", color="#1f2430", line=dict(width=2.5)),
        ))
    caption = map_caption(layout, len(minima)) if layout is not None else ""
    lines = caption.count("<br>") + 1 if caption else 0
    legend = dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom", bgcolor="rgba(0,0,0,0)",
                  font=dict(size=12), title=dict(text="sampler (bigger = flatter)" if color_by == "sampler" else ""))
    common = dict(clickmode="event", hovermode="closest", dragmode="pan", legend=legend,
                  margin=dict(t=64, b=48 + 16 * lines, r=20 if color_by == "sampler" else 40))
    if method == "mds":
        unit = metric_unit(variant)
        base_layout(fig, **common, title=dict(text=f"Minima by {metric_name(variant)} distance", x=0.01, y=0.98,
                                              yanchor="top", font=dict(size=14)))
        fig.update_xaxes(title_text=f"MDS 1 ({unit})" if unit else "MDS 1", zeroline=False, title_standoff=4)
        fig.update_yaxes(title_text=f"MDS 2 ({unit})" if unit else "MDS 2", zeroline=False, scaleanchor="x",
                         scaleratio=1, title_standoff=4)
    else:
        base_layout(fig, **common, title=dict(text="Minima by error (distances not computed yet)", x=0.01, y=0.98,
                                              yanchor="top", font=dict(size=14)))
        fig.update_xaxes(title_text="train error (%)", zeroline=False, title_standoff=4)
        fig.update_yaxes(title_text="test error (%)", zeroline=False, title_standoff=4)
    if caption:
        fig.add_annotation(text=caption, xref="paper", yref="paper", x=0.0, xanchor="left", y=0.0, yanchor="top",
                           yshift=-40, showarrow=False, align="left", font=dict(size=11, color="#4b5563"))
    if placed:
        xy = np.asarray([positions[m["id"]] for m in placed], dtype=np.float64)
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        pad = 0.15 * max(x1 - x0, y1 - y0, 1e-6 if method == "mds" else 1.0)
        fig.update_xaxes(range=[x0 - pad, x1 + pad])
        fig.update_yaxes(range=[y0 - pad, y1 + pad])
    fig.update_layout(uirevision=method + variant)
    return fig


def _away(positions: Mapping[str, Sequence[float]], mid: str, others: Sequence[str]) -> str:
    """The side of a selected minimum's label that faces away from the other selected ones (off the A-B line)."""
    if not others:
        return "top center"
    dx, dy = np.asarray(positions[mid], dtype=float) - np.mean([positions[o] for o in others], axis=0)
    if abs(dy) >= abs(dx):
        return "top center" if dy >= 0 else "bottom center"
    return "middle right" if dx > 0 else "middle left"


_OUTWARD = {  # a label's side for a point moved onto a ring, by the direction from the ring's centre
    (0, 1): "top center", (1, 1): "top right", (1, 0): "middle right", (1, -1): "bottom right",
    (0, -1): "bottom center", (-1, -1): "bottom left", (-1, 0): "middle left", (-1, 1): "top left",
}


def _label_sides(placed: Sequence[Mapping[str, Any]], positions: Mapping[str, Sequence[float]],
                 groups: Sequence[Sequence[str]] = ()) -> dict[str, str]:
    """Label position per point: under it, or above it when an earlier point nearby already has its label under;
    outward for minima moved onto a ring around a shared spot (``groups``)."""
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
    for group in groups:
        members = [mid for mid in group if mid in positions and mid in sides]
        if len(members) < 2:
            continue
        centre = np.mean([positions[mid] for mid in members], axis=0)
        for mid in members:
            angle = math.atan2(positions[mid][1] - centre[1], positions[mid][0] - centre[0])
            octant = round(angle / (math.pi / 4)) % 8
            direction = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)][octant]
            sides[mid] = _OUTWARD[direction]
    return sides


def _point_label(minimum: Mapping[str, Any], ringed: set[str]) -> str:
    """A point's name under it, except for the selected ones (their ring carries 'A · name')."""
    return "" if minimum["id"] in ringed else (minimum.get("name") or minimum["id"])
