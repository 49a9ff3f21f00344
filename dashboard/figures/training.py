"""Training curves of a running or finished training job."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from toroid.plots import (
    base_layout,
    empty_figure,
)

#: What ``train_loss`` is (docs/api.md, the train job's ``partial``): the mean over the training set of the
#: cross-entropy with the natural log (logistic loss for one-output networks), from a full pass after each epoch.
LOSS_TITLE = "cross-entropy per sample (nats)"
TRAIN, TEST, LOSS = "#3b6fd4", "#d1495b", "#6b7280"
CONFUSION_LABEL = "confusion pre-training (random labels)"
LEGEND_TOP_PX = 40  # the title's band above the legend
LEGEND_ROW_PX = 21  # one row of the horizontal legend


def _series(partial: Mapping[str, Any], key: str, n: int) -> list[float | None]:
    """``partial[key]`` as ``n`` values (None where missing or not a finite number)."""
    values = partial.get(key)
    values = list(values) if isinstance(values, list) else []
    out: list[float | None] = []
    for v in values[:n]:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else None)
    return out + [None] * (n - len(out))


def pretraining_points(partial: Mapping[str, Any]) -> int:
    """How many of the first points are a pre-training phase (ADV's confusion set, docs/samplers.md): the length
    of ``confusion_epoch`` (reported only while it runs, so it covers the first points), else, in records written
    before the pre-training counted its own epochs, the leading points at epoch 0 while ``phase`` is confusion."""
    epochs = list(partial.get("epoch") or [])
    confusion = partial.get("confusion_epoch")
    if isinstance(confusion, list) and confusion:
        return min(len(confusion), len(epochs))
    if partial.get("phase") == "confusion":
        return next((i for i, e in enumerate(epochs) if e != 0), len(epochs))
    return 0


def epoch_axis(partial: Mapping[str, Any]) -> list[float]:
    """The x of every point, in epochs: training epochs as reported (1, 2, ...), a pre-training phase's epochs
    counted back from 0 (its last epoch at 0, its first at 1 - k), so the clean training starts at epoch 1."""
    epochs = list(partial.get("epoch") or [])
    pre = pretraining_points(partial)
    xs = [float(i + 1 - pre) for i in range(pre)]
    for i, e in enumerate(epochs[pre:], start=pre):
        xs.append(float(e) if isinstance(e, int | float) and not isinstance(e, bool) else float(i + 1 - pre))
    return xs


def loss_axis(values: Sequence[float | None]) -> dict[str, Any]:
    """The loss axis: logarithmic with a tick at each power of ten when the losses span two decades or more, else
    linear from zero with plain numbers (a log axis over less than a decade labels 2, 5, 2, 5 ... between powers)."""
    known = [v for v in values if v is not None]
    axis: dict[str, Any] = dict(title=dict(text=LOSS_TITLE), overlaying="y", side="right", showgrid=False)
    if known and min(known) > 0 and max(known) / min(known) >= 100:
        return {**axis, "type": "log", "tickmode": "linear", "tick0": 0, "dtick": 1, "exponentformat": "power",
                "showexponent": "all",
                "minor": dict(ticks="outside", ticklen=3, showgrid=False)}
    return {**axis, "type": "linear", "tickmode": "auto", "nticks": 6, "rangemode": "tozero", "tickformat": ".3~g"}


def training_curves(partial: Mapping[str, Any], title: str = "") -> go.Figure:
    """Train/test error (%) and train loss per epoch from a train job's partial results (streamed while it runs).

    The x-axis is always the epoch. A sampler with a pre-training phase (ADV memorizes a confusion set with random
    labels first, docs/samplers.md) has its epochs drawn left of epoch 1 in a shaded band, with the error and loss
    measured on the confusion set as their own traces (there is no test error then).
    """
    epochs = list(partial.get("epoch") or [])
    if not epochs:
        return empty_figure("Training curves appear here as epochs finish.")
    n = len(epochs)
    xs = epoch_axis(partial)
    pre = pretraining_points(partial)
    train, test, loss = (_series(partial, k, n) for k in ("train_error", "test_error", "train_loss"))
    fig = go.Figure()

    def add(name: str, x: list[float], y: list[float | None], color: str, *, percent: bool = True,
            dash: str | None = None, mode: str = "lines+markers") -> None:
        if not any(v is not None for v in y):
            return
        hover = "%{y:.2f}%" if percent else "%{y:.4g}"
        fig.add_trace(go.Scatter(
            x=x, y=[None if v is None else (100.0 * v if percent else v) for v in y], name=name, mode=mode,
            yaxis="y" if percent else "y2", line=dict(color=color, dash=dash), marker=dict(size=4),
            hovertemplate=f"{hover}<extra>{name}</extra>"))

    clean = slice(pre, n)
    add("train error (%)", xs[clean], train[clean], TRAIN)
    add("test error (%)", xs[clean], test[clean], TEST)
    add("train loss", xs[clean], loss[clean], LOSS, percent=False, dash="dot", mode="lines")
    if pre:
        first = slice(0, pre)
        add("confusion-set error (%)", xs[first], train[first], "#8fa9e4", dash="dash")
        add("confusion-set loss", xs[first], loss[first], "#a8adb7", percent=False, dash="dot", mode="lines")
        fig.add_vrect(x0=0.5 - pre, x1=0.5, fillcolor="#eef0f4", opacity=0.7, layer="below", line_width=0,
                      annotation_text=CONFUSION_LABEL, annotation_position="top left",
                      annotation_font=dict(size=11, color="#5f6673"))
    span = (max(xs) - min(xs)) if xs else 0
    # the legend sits between the title and the plot, two entries a row at the panel's width: room for every row
    # (ADV's five entries took three rows and ran into the title)
    top = LEGEND_TOP_PX + LEGEND_ROW_PX * math.ceil(len(fig.data) / 2)
    base_layout(fig, title=dict(text=title, x=0.01, y=0.98, yanchor="top", font=dict(size=14)),
                hovermode="x unified", margin=dict(t=top),
                yaxis=dict(title=dict(text="error (%)"), rangemode="tozero", tickformat=".3~g"),
                yaxis2=loss_axis(loss),
                legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"))
    fig.update_xaxes(title_text="epoch", **({"dtick": 1} if span <= 12 else {}))
    return fig
