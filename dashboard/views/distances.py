"""Distances (docs/method.md §5): the distance matrix of the landscape shown on the map, as a heatmap ordered by
sampler.

Variants: the geodesic distance between normalized + aligned networks, and the per-parameter Euclidean distance raw,
aligned, normalized, normalized + aligned. The data is the distances analysis the map requested.
"""

from __future__ import annotations

from dash import Input, Output, dcc, html

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient
from toroid.dashboard.views.common import (
    DISTANCES,
    MINIMA,
    card,
    entry_status,
    fetch_result,
    graph,
    minima_by_id,
    result_links,
)
from toroid.plots import empty_figure

GRAPH = "distances-graph"
VARIANT = "distances-variant"
STATUS = "distances-status"
LINKS = "distances-links"

VARIANTS = {
    "geodesic": "geodesic (normalized + aligned)",
    "normalized_aligned": "Euclidean, normalized + aligned",
    "normalized": "Euclidean, normalized",
    "aligned": "Euclidean, aligned",
    "raw": "Euclidean, raw",
}


def layout() -> html.Section:
    actions = dcc.Dropdown(id=VARIANT, value="geodesic", clearable=False, className="variant-dropdown",
                           options=[{"label": label, "value": value} for value, label in VARIANTS.items()])
    return card("Distance matrix", [html.Div(id=STATUS), graph(GRAPH, "distances", height="620px"),
                                    html.Div(id=LINKS, className="links-row")], actions=actions)


def register(app, client: ApiClient, public_api_url: str) -> None:
    @app.callback(
        Output(GRAPH, "figure"), Output(STATUS, "children"), Output(LINKS, "children"),
        Input(DISTANCES, "data"), Input(VARIANT, "value"), Input(MINIMA, "data"),
    )
    def draw(entry, variant, minima):
        if not entry:
            return empty_figure("Distances need two or more minima of one landscape."), None, None
        data = fetch_result(client, entry)
        result_id = entry.get("result_id")
        if data is None and entry.get("previous_result_id"):
            result_id = entry["previous_result_id"]
            data = fetch_result(client, {"state": "succeeded", "result_id": result_id})
        status = entry_status(entry, "distances")
        if data is None:
            return empty_figure("Computing distances…"), status, None
        if variant not in (data.get("matrices") or {}):
            return empty_figure(f"This result has no {VARIANTS.get(variant, variant)} matrix."), status, None
        fig = figures.distance_heatmap(data, variant, minima_by_id(minima))
        links = [html.Span("distances result", className="link-label"), result_links(result_id, public_api_url)]
        return fig, status, links
