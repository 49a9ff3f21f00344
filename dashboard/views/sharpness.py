"""Hessian sharpness beside the local energy in the Flatness view (docs/method.md §6, "Hessian sharpness on the
normalized network"): the top Hessian eigenvalue of each minimum's normalized network against its test error, with
Kendall's tau.

While the Flatness view is open, the sharpness computed before for any minimum is looked up (``GET
/api/analyses/sharpness``, never queues) and drawn; sharpness is requested (``POST /api/analyses/sharpness``, the
API's defaults) for the minima picked there; "Compute for all minima" asks for every continuous minimum (binary
networks have no Hessian and are skipped). The API answers a request it saw before from its cache.
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient
from toroid.dashboard.views.common import (
    ANALYSES,
    CATALOG,
    MINIMA,
    TABS,
    card,
    entry_status,
    fetch_result,
    graph,
    lookup_analysis,
    message,
    minima_by_id,
    pending_intent,
    register_intent,
    request_analysis,
    result_links,
    track_all,
)
from toroid.plots import minimum_styles, sharpness_scatter

VIEW = "flatness"
PICK = "flatness-minima"  # the Flatness view's minima picker (toroid.dashboard.views.flatness.PICK)
STORE = "sharpness-store"
ALL = "sharpness-all"
ALL_INTENT = "sharpness-all-intent"
ALL_DONE = "sharpness-all-done"
SCATTER = "sharpness-scatter"
STATUS = "sharpness-status"
LINKS = "sharpness-links"


def layout() -> html.Section:
    return card(
        "Hessian sharpness (normalized network)",
        [html.Div(id=STATUS, className="progress-stack"), graph(SCATTER, "sharpness-vs-test-error", height="420px"),
         html.Div(id=LINKS, className="links-row"), dcc.Store(id=STORE, data={}), dcc.Store(id=ALL_INTENT),
         dcc.Store(id=ALL_DONE)],
        actions=html.Button("Compute for all minima", id=ALL, className="button secondary", n_clicks=0),
    )


def is_binary(minimum: dict | None, catalog: dict | None) -> bool:
    """Whether the minimum's architecture is binary, as ``GET /api/architectures`` says (no Hessian to measure)."""
    arch = (minimum or {}).get("architecture")
    return any(a.get("binary") for a in (catalog or {}).get("architectures", []) if a.get("name") == arch)


def register(app, client: ApiClient, public_api_url: str) -> None:
    register_intent(app, ALL, ALL_INTENT)

    @app.callback(
        Output(STORE, "data"), Output(ALL_DONE, "data"),
        Input(TABS, "value"), Input(PICK, "value"), Input(ALL_INTENT, "data"), Input(ANALYSES, "data"),
        State(MINIMA, "data"), State(CATALOG, "data"), State(STORE, "data"), State(ALL_DONE, "data"),
    )
    def analyses(tab, picked, every, jobs, minima, catalog, store, done):
        store = dict(store or {})
        by_id = minima_by_id(minima)
        wanted = [mid for mid in picked or [] if mid in by_id] if tab == VIEW else []
        asked = pending_intent(every, done)
        if asked:
            wanted += [m["id"] for m in minima or []]
        changed = asked
        for mid in dict.fromkeys(wanted):
            if is_binary(by_id[mid], catalog):
                continue
            entry = store.get(mid)
            if entry is not None and entry.get("state") != "missing" and not (
                    asked and entry.get("state") in ("failed", "cancelled")):
                continue  # a failed request is asked again by "Compute for all minima" only
            store[mid] = request_analysis(client, "sharpness", {"minimum_id": mid})
            changed = True
        if tab == VIEW:  # what exists already shows at once: looked up once per minimum, never queued
            for m in minima or []:
                if m["id"] not in store and not is_binary(m, catalog):
                    store[m["id"]] = lookup_analysis(client, "sharpness", {"minimum_id": m["id"]})
                    changed = True
        changed = track_all(client, store, jobs) or changed
        if not changed:
            raise PreventUpdate
        return store, (every["n"] if asked else no_update)

    @app.callback(
        Output(SCATTER, "figure"), Output(STATUS, "children"), Output(LINKS, "children"),
        Input(STORE, "data"), Input(PICK, "value"), Input(MINIMA, "data"), State(CATALOG, "data"),
    )
    def draw(store, picked, minima, catalog):
        by_id = minima_by_id(minima)
        points = []
        for mid, entry in (store or {}).items():
            data = fetch_result(client, entry)
            if data is not None and mid in by_id:
                points.append({**by_id[mid], "top_eigenvalue": data.get("top_eigenvalue"),
                               "hessian_trace": data.get("trace")})
        status, links = [], []
        for mid in picked or []:
            minimum = by_id.get(mid)
            if minimum is None:
                continue
            name = minimum.get("name") or mid
            if is_binary(minimum, catalog):
                status.append(message(f"{name}: a binary network has no Hessian (its flatness is the local energy "
                                      "with flip fractions)", "info"))
                continue
            entry = (store or {}).get(mid)
            line = entry_status(entry, name)
            if line is not None:
                status.append(line)
            if entry and entry.get("state") == "succeeded" and entry.get("result_id"):
                links.append(html.Span([html.Span(name, className="link-label"),
                                        result_links(entry["result_id"], public_api_url)], className="link-item"))
        figure, _ = sharpness_scatter(points, styles=minimum_styles(minima or []))  # as in the flatness figures
        return figure, status, links
