"""Training curves of a running or finished training job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from toroid.plots import (
    base_layout,
    empty_figure,
)

# --- training -------------------------------------------------------------------------------------------------------

def training_curves(partial: Mapping[str, Any], title: str = "") -> go.Figure:
    """Train/test error (%) and train loss per epoch from a train job's partial results (streamed while it runs).

    When the reported epochs do not increase (a sampler with a preliminary phase, e.g. ADV's confusion training,
    reports several points at epoch 0) the points are drawn in report order instead, and the phase is named.
    """
    epochs = list(partial.get("epoch") or [])
    if not epochs:
        return empty_figure("Training curves appear here as epochs finish.")
    numeric = all(isinstance(e, int | float) for e in epochs)
    increasing = numeric and all(b > a for a, b in zip(epochs[:-1], epochs[1:], strict=True))
    xs = epochs if increasing else list(range(1, len(epochs) + 1))
    fig = go.Figure()
    for key, color in (("train_error", "#3b6fd4"), ("test_error", "#d1495b")):
        values = partial.get(key) or []
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=xs[: len(values)], y=[None if v is None else 100.0 * v for v in values],
                                     mode="lines+markers", name=key.replace("_", " ") + " (%)",
                                     line=dict(color=color), marker=dict(size=4)))
    loss = list(partial.get("train_loss") or [])
    if any(v is not None for v in loss):
        fig.add_trace(go.Scatter(x=xs[: len(loss)], y=loss, mode="lines", name="train loss", yaxis="y2",
                                 line=dict(color="#6b7280", dash="dot")))
    known_loss = [v for v in loss if v is not None]
    phase = partial.get("phase")
    if phase:
        title = f"{title} · phase: {phase}" if title else f"phase: {phase}"
    base_layout(fig, title=dict(text=title, x=0.01, y=0.98, yanchor="top", font=dict(size=14)),
                 hovermode="x unified", margin=dict(t=70),
                 yaxis=dict(title=dict(text="error (%)"), rangemode="tozero"),
                 yaxis2=dict(title=dict(text="train loss"), overlaying="y", side="right", showgrid=False,
                             type="log" if known_loss and min(known_loss) > 0 else "linear"),
                 legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"))
    fig.update_xaxes(title_text="epoch" if increasing else "progress report")
    return fig
