"""Plotly figures and conventions shared by the dashboard and the study report: plain dicts in, ``go.Figure`` out.

The dashboard (dashboard/figures/, which talks to the API over HTTP) and the exported study report
(backend/services/report.py) both draw with this module: one colour per sampler, one colour and label per path kind, one
layout, one Kendall's tau, and the report's figures like the paper's (docs/method.md). It imports plotly, numpy and
scipy only: no torch and nothing of toroid.backend, store, worker or dashboard (the dashboard's container has none).

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

__all__ = [
    "FONT",
    "KIND_COLORS",
    "KIND_LABELS",
    "METRIC_LABELS",
    "PAIR_DASHES",
    "SAMPLER_COLORS",
    "SAMPLER_ORDER",
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
    "matrix_heatmap",
    "mean_std",
    "path_points",
    "percent",
    "sampler_color",
    "sampler_rank",
    "sharpness_scatter",
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
    """The report's layout: plotly's own font and legend, a plain title, a fixed height."""
    return base_layout(fig, title=title, font=None, legend=None, margin=dict(t=50), height=height, **kwargs)


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
    """
    fig = go.Figure()
    paths = [p for p in paths if p["kind"] == kind]
    for i, ptype in enumerate(_pair_types(labels, paths)):
        points = [path_points(p["data"], bend_at=0.5, along="x") for p in paths if p["type"] == ptype]
        x = points[0]["distance"]
        errors = [p["train_error"] for p in points if len(p["train_error"]) == len(x)]
        spread = [mean_std([100.0 * e[j] for e in errors]) for j in range(len(x))]
        first, second = ptype.split("-", 1) if "-" in ptype else (ptype, ptype)
        color = sampler_color(first if first == second else second)
        _band(fig, x, [s[0] for s in spread], [s[1] for s in spread], color, f"{ptype} ({len(errors)} pairs)",
              dash=PAIR_DASHES[i % len(PAIR_DASHES)])
    name = KIND_LABELS.get(kind, kind)
    xlabel = "x (bend at 0.5)" if kind == "one_bend" else "x along the path"
    return _static_layout(fig, f"Train error along {name} paths by pair type (mean +- std over pairs)",
                          xaxis_title=xlabel, yaxis_title="train error (%)")


def barrier_heights(labels: Sequence[str], paths: Sequence[Mapping[str, Any]], kinds: Sequence[str]) -> go.Figure:
    """Barrier height (max train error along the path) by pair type, one bar per path kind, std over pairs."""
    fig = go.Figure()
    types = _pair_types(labels, paths)
    for kind in kinds:
        means, stds = [], []
        for ptype in types:
            m, s = mean_std([100.0 * p["data"]["barrier"] for p in paths if p["kind"] == kind and p["type"] == ptype])
            means.append(None if math.isnan(m) else m)
            stds.append(0.0 if math.isnan(s) else s)
        fig.add_trace(go.Bar(x=types, y=means, name=KIND_LABELS.get(kind, kind),
                             marker_color=KIND_COLORS.get(kind, "#444"),
                             error_y=dict(type="data", array=stds, visible=True)))
    return _static_layout(fig, "Barrier heights by pair type", barmode="group", xaxis_title="pair type",
                          yaxis_title="barrier: max train error (%)")


def bend_distances(paths: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Distances of each one-bend point to its endpoints (geodesic; Hamming for flip bends)."""
    bends = [p for p in paths if p["kind"] == "one_bend"]
    names = [f"{p['a']}-{p['b']}" for p in bends]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[p["data"].get("distance_to_a") for p in bends], name="bend to A",
                         marker_color="#3b6fd4"))
    fig.add_trace(go.Bar(x=names, y=[p["data"].get("distance_to_b") for p in bends], name="bend to B",
                         marker_color="#e08a2c"))
    kind = bends[0]["data"].get("kind", "geodesic") if bends else "geodesic"
    return _static_layout(fig, f"One-bend points: distance to each endpoint ({kind})", barmode="group",
                          xaxis_title="pair (A-B)", yaxis_title="distance")


# --- flatness -------------------------------------------------------------------------------------------------------

def flatness_bands(labels: Sequence[str], minima: Sequence[Mapping[str, Any]], curves: Mapping[str, Mapping[str, Any]],
                   binary: bool = False) -> go.Figure:
    """Local energy dE_train(sigma) per sampler, mean +- std over seeds (docs/method.md §6, fig. 1).

    ``curves`` maps a minimum's tag to its LocalEnergy dict; ``minima`` ([{"tag", "label"}]) are grouped by label
    in the order of ``labels``.
    """
    fig = go.Figure()
    for label, members in by_sampler([m for m in minima if m["tag"] in curves], key="label", order=labels):
        group = [curves[m["tag"]] for m in members]
        sigmas = list(group[0]["sigmas"])
        spread = [mean_std([100.0 * c["mean"][i] for c in group]) for i in range(len(sigmas))]
        _band(fig, sigmas, [s[0] for s in spread], [s[1] for s in spread], sampler_color(label),
              f"{label} ({len(group)} seeds)")
    xlabel = "flip fraction" if binary else "sigma (multiplicative noise)"
    return _static_layout(fig, "Local energy by sampler (mean +- std over seeds)", xaxis_title=xlabel,
                          yaxis_title="train error increase dE (%)")


def flatness_scatter(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", text: str = "name",
    order: Sequence[str] | None = None, static: bool = False,
) -> tuple[go.Figure, tuple[float, float] | None]:
    """Local energy at the largest sigma vs test error over the minima that have both, colored by sampler, with
    Kendall's tau in the title (the paper's flatness/generalization comparison, docs/method.md §6 and §9).

    Minima are grouped by their ``key`` (in ``order``, or flattest first) and named by their ``text``. Dashboard: the
    name shows on hover, no points give an empty figure with a message. ``static``: each point labelled in place.
    """
    points = [m for m in minima if m.get("local_energy") is not None and m.get("test_error") is not None]
    groups = by_sampler(points, key, order)
    points = [m for _, members in groups for m in members]
    tau = kendall_tau([m["local_energy"] for m in points], [m["test_error"] for m in points])
    if not points and not static:
        return empty_figure("No minimum has a flatness result yet."), None
    if static:
        look: dict[str, Any] = dict(mode="markers+text", textposition="top center")
        outline = None
    else:
        look = dict(mode="markers",
                    hovertemplate="%{text}<br>local energy %{x:.3f}% · test error %{y:.2f}%<extra></extra>")
        outline = dict(width=1, color="white")
    fig = go.Figure()
    for sampler, members in groups:
        fig.add_trace(go.Scatter(
            x=[100.0 * m["local_energy"] for m in members], y=[100.0 * m["test_error"] for m in members],
            name=sampler or "upload", text=[m.get(text) or m["id"] for m in members], **look,
            marker=dict(size=12, color=sampler_color(sampler), line=outline),
        ))
    if static:
        title = "Local energy vs test error" + (f" (Kendall tau {tau[0]:.2f}, p {tau[1]:.2g})" if tau else "")
        _static_layout(fig, title)
    else:
        if tau is None:
            title = f"Local energy vs test error (n = {len(points)}; Kendall tau needs 3 or more)"
        else:
            title = f"Local energy vs test error: Kendall tau = {tau[0]:.2f} (p = {tau[1]:.2g}, n = {len(points)})"
        base_layout(fig, title=_title(title), hovermode="closest")
    fig.update_xaxes(title_text="local energy at the largest sigma (%)")
    fig.update_yaxes(title_text="test error (%)")
    return fig, tau


def sharpness_scatter(
    minima: Sequence[Mapping[str, Any]], key: str = "sampler", text: str = "name",
    order: Sequence[str] | None = None, static: bool = False,
) -> tuple[go.Figure, tuple[float, float] | None]:
    """Top Hessian eigenvalue of the normalized network (``top_eigenvalue``) vs test error over the minima that have
    both, colored by sampler, with Kendall's tau (docs/method.md §6, "Hessian sharpness on the normalized network").
    Hover (dashboard) or the labels (``static``) also give the Hessian trace (``hessian_trace``) when known."""
    points = [m for m in minima if m.get("top_eigenvalue") is not None and m.get("test_error") is not None]
    groups = by_sampler(points, key, order)
    points = [m for _, members in groups for m in members]
    tau = kendall_tau([m["top_eigenvalue"] for m in points], [m["test_error"] for m in points])
    if not points and not static:
        return empty_figure("No minimum has a sharpness result yet."), None
    fig = go.Figure()
    for sampler, members in groups:
        traces = ["n/a" if m.get("hessian_trace") is None else f"{m['hessian_trace']:.4g}" for m in members]
        look: dict[str, Any] = (dict(mode="markers+text", textposition="top center") if static else dict(
            mode="markers", customdata=traces,
            hovertemplate="%{text}<br>top eigenvalue %{x:.4g} · trace %{customdata} · test error %{y:.2f}%"
                          "<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=[m["top_eigenvalue"] for m in members], y=[100.0 * m["test_error"] for m in members],
            name=sampler or "upload", text=[m.get(text) or m["id"] for m in members], **look,
            marker=dict(size=12, color=sampler_color(sampler), line=None if static else dict(width=1, color="white")),
        ))
    name = "Top Hessian eigenvalue (normalized network) vs test error"
    if static:
        _static_layout(fig, name + (f" (Kendall tau {tau[0]:.2f}, p {tau[1]:.2g})" if tau else ""))
    else:
        detail = (f"n = {len(points)}; Kendall tau needs 3 or more" if tau is None else
                  f"Kendall tau = {tau[0]:.2f}, p = {tau[1]:.2g}, n = {len(points)}")
        base_layout(fig, title=_title(f"{name}:<br>{detail}"), hovermode="closest")  # two lines: the modebar fits
    fig.update_xaxes(title_text="top Hessian eigenvalue of the normalized network")
    fig.update_yaxes(title_text="test error (%)")
    return fig, tau


# --- distances ------------------------------------------------------------------------------------------------------

def matrix_heatmap(matrix: Sequence[Sequence[float]] | Any, labels: Sequence[str], title: str,
                   static: bool = False) -> go.Figure:
    """A distance matrix as a heatmap, first row at the top. Dashboard: blue, square cells with their values (up to
    12 rows); ``static``: Viridis, values on hover only."""
    heat: dict[str, Any] = dict(z=matrix, x=list(labels), y=list(labels), colorbar=dict(title=dict(text="distance")))
    if static:
        heat.update(colorscale="Viridis", hovertemplate="%{y} - %{x}: %{z:.4g}<extra></extra>")
    else:
        heat.update(colorscale="Blues", hovertemplate="%{y}<br>%{x}<br>distance %{z:.4g}<extra></extra>",
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
