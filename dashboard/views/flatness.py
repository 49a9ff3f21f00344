"""Flatness (docs/method.md §6): local-energy curves dE_train(sigma) of chosen minima with standard-error bars, and
the local energy at the largest sigma against test error over all minima with Kendall's tau, its p-value and n (a
direction is stated only when p < 0.05). Each minimum keeps one look (its sampler's colour family, a dash and a marker
symbol of its own: ``toroid.plots.minimum_styles``) in the curves, the scatter and the Hessian sharpness card.

Curves are requested (``POST /api/analyses/flatness``) for the minima picked here (the selected pair by default)
while this view is open; "Compute for all minima" requests the missing ones so the scatter covers every minimum.
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.state import selection_ids
from toroid.dashboard.views import sharpness
from toroid.dashboard.views.common import (
    ANALYSES,
    MINIMA,
    SELECTION,
    TABS,
    card,
    entry_status,
    fetch_result,
    graph,
    minima_by_id,
    minimum_options,
    pending_intent,
    register_intent,
    request_analysis,
    result_links,
    track_all,
)
from toroid.plots import empty_figure, flatness_scatter, minimum_styles

VIEW = "flatness"
STORE = "flatness-store"
PICK = "flatness-minima"
ALL = "flatness-all"
ALL_INTENT = "flatness-all-intent"
ALL_DONE = "flatness-all-done"
MODE = "flatness-mode"
CURVES = "flatness-curves"
SCATTER = "flatness-scatter"
TAU = "flatness-tau"
STATUS = "flatness-status"
LINKS = "flatness-links"
#: Noise samples per sigma the view asks for: exactly (exact) or at most (sequential, whose typical need on digits
#: is 16-32, docs/method.md §6); 100 keeps the worst case of a real image set's minimum within the default cost limit
SAMPLES = 100


def layout() -> html.Div:
    actions = [
        dcc.RadioItems(id=MODE, value="sequential", inline=True, className="radio",
                       options=[{"label": "sequential (full train set, to a standard error of 0.05 points or 10%)",
                                 "value": "sequential"},
                                {"label": "exact (full train set, 100 samples)", "value": "exact"},
                                {"label": "fast (subsample, to 0.5 points)", "value": "fast"}]),
        html.Button("Compute for all minima", id=ALL, className="button secondary", n_clicks=0),
    ]
    curves = card(
        "Local energy",
        [dcc.Dropdown(id=PICK, multi=True, placeholder="minima to compare (default: the selected pair)"),
         html.Div(id=STATUS, className="progress-stack"), graph(CURVES, "local-energy", height="420px"),
         html.Div(id=LINKS, className="links-row"), dcc.Store(id=STORE, data={}),
         dcc.Store(id=ALL_INTENT), dcc.Store(id=ALL_DONE)],
        actions=actions,
    )
    scatter = card("Flatness and generalization",
                   [html.Div(id=TAU, className="stat"), graph(SCATTER, "flatness-vs-test-error", height="420px")])
    return html.Div([curves, scatter, sharpness.layout()], className="grid two")  # Hessian sharpness beside


def register(app, client: ApiClient, public_api_url: str) -> None:
    @app.callback(Output(PICK, "options"), Input(MINIMA, "data"))
    def options(minima):
        return minimum_options(minima)

    @app.callback(Output(PICK, "value"), Input(SELECTION, "data"))
    def follow_selection(selection):
        return selection_ids(selection)

    register_intent(app, ALL, ALL_INTENT)

    @app.callback(
        Output(STORE, "data"), Output(ALL_DONE, "data"),
        Input(TABS, "value"), Input(PICK, "value"), Input(ALL_INTENT, "data"), Input(MODE, "value"),
        Input(ANALYSES, "data"), State(MINIMA, "data"), State(STORE, "data"), State(ALL_DONE, "data"),
    )
    def analyses(tab, picked, every, mode, jobs, minima, store, done):
        store = dict(store or {})
        by_id = minima_by_id(minima)
        wanted: list[str] = []
        if tab == VIEW:
            wanted = [mid for mid in picked or [] if mid in by_id]
        asked = pending_intent(every, done)
        if asked:  # a redone run asks again: the server dedups the requests
            wanted += [m["id"] for m in minima or [] if m.get("local_energy") is None]
        changed = asked
        for mid in wanted:
            key = f"{mid}|{mode}"
            if key in store and store[key].get("state") != "failed":
                continue
            store[key] = _existing(client, by_id[mid], mode) or request_analysis(
                client, "flatness", {"minimum_id": mid, "samples": SAMPLES, "max_samples": SAMPLES, "mode": mode})
            changed = True
        changed = track_all(client, store, jobs) or changed
        if not changed:
            raise PreventUpdate
        return store, (every["n"] if asked else no_update)

    @app.callback(
        Output(CURVES, "figure"), Output(SCATTER, "figure"), Output(TAU, "children"), Output(TAU, "data-tau"),
        Output(STATUS, "children"), Output(LINKS, "children"),
        Input(STORE, "data"), Input(PICK, "value"), Input(MODE, "value"), Input(MINIMA, "data"),
    )
    def draw(store, picked, mode, minima):
        by_id = minima_by_id(minima)
        styles = minimum_styles(minima or [])  # one look per minimum, the same in the curves and the scatter
        curves, status, links = [], [], []
        for mid in picked or []:
            minimum = by_id.get(mid)
            entry = (store or {}).get(f"{mid}|{mode}")
            if minimum is None or entry is None:
                continue
            name = minimum.get("name") or mid
            data = fetch_result(client, entry)
            if data is not None:
                curves.append({"label": f"{name} ({minimum.get('sampler') or 'upload'})", **styles[mid], "data": data})
                links.append(html.Span([html.Span(name, className="link-label"),
                                        result_links(entry.get("result_id"), public_api_url)], className="link-item"))
            line = entry_status(entry, name)
            if line is not None:
                status.append(line)
        if curves:
            curve_fig = figures.flatness_curves(curves)
        elif picked:
            curve_fig = empty_figure("Computing local energies…" if status else "Open this view to compute.")
        else:
            curve_fig = empty_figure("Pick minima above (or select a pair on the map).")
        scatter_fig, tau = flatness_scatter(minima or [], styles=styles)
        # n: the minima in the correlation (a local energy and a test error), as flatness_scatter counts them
        paired = sum(1 for m in minima or [] if m.get("local_energy") is not None and m.get("test_error") is not None)
        text = figures.kendall_text(tau, paired)  # a direction only when p < 0.05
        tau_attr = "" if tau is None else repr(tau[0])
        return curve_fig, scatter_fig, text, tau_attr, status, links


def _existing(client: ApiClient, minimum: dict, mode: str) -> dict | None:
    """An entry for the minimum's stored flatness result when it was computed in ``mode`` (no new job needed)."""
    result_id = minimum.get("flatness_result_id")
    if not result_id:
        return None
    try:
        record = client.result(result_id)
    except ApiError:
        return None
    if (record.get("data") or {}).get("mode") != mode:
        return None
    return {"kind": "flatness", "params": record.get("params") or {}, "job_id": None, "state": "succeeded",
            "progress": 1.0, "message": "", "partial": {}, "result_id": result_id, "minimum_id": minimum["id"],
            "error": None}

