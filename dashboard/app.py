"""The Dash application factory (mounted by the API server under /dashboard, or run on its own)."""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from dashboard.client import ApiClient, ApiError


def create_dash(api_url: str, prefix: str = "/dashboard/") -> dash.Dash:
    client = ApiClient(api_url)
    app = dash.Dash(
        __name__,
        requests_pathname_prefix=prefix,
        routes_pathname_prefix="/",
        title="Toroid",
        suppress_callback_exceptions=True,
    )
    app.layout = html.Div(
        [
            html.Header([html.H1("Toroid"), html.Span(id="health", className="health")]),
            dcc.Interval(id="health-tick", interval=5000),
        ]
    )

    @app.callback(Output("health", "children"), Input("health-tick", "n_intervals"))
    def show_health(_n):
        try:
            status = client.health()
        except (ApiError, OSError) as exc:
            return f"API unreachable: {exc}"
        parts = ("redis", "database", "workers")
        return " · ".join(f"{name}: {'ok' if status[name]['ok'] else 'down'}" for name in parts)

    return app
