"""Plotly figures and conventions shared by the dashboard and the study report: plain dicts in, ``go.Figure`` out.

The dashboard (dashboard/figures/, which talks to the API over HTTP) and the exported study report
(backend/services/report.py) both draw with this module: one colour per sampler, one colour and label per path kind, one
layout, one Kendall's tau, and the report's figures like the paper's (docs/method.md). It imports plotly, numpy and
scipy only: no torch and nothing of toroid.backend, store, worker or dashboard (the dashboard's container has none).

Every figure says what it draws and in which unit (docs/method.md §§5-7): the units, definitions and readable-axis
helpers live in :mod:`toroid.plot_units` and are re-exported here. Minima compared in one figure each get a look of
their own (``minimum_styles``).

Errors arrive as fractions in [0, 1] (the API's convention) and are shown in percent. Builders with a ``static``
flag draw either for the interactive dashboard (the default: hover details, a small title at the left) or for the
static HTML report (``static=True``: points labelled in place, a plain title, a fixed height).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from scipy import stats

from toroid.plot_units import (
    BARRIER_DEFINITION,
    METRIC_UNITS,
    POSITION_TITLE,
    SIGMA_TITLE,
    label_positions,
    length_definition,
    length_text,
    log_axis,
    natural_key,
    shade,
    zero_visible_range,
)

__all__ = [
    "FONT",
    "BARRIER_DEFINITION",
    "KIND_COLORS",
    "KIND_LABELS",
    "METRIC_LABELS",
    "METRIC_UNITS",
    "MINIMUM_SYMBOLS",
    "PAIR_DASHES",
    "POSITION_TITLE",
    "SAMPLER_COLORS",
    "SAMPLER_ORDER",
    "SIGMA_TITLE",
    "UPLOAD_COLOR",
    "barrier_heights",
    "barrier_profiles",
    "base_layout",
    "bend_distances",
    "bend_profile",
    "by_sampler",
    "empty_figure",
    "flatness_bands",
    "flatness_scatter",
    "kendall_tau",
    "label_positions",
    "length_definition",
    "length_text",
    "log_axis",
    "matrix_heatmap",
    "mean_std",
    "minimum_styles",
    "path_points",
    "percent",
    "sampler_color",
    "sampler_rank",
    "sharpness_scatter",
    "zero_visible_range",
]

# --- conventions ----------------------------------------------------------------------------------------------------

SAMPLER_COLORS: dict[str, str] = {
    "rsgd": "#2a9d6f",
    "sgd": "#3b6fd4",
    "adv": "#d1495b",
    "sam": "#8e5bd0",
    "entropy_sgd": "#e08a2c",
    "binary": "#7a6a58",
}
UPLOAD_COLOR = "#8a8f98"
_EXTRA_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#8c564b", "#1f77b4")
SAMPLER_ORDER = ("rsgd", "sgd", "sam", "entropy_sgd", "adv", "binary")  # flattest first

KIND_LABELS: dict[str, str] = {
    "linear": "linear",
    "linear_aligned": "linear aligned",
    "geodesic": "geodesic",
    "one_bend": "one-bend",
    "flip": "flip",
}
KIND_COLORS: dict[str, str] = {
    "linear": "#9aa0a6",
    "linear_aligned": "#e08a2c",
    "geodesic": "#3b6fd4",
    "one_bend": "#2a9d6f",
    "flip": "#8e5bd0",
}
METRIC_LABELS: dict[str, str] = {
    "geodesic": "geodesic (normalized + aligned)",
    "raw": "Euclidean, raw",
    "aligned": "Euclidean, aligned",
    "normalized": "Euclidean, normalized",
    "normalized_aligned": "Euclidean, normalized + aligned",
    "hamming": "Hamming, aligned",
    "hamming_raw": "Hamming, raw",
}
PAIR_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")  # one line style per pair type
#: Marker symbols that tell minima of one sampler apart (with PAIR_DASHES for their curves)
MINIMUM_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "triangle-down", "cross")
FONT = dict(family="Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=13, color="#1f2430")


def percent(value: float | None, digits: int = 2, style: str = "f") -> str:
    """A fraction in [0, 1] as a percent string ('n/a' for None/NaN); ``style`` is the format type: ``f``, ``digits``
    after the point, or ``g``, ``digits`` significant ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * value:.{digits}{style}}%"


def sampler_color(sampler: str | None) -> str:
    """The fixed color of a sampler (uploads without provenance: gray); unknown names get a stable extra color."""
    if not sampler:
        return UPLOAD_COLOR
    if sampler in SAMPLER_COLORS:
        return SAMPLER_COLORS[sampler]
    return _EXTRA_COLORS[sum(map(ord, sampler)) % len(_EXTRA_COLORS)]


def sampler_rank(sampler: str | None) -> tuple[int, str]:
    """Sort key of samplers: flattest first (``SAMPLER_ORDER``), then other names, uploads (no sampler) last."""
    if sampler in SAMPLER_ORDER:
        return SAMPLER_ORDER.index(sampler), sampler
    return (len(SAMPLER_ORDER) + (0 if sampler else 1), sampler or "")


def by_sampler(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", order: Sequence[str] | None = None
) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """``minima`` grouped by their ``key`` (uploads without one: ``""``) as (sampler, members) pairs: in ``order``
    when given (samplers without minima left out, and so are minima of samplers not in it), else flattest first."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for m in minima:
        groups.setdefault(m.get(key) or "", []).append(m)
    names = [s for s in order if s in groups] if order is not None else sorted(groups, key=sampler_rank)
    return [(s, groups[s]) for s in names]


_SHADES = (0.0, -0.35, 0.3, -0.55, 0.45)  # the sampler's colour, darker, lighter, ...


def minimum_styles(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", text: str = "name"
) -> dict[str, dict[str, Any]]:
    """One look per minimum where minima are compared: the sampler's colour family (the first minimum of a sampler
    gets its colour, the next ones darker and lighter shades), and a dash and a marker symbol of their own, so that two
    minima of one sampler differ even in grey. Minima of a sampler are numbered by their ``text`` (natural order,
    then id), so a minimum keeps its look in every figure drawn from the same list.

    Returns {id: {"color", "dash", "symbol", "index"}}.
    """
    styles: dict[str, dict[str, Any]] = {}
    for sampler, members in by_sampler(minima, key):
        base = sampler_color(sampler or None)
        ordered = sorted(members, key=lambda m: (natural_key(str(m.get(text) or "")), str(m.get("id"))))
        for i, m in enumerate(ordered):
            styles[str(m.get("id"))] = {"color": shade(base, _SHADES[i % len(_SHADES)]),
                                        "dash": PAIR_DASHES[i % len(PAIR_DASHES)],
                                        "symbol": MINIMUM_SYMBOLS[i % len(MINIMUM_SYMBOLS)], "index": i}
    return styles


# --- statistics -----------------------------------------------------------------------------------------------------

def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Kendall's tau and its p-value (scipy), or None with fewer than 3 points or a constant variable."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    result = stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and population std of the finite values (std 0 for one value; NaN, NaN for none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.pstdev(vals) if len(vals) > 1 else 0.0)


# --- layout ---------------------------------------------------------------------------------------------------------

def base_layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    """The common layout (plotly_white, ``FONT``, margins, a translucent legend), overridden by ``kwargs``: a dict
    merges into the default's dict, a None drops the default."""
    settings: dict[str, Any] = {
        "template": "plotly_white",
        "font": FONT,
        "margin": dict(l=60, r=20, t=40, b=50),
        "legend": dict(bgcolor="rgba(255,255,255,0.8)"),
    }
    for key, value in kwargs.items():
        if value is None:
            settings.pop(key, None)
        elif isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    fig.update_layout(**settings)
    return fig


def _static_layout(fig: go.Figure, title: str, height: int = 420, **kwargs: Any) -> go.Figure:
    """The report's layout: plotly's own font and legend (unless ``kwargs`` set them), a plain title, a fixed
    height."""
    settings: dict[str, Any] = {"font": None, "legend": None, "margin": dict(t=50), **kwargs}
    if isinstance(kwargs.get("margin"), dict):
        settings["margin"] = {"t": 50, **kwargs["margin"]}
    return base_layout(fig, title=title, height=height, **settings)


def _title(text: str) -> dict[str, Any]:
    """The dashboard's figure title: small, at the left."""
    return dict(text=text, x=0.01, font=dict(size=14))


def empty_figure(message: str) -> go.Figure:
    """A blank figure carrying ``message`` in its middle (used before data exists)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#6b7280"))
    base_layout(fig)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    if len(h) != 6:
        return f"rgba(120,120,120,{alpha})"
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _band(fig: go.Figure, x: list[float], mean: list[float], std: list[float], color: str, name: str,
          dash: str = "solid") -> None:
    """A mean curve with a shaded +- std band (clipped at 0), sharing one legend entry."""
    upper = [m + s for m, s in zip(mean, std, strict=True)]
    lower = [max(0.0, m - s) for m, s in zip(mean, std, strict=True)]
    fig.add_trace(go.Scatter(x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=_rgba(color, 0.15),
                             line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=name))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name,
                             line=dict(color=color, dash=dash, width=2), marker=dict(size=5)))


# --- paths ----------------------------------------------------------------------------------------------------------

def _abscissa(profile: Mapping[str, Any], along: str = "distance") -> list[float]:
    """The profile's ``along`` values (``distance`` or ``x``), the other ones when those are missing or short."""
    n = len(profile.get("train_error") or [])
    values = profile.get(along)
    if values and len(values) == n:
        return [float(v) for v in values]
    return [float(v) for v in (profile.get("x" if along == "distance" else "distance") or [])[:n]]


def bend_profile(bend: Mapping[str, Any], bend_at: float | None = None, along: str = "distance") -> dict[str, Any]:
    """A one-bend result (two segments A->bend->B) as one profile over [0, 1]; ``bend_at`` is the bend's abscissa.

    By default the segments are placed in proportion to their lengths (``distance_to_a``, ``distance_to_b``);
    a given ``bend_at`` (the report: 0.5) places the bend there. The shared bend point appears once.
    """
    profiles = bend.get("profiles") or []
    if len(profiles) != 2:
        raise ValueError(f"a one-bend result has two path segments, got {len(profiles)}")
    to_a, to_b = float(bend.get("distance_to_a") or 0.0), float(bend.get("distance_to_b") or 0.0)
    share = to_a / (to_a + to_b) if to_a + to_b > 0 else 0.5
    if bend_at is not None:
        share = bend_at
    first, second = profiles
    d1 = _abscissa(first, along)
    d2 = _abscissa(second, along)
    return {
        "distance": [share * d for d in d1] + [share + (1 - share) * d for d in d2[1:]],
        "train_error": list(first["train_error"]) + list(second["train_error"][1:]),
        "test_error": list(first["test_error"]) + list(second["test_error"][1:]),
        "barrier": float(bend["barrier"]),
        "test_barrier": max(float(first.get("test_barrier", max(first["test_error"]))),
                            float(second.get("test_barrier", max(second["test_error"])))),
        "length": to_a + to_b,
        "points": len(d1) + len(d2) - 1,
        "bend_at": share,
        "complete": True,
    }


def path_points(data: Mapping[str, Any], bend_at: float | None = None, along: str = "distance") -> dict[str, Any]:
    """Normalize a PathProfile dict, a BendResult dict or a job's partial dict into
    ``{"distance", "train_error", "test_error", "barrier", "test_barrier", "length", "points", "complete"}``
    (``barrier`` is None for partial data: it is known only when the whole path has been evaluated).

    ``distance`` is the abscissa: the normalized distance along the path, or with ``along="x"`` the path parameter
    (they differ on flip paths only); ``bend_at`` as in :func:`bend_profile`.
    """
    if "profiles" in data:
        return bend_profile(data, bend_at, along)
    train = [float(v) for v in data.get("train_error") or []]
    test = [float(v) for v in data.get("test_error") or []]
    complete = "barrier" in data
    return {
        "distance": _abscissa(data, along),
        "train_error": train,
        "test_error": test[: len(train)] if test else [],
        "barrier": float(data["barrier"]) if complete else None,
        "test_barrier": float(data["test_barrier"]) if complete and "test_barrier" in data else None,
        "length": float(data["length"]) if "length" in data else None,
        "points": int(data["points"]) if data.get("points") else (len(train) if complete else None),
        "bend_at": None,
        "complete": complete,
    }


def _pair_types(labels: Sequence[str], paths: Sequence[Mapping[str, Any]]) -> list[str]:
    """The pair types of ``paths`` ("rsgd-sgd", ...) in the order of the samplers' ``labels``, unknown ones last."""
    seen = {p["type"] for p in paths}
    order = [f"{a}-{b}" for i, a in enumerate(labels) for b in labels[i:]]
    return [t for t in order if t in seen] + sorted(seen - set(order))


def barrier_profiles(labels: Sequence[str], paths: Sequence[Mapping[str, Any]], kind: str) -> go.Figure:
    """Train error along the ``paths`` of ``kind``: per pair type, mean +- std over its pairs (Fig. 2 of the paper).

    ``paths``: [{"type", "kind", "data": PathProfile or BendResult dict}]; one-bend paths have their bend at 0.5.
    Each legend entry gives the pair type's mean barrier (highest train error along the path, docs/method.md §7) and
    mean length with its unit; the y range starts below 0 so that a path at 0% stays visible.
    """
    fig = go.Figure()
    paths = [p for p in paths if p["kind"] == kind]
    drawn: list[float] = []
    for i, ptype in enumerate(_pair_types(labels, paths)):
        members = [p for p in paths if p["type"] == ptype]
        points = [path_points(p["data"], bend_at=0.5, along="x") for p in members]
        x = points[0]["distance"]
        errors = [p["train_error"] for p in points if len(p["train_error"]) == len(x)]
        spread = [mean_std([100.0 * e[j] for e in errors]) for j in range(len(x))]
        first, second = ptype.split("-", 1) if "-" in ptype else (ptype, ptype)
        color = sampler_color(first if first == second else second)
        barrier, barrier_std = mean_std([100.0 * p["barrier"] for p in points if p["barrier"] is not None])
        length, _ = mean_std([p["length"] for p in points])
        bend_kind = members[0]["data"].get("kind") if kind == "one_bend" else None
        name = f"{ptype} ({len(errors)} pairs): barrier {barrier:.2f} ± {barrier_std:.2f}%"
        if not math.isnan(length):
            name += f", length {length_text(kind, length, bend_kind)}"
        _band(fig, x, [s[0] for s in spread], [s[1] for s in spread], color, name,
              dash=PAIR_DASHES[i % len(PAIR_DASHES)])
        drawn += [s[0] + s[1] for s in spread]
    label = KIND_LABELS.get(kind, kind)
    xlabel = ("position x along the path (0 = A, bend at 0.5, 1 = B)" if kind == "one_bend"
              else "position x along the path: distance from A / path length (0 = A, 1 = B)")
    fig = _static_layout(fig, f"Train error along {label} paths by pair type (mean ± std over pairs)<br>"
                              f"<span style='font-size:13px'>{BARRIER_DEFINITION} (the raw maximum); length = "
                              "distance from A to B</span>", xaxis_title=xlabel, yaxis_title="train error (%)",
                         legend=dict(orientation="h", y=-0.22, yanchor="top", x=0, xanchor="left"),
                         margin=dict(t=70, b=110))
    fig.update_yaxes(range=zero_visible_range(drawn), zeroline=True)
    return fig


def barrier_heights(labels: Sequence[str], paths: Sequence[Mapping[str, Any]], kinds: Sequence[str]) -> go.Figure:
    """Barrier height (max train error along the path) by pair type, one bar per path kind, std over pairs."""
    fig = go.Figure()
    types = _pair_types(labels, paths)
    top = max([100.0 * p["data"]["barrier"] for p in paths if p["kind"] in kinds], default=0.0)
    for kind in kinds:
        means, stds = [], []
        for ptype in types:
            m, s = mean_std([100.0 * p["data"]["barrier"] for p in paths if p["kind"] == kind and p["type"] == ptype])
            means.append(None if math.isnan(m) else m)
            stds.append(0.0 if math.isnan(s) else s)
        fig.add_trace(go.Bar(x=types, y=means, name=KIND_LABELS.get(kind, kind),
                             marker_color=KIND_COLORS.get(kind, "#444"),
                             error_y=dict(type="data", array=stds, visible=True),
                             # every bar states its value, a 0% one too; inside a tall bar at its foot, clear of
                             # the error bar at its top
                             text=[None if m is None else f"{m:.2f}%" for m in means], textfont=dict(size=10),
                             textposition=["inside" if m is not None and m > 0.2 * top else "outside" for m in means],
                             insidetextanchor="start", cliponaxis=False))
    return _static_layout(fig, "Barrier heights by pair type (mean ± std over pairs)", barmode="group",
                          xaxis_title="pair type (samplers of A and B)",
                          yaxis_title="barrier: highest train error along the path (%)")


def bend_distances(paths: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Distances of each one-bend point to its endpoints, in the bend kind's metric and unit: geodesic (rad),
    per-parameter Euclidean RMS for straight segments, Hamming fraction for flip bends (docs/samplers.md)."""
    bends = [p for p in paths if p["kind"] == "one_bend"]
    names = [f"{p['a']}-{p['b']}" for p in bends]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[p["data"].get("distance_to_a") for p in bends], name="bend to A",
                         marker_color="#3b6fd4"))
    fig.add_trace(go.Bar(x=names, y=[p["data"].get("distance_to_b") for p in bends], name="bend to B",
                         marker_color="#e08a2c"))
    kind = bends[0]["data"].get("kind", "geodesic") if bends else "geodesic"
    metric, unit = {"geodesic": ("geodesic distance", "rad"), "flip": ("Hamming distance", "fraction of weights")}.get(
        kind, ("Euclidean distance", "RMS per parameter"))
    return _static_layout(fig, f"One-bend points: distance to each endpoint ({KIND_LABELS.get(kind, kind)} bends)",
                          barmode="group", xaxis_title="pair (A-B)", yaxis_title=f"{metric} ({unit})")


# --- flatness -------------------------------------------------------------------------------------------------------

_LOCAL_ENERGY_TITLE = "local energy dE_train(sigma): increase of the train error (percentage points)"


def flatness_bands(labels: Sequence[str], minima: Sequence[Mapping[str, Any]], curves: Mapping[str, Mapping[str, Any]],
                   binary: bool = False) -> go.Figure:
    """Local energy dE_train(sigma) per sampler, mean +- std over seeds (docs/method.md §6, fig. 1).

    ``curves`` maps a minimum's tag to its LocalEnergy dict; ``minima`` ([{"tag", "label"}]) are grouped by label
    in the order of ``labels``.
    """
    fig = go.Figure()
    drawn: list[float] = []
    for label, members in by_sampler([m for m in minima if m["tag"] in curves], key="label", order=labels):
        group = [curves[m["tag"]] for m in members]
        sigmas = list(group[0]["sigmas"])
        spread = [mean_std([100.0 * c["mean"][i] for c in group]) for i in range(len(sigmas))]
        _band(fig, sigmas, [s[0] for s in spread], [s[1] for s in spread], sampler_color(label),
              f"{label} ({len(group)} seeds)")
        drawn += [s[0] + s[1] for s in spread]
    xlabel = "flip fraction eps: share of the binary weights whose sign is flipped" if binary else SIGMA_TITLE
    fig = _static_layout(fig, "Local energy by sampler (mean ± std over seeds)", xaxis_title=xlabel,
                         yaxis_title=_LOCAL_ENERGY_TITLE.replace(": increase", ":<br>increase"))
    fig.update_yaxes(range=zero_visible_range(drawn, floor=0.01), zeroline=True)
    return fig


def _minimum_label(m: Mapping[str, Any], text: str) -> str:
    return str(m.get(text) or m.get("name") or m.get("id"))


def _point_traces(
    fig: go.Figure, groups: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], x_of: Any, text: str,
    styles: Mapping[str, Mapping[str, Any]], static: bool, log_x: bool, hover: str, meta: Any = None,
) -> None:
    """One trace per minimum, grouped in the legend under its sampler: the minimum's colour shade and marker symbol
    (``minimum_styles``), its name printed next to the marker (positions that do not overprint) and in the legend,
    and the full details on hover (dashboard)."""
    members = [m for _, ms in groups for m in ms]
    sides = label_positions([x_of(m) for m in members], [100.0 * m["test_error"] for m in members], log_x=log_x)
    side = {id(m): where for m, where in zip(members, sides, strict=True)}
    fallback = minimum_styles(members, text=text)
    for sampler, ms in groups:
        group = sampler or "upload"
        ms = sorted(ms, key=lambda m: (natural_key(_minimum_label(m, text)), str(m.get("id"))))  # legend: sgd-0, sgd-1
        for k, m in enumerate(ms):
            style = styles.get(str(m.get("id"))) or fallback.get(str(m.get("id"))) or {}
            label = _minimum_label(m, text)
            details = [group, percent(m.get("train_error")),
                       " · ".join(str(m[f]) for f in ("architecture", "dataset") if m.get(f)) or ""]
            fig.add_trace(go.Scatter(
                x=[x_of(m)], y=[100.0 * m["test_error"]], name=label, text=[label], mode="markers+text",
                textposition=side[id(m)], textfont=dict(size=11 if static else 12, color="#1f2430"),
                legendgroup=group, legendgrouptitle=dict(text=group) if k == 0 else None,
                marker=dict(size=12, color=style.get("color", sampler_color(sampler or None)),
                            symbol=style.get("symbol", "circle"), line=dict(width=1, color="white")),
                customdata=[details], cliponaxis=False, meta=None if meta is None else meta(m),
                hovertemplate=None if static else f"<b>{label}</b> (%{{customdata[0]}})<br>{hover}<br>"
                                                  "test error %{y:.2f}% · train error %{customdata[1]}"
                                                  "<br>%{customdata[2]}<extra></extra>",
                hoverinfo="text+x+y" if static else None,
            ))


def flatness_scatter(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", text: str = "name",
    order: Sequence[str] | None = None, static: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[go.Figure, tuple[float, float] | None]:
    """Local energy at the largest sigma vs test error over the minima that have both, with Kendall's tau in the
    title (the paper's flatness/generalization comparison, docs/method.md §6 and §9).

    Minima are grouped by their ``key`` (in ``order``, or flattest first) and named by their ``text``: one trace per
    minimum, in its sampler's colour family with a marker symbol of its own (``styles``, by default
    ``minimum_styles(minima)``: pass the same to every figure of a view), its name printed next to it. The local
    energy axis turns logarithmic (ticks at powers of ten) when the values span a factor of 10. Dashboard: full
    details on hover; no points give an empty figure with a message.
    """
    styles = minimum_styles(minima, key, text) if styles is None else styles
    points = [m for m in minima if m.get("local_energy") is not None and m.get("test_error") is not None]
    groups = by_sampler(points, key, order)
    points = [m for _, members in groups for m in members]
    tau = kendall_tau([m["local_energy"] for m in points], [m["test_error"] for m in points])
    if not points and not static:
        return empty_figure("No minimum has a flatness result yet."), None
    log = log_axis([100.0 * m["local_energy"] for m in points])
    fig = go.Figure()
    _point_traces(fig, groups, lambda m: 100.0 * m["local_energy"], text, styles, static, log is not None,
                  "local energy at the largest sigma %{x:.3f} percentage points of train error")
    if static:
        title = "Local energy vs test error" + (f" (Kendall tau {tau[0]:.2f}, p {tau[1]:.2g})" if tau else "")
        _static_layout(fig, title)
    else:
        if tau is None:
            title = f"Local energy vs test error (n = {len(points)}; Kendall tau needs 3 or more)"
        else:
            title = f"Local energy vs test error: Kendall tau = {tau[0]:.2f} (p = {tau[1]:.2g}, n = {len(points)})"
        base_layout(fig, title=_title(title), hovermode="closest")
    fig.update_layout(legend=dict(groupclick="toggleitem"))
    fig.update_xaxes(title_text="local energy dE_train at the largest sigma (percentage points)"
                                + (", log scale" if log else ""), **(log or {}))
    fig.update_yaxes(title_text="test error (%)")
    return fig, tau


def sharpness_scatter(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", text: str = "name",
    order: Sequence[str] | None = None, static: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[go.Figure, tuple[float, float] | None]:
    """Top Hessian eigenvalue of the normalized network (``top_eigenvalue``) vs test error over the minima that have
    both, with Kendall's tau (docs/method.md §6, "Hessian sharpness on the normalized network"): one trace per
    minimum drawn as in :func:`flatness_scatter` (``styles``, names next to the points, a log axis with ticks at powers
    of ten when the eigenvalues span a factor of 10). Hover (dashboard) also gives the Hessian trace
    (``hessian_trace``) when known."""
    styles = minimum_styles(minima, key, text) if styles is None else styles
    points = [m for m in minima if m.get("top_eigenvalue") is not None and m.get("test_error") is not None]
    groups = by_sampler(points, key, order)
    points = [m for _, members in groups for m in members]
    tau = kendall_tau([m["top_eigenvalue"] for m in points], [m["test_error"] for m in points])
    if not points and not static:
        return empty_figure("No minimum has a sharpness result yet."), None
    log = log_axis([m["top_eigenvalue"] for m in points])
    fig = go.Figure()
    _point_traces(fig, groups, lambda m: m["top_eigenvalue"], text, styles, static, log is not None,
                  "top eigenvalue %{x:.4g} · trace %{meta}",
                  meta=lambda m: "n/a" if m.get("hessian_trace") is None else f"{m['hessian_trace']:.4g}")
    if static:
        _static_layout(fig, "Top Hessian eigenvalue (normalized network) vs test error"
                       + (f" (Kendall tau {tau[0]:.2f}, p {tau[1]:.2g})" if tau else ""))
    else:
        detail = (f"n = {len(points)}; Kendall tau needs 3 or more" if tau is None else
                  f"Kendall tau = {tau[0]:.2f}, p = {tau[1]:.2g}, n = {len(points)}")
        # two short lines: the modebar fits beside them
        base_layout(fig, title=_title(f"Top Hessian eigenvalue vs test error:<br>{detail}"), hovermode="closest")
    fig.update_layout(legend=dict(groupclick="toggleitem"))
    fig.update_xaxes(title_text="top eigenvalue of the Hessian of the train loss (cross-entropy, nats)<br>"
                                "with respect to the normalized network's parameters" + (", log scale" if log else ""),
                     **(log or {}))
    fig.update_yaxes(title_text="test error (%)")
    return fig, tau


# --- distances ------------------------------------------------------------------------------------------------------

def matrix_heatmap(matrix: Sequence[Sequence[float]] | Any, labels: Sequence[str], title: str,
                   static: bool = False, unit: str | None = None) -> go.Figure:
    """A distance matrix as a heatmap, first row at the top. Dashboard: blue, square cells with their values (up to
    12 rows); ``static``: Viridis, values on hover only. ``unit`` (``METRIC_UNITS``) goes into the colour bar's
    title and the hover."""
    colorbar = "distance" if unit is None else f"distance<br>({unit})"
    heat: dict[str, Any] = dict(z=matrix, x=list(labels), y=list(labels), colorbar=dict(title=dict(text=colorbar)))
    suffix = f" {unit}" if unit else ""
    if static:
        heat.update(colorscale="Viridis", hovertemplate=f"%{{y}} - %{{x}}: %{{z:.4g}}{suffix}<extra></extra>")
    else:
        heat.update(colorscale="Blues", hovertemplate=f"%{{y}}<br>%{{x}}<br>distance %{{z:.4g}}{suffix}<extra></extra>",
                    texttemplate="%{z:.3g}" if len(labels) <= 12 else None, xgap=1, ygap=1)
        heat["colorbar"]["thickness"] = 12
    fig = go.Figure(go.Heatmap(**heat))
    fig.update_yaxes(autorange="reversed")
    if static:
        return _static_layout(fig, title, height=400)
    base_layout(fig, title=_title(title), margin=dict(l=160, r=20, t=40, b=140))
    fig.update_xaxes(showgrid=False, constrain="domain")
    fig.update_yaxes(scaleanchor="x", scaleratio=1, showgrid=False, constrain="domain")
    return fig
