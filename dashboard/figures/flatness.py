"""Local-energy curves, Kendall's tau text, and the distance heatmap ordered by sampler (docs/method.md secs. 5-6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from toroid.plots import (
    METRIC_LABELS,
    METRIC_UNITS,
    SIGMA_TITLE,
    base_layout,
    matrix_heatmap,
    sampler_rank,
    zero_visible_range,
)

# --- flatness -------------------------------------------------------------------------------------------------------

def flatness_curves(curves: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Local energy dE_train(sigma) (percentage points: the increase of the train error under multiplicative noise of
    relative size sigma, docs/method.md §6) with the standard error of each mean as error bars (what decides whether
    two curves differ; the paper's bars, the std over noise samples, are in the hover with the sample count and
    whether the sample cap stopped that sigma), one trace per minimum.

    ``curves``: [{"label", "color", "dash", "symbol", "data": LocalEnergy dict}] (``dash`` and ``symbol`` optional:
    ``toroid.plots.minimum_styles`` gives two minima of one sampler their own). The y range starts below 0 so that a
    curve at 0 stays visible above the axis line.
    """
    fig = go.Figure()
    binary = False
    drawn: list[float] = []
    for curve in curves:
        data = curve["data"]
        binary = binary or bool(data.get("binary"))
        count = len(data["sigmas"])
        capped = list(data.get("capped") or [False] * count)
        extra = [[100.0 * se, 100.0 * std, n, " · sample cap reached" if cap else ""]
                 for se, std, n, cap in zip(data["stderr"], data["std"], data.get("samples") or [None] * count, capped,
                                            strict=False)]
        drawn += [100.0 * (m + se) for m, se in zip(data["mean"], data["stderr"], strict=False)]
        noise = "flip fraction" if data.get("binary") else "sigma"
        fig.add_trace(go.Scatter(
            x=data["sigmas"], y=[100.0 * v for v in data["mean"]],
            error_y=dict(type="data", array=[100.0 * v for v in data["stderr"]], visible=True, thickness=1.2,
                         width=3),
            mode="lines+markers", name=curve["label"],
            line=dict(color=curve.get("color"), width=2, dash=curve.get("dash") or "solid"),
            marker=dict(symbol=curve.get("symbol") or "circle", size=7),
            customdata=extra,
            hovertemplate=f"{curve['label']}<br>{noise} %{{x:.3g}} · dE_train %{{y:.3f}} ± %{{customdata[0]:.3f}} "
                          "percentage points (SE)<br>std over noise samples %{customdata[1]:.3f} · n "
                          "%{customdata[2]}%{customdata[3]}<extra></extra>",
        ))
    noise = "a random fraction eps of the binary weights flipped" if binary else \
        "multiplicative noise of relative size sigma"
    base_layout(fig, hovermode="closest", margin=dict(t=56),
                title=dict(text=f"dE_train: increase of the train error under {noise}<br>(mean over noise samples; "
                                "bars: ± 1 standard error of the mean)", x=0.01, y=0.96, yanchor="top",
                           font=dict(size=13)),
                legend=dict(x=0.02, y=0.98, xanchor="left", yanchor="top", bordercolor="#e5e7eb", borderwidth=1))
    fig.update_xaxes(title_text="eps: fraction of the binary weights whose sign is flipped" if binary
                     else SIGMA_TITLE)
    fig.update_yaxes(title_text="local energy dE_train (percentage points)", range=zero_visible_range(drawn,
                                                                                                      floor=0.01),
                     zeroline=True)
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
    unit = METRIC_UNITS.get(variant)  # docs/method.md §5: rad, RMS per parameter, fraction of weights
    return matrix_heatmap(matrix, labels, f"{title}, in {unit}" if unit else title, unit=unit)


