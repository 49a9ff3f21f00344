"""CSV downloads of the tables (docs/dashboard.md, "Export"): the minima, flatness vs test error, and the distances
of the landscape on the map (docs/api.md, "Exports").

A click is fetched through the dashboard's API client, so it carries the signed-in user's credentials and no one
else's, and is handed to the browser by one ``dcc.Download``. The buttons have pattern-matching ids
(``csv_button``): the header's Export menu holds one per table, and any view may place more with the same helper;
one callback serves them all. Its only inputs are the clicks (the polled stores are read as State), so no poll can
drop a click (docs/dashboard.md, "Clicks and polls").
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views.common import DISTANCES

BUTTON = "csv-export"
DOWNLOAD = "csv-download"
MESSAGE = "export-message"
MENU = "export-menu"

#: table -> (label, file name)
TABLES = {
    "minima": ("Minima", "toroid-minima.csv"),
    "flatness": ("Flatness vs test error", "toroid-flatness.csv"),
    "distances": ("Distances of the map's landscape", "toroid-distances.csv"),
}


def csv_button(table: str, where: str, label: str = "CSV") -> html.Button:
    """A button that downloads ``table`` (a key of ``TABLES``) as CSV; ``where`` tells buttons of one table apart
    (unique on the page, e.g. the view's name)."""
    return html.Button(label, id={"type": BUTTON, "table": table, "at": where}, n_clicks=0,
                       className="link-button export-button", title=f"Download {TABLES[table][0].lower()} as CSV")


def menu() -> html.Details:
    """The header's Export menu: one CSV button per table, the status line of the last download, the download."""
    return html.Details(
        [html.Summary("Export", className="api-link"),
         html.Div([html.Span("Tables as CSV", className="export-heading"),
                   *[csv_button(table, "header", label) for table, (label, _name) in TABLES.items()],
                   html.Div(id=MESSAGE, className="export-message")], className="export-items"),
         dcc.Download(id=DOWNLOAD)],
        id=MENU, className="export-menu",
    )


def distances_ids(entry: dict[str, Any] | None) -> list[str]:
    """The minimum ids of the distances analysis the map tracks (``DISTANCES``), [] when there is none."""
    return list(((entry or {}).get("params") or {}).get("minimum_ids") or [])


def fetch_table(client: ApiClient, table: str, distances: dict[str, Any] | None) -> str:
    """The CSV text of ``table`` from the API (``ApiError`` with the API's message when it refuses)."""
    if table == "minima":
        return client.get("/minima", format="csv")
    if table == "flatness":
        return client.get("/analyses/flatness", format="csv")
    return client.get("/analyses/distances", minimum_ids=distances_ids(distances), format="csv")


def _error(text: str) -> html.Span:
    return html.Span(text, className="message error", **{"data-kind": "error"})


def register(app, client: ApiClient) -> None:
    @app.callback(
        Output(DOWNLOAD, "data"), Output(MESSAGE, "children"),
        Input({"type": BUTTON, "table": ALL, "at": ALL}, "n_clicks"),
        State(DISTANCES, "data"),
        prevent_initial_call=True,
    )
    def download(_clicks, distances):
        trigger = ctx.triggered_id
        if not trigger or not ctx.triggered[0].get("value") or trigger.get("table") not in TABLES:
            raise PreventUpdate  # a button added to the page, not clicked
        table = trigger["table"]
        if table == "distances" and len(distances_ids(distances)) < 2:
            return no_update, _error("No distances yet: the map computes them once its landscape has two or more "
                                     "minima.")
        try:
            text = fetch_table(client, table, distances)
        except ApiError as exc:
            return no_update, _error(exc.message)
        return dcc.send_string(text, TABLES[table][1], type="text/csv"), ""
