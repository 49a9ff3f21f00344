"""The torus view: the error on a two-dimensional torus through the selected pair (normalized + aligned; every unit
on its own great circle, docs/method.md), drawn on a 3-D torus and unrolled, with the geodesic between A and B; and
the Gram-Schmidt plane through A, B and a third minimum C as a contour plot (docs/method.md §7).

Analyses are requested while this view is open: ``POST /api/analyses/torus`` with [A, B] (or [A, B, C] when "C as
the second torus axis" is ticked) and ``POST /api/analyses/section`` with [A, B, C] once C is chosen.
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient
from toroid.dashboard.views import common
from toroid.plots import empty_figure

VIEW = "torus"
STORE = "torus-store"
RESOLUTION = "torus-resolution"
THIRD = "torus-third"
USE_THIRD = "torus-use-third"
ERROR = "torus-error"
SURFACE = "torus-3d"
UNROLLED = "torus-2d"
SECTION = "section-graph"
SPACE = "section-space"
STATUS = "torus-status"
SECTION_STATUS = "section-status"
LINKS = "torus-links"
SECTION_LINKS = "section-links"
RESOLUTIONS = (13, 21, 33, 49)


def layout() -> html.Div:
    controls = html.Div(
        [
            html.Div([html.Span("grid", className="field-label"),
                      dcc.RadioItems(id=RESOLUTION, value=21, inline=True, className="radio",
                                     options=[{"label": f"{r} x {r}", "value": r} for r in RESOLUTIONS])],
                     className="inline-label"),
            html.Label([html.Span("C", className="pair-tag c"),
                        dcc.Dropdown(id=THIRD, placeholder="third minimum (for the plane)", className="pair-dropdown")],
                       className="inline-label"),
            dcc.Checklist(id=USE_THIRD, options=[{"label": "C as the second torus axis", "value": "use"}], value=[],
                          className="radio"),
            dcc.RadioItems(id=ERROR, value="train", inline=True, className="radio",
                           options=[{"label": "train error", "value": "train"},
                                    {"label": "test error", "value": "test"}]),
        ],
        className="controls",
    )
    torus = common.card("Torus through A and B", [
        html.Div(id=STATUS, className="progress-stack"),
        html.Div([common.graph(SURFACE, "torus-3d", height="520px"),
                  common.graph(UNROLLED, "torus-unrolled", height="520px")], className="grid two tight"),
        html.Div(id=LINKS, className="links-row"),
    ])
    section = common.card("Plane through A, B and C", [
        dcc.RadioItems(id=SPACE, value="normalized", inline=True, className="radio",
                       options=[{"label": "normalized parameters", "value": "normalized"},
                                {"label": "raw parameters", "value": "raw"}]),
        html.Div(id=SECTION_STATUS, className="progress-stack"), common.graph(SECTION, "section", height="480px"),
        html.Div(id=SECTION_LINKS, className="links-row"),
    ])
    return html.Div([controls, torus, section, dcc.Store(id=STORE, data={})])


def torus_request(selection: dict | None, resolution: int, third: str | None, use_third: bool) -> dict | None:
    """The body of ``POST /api/analyses/torus`` for the current choice (None without a pair)."""
    a, b = (selection or {}).get("a"), (selection or {}).get("b")
    if not a or not b:
        return None
    ids = [a, b] + ([third] if use_third and third and third not in (a, b) else [])
    return {"minimum_ids": ids, "resolution": int(resolution)}


def section_request(selection: dict | None, resolution: int, third: str | None, space: str) -> dict | None:
    """The body of ``POST /api/analyses/section`` (None without A, B and a distinct C)."""
    a, b = (selection or {}).get("a"), (selection or {}).get("b")
    if not a or not b or not third or third in (a, b):
        return None
    return {"minimum_ids": [a, b, third], "space": space, "resolution": int(resolution)}


def register(app, client: ApiClient, public_api_url: str) -> None:
    @app.callback(Output(THIRD, "options"), Input(common.MINIMA, "data"), Input(common.SELECTION, "data"))
    def third_options(minima, selection):
        chosen = {(selection or {}).get("a"), (selection or {}).get("b")}
        return [o for o in common.minimum_options(minima) if o["value"] not in chosen]

    @app.callback(
        Output(STORE, "data"),
        Input(common.TABS, "value"), Input(common.SELECTION, "data"), Input(RESOLUTION, "value"), Input(THIRD, "value"),
        Input(USE_THIRD, "value"), Input(SPACE, "value"), Input(common.JOBS, "data"),
        State(STORE, "data"),
    )
    def analyses(tab, selection, resolution, third, use_third, space, jobs, store):
        store = dict(store or {})
        changed = False
        if tab == VIEW:
            wanted = {"torus": torus_request(selection, resolution, third, "use" in (use_third or [])),
                      "section": section_request(selection, resolution, third, space)}
            for kind, params in wanted.items():
                entry = store.get(kind)
                if params is None:
                    continue
                if entry is None or entry.get("params") != params:
                    store[kind] = common.request_analysis(client, kind, params)
                    changed = True
        for kind, entry in list(store.items()):
            updated = common.track(client, entry, jobs)
            if updated is not None:
                store[kind] = updated
                changed = True
        if not changed:
            raise PreventUpdate
        return store

    @app.callback(
        Output(SURFACE, "figure"), Output(UNROLLED, "figure"), Output(STATUS, "children"), Output(LINKS, "children"),
        Output(SECTION, "figure"), Output(SECTION_STATUS, "children"), Output(SECTION_LINKS, "children"),
        Input(STORE, "data"), Input(ERROR, "value"), Input(common.SELECTION, "data"), Input(THIRD, "value"),
        State(common.MINIMA, "data"),
    )
    def draw(store, error, selection, third, minima):
        store = store or {}
        labels = _labels(common.minima_by_id(minima), selection, third)
        selection = selection or {}
        pair = bool(selection.get("a") and selection.get("b"))
        torus_entry = store.get("torus") if pair else None
        section_entry = store.get("section") if pair and third else None
        torus_data = common.fetch_result(client, torus_entry)
        if torus_data is not None and _same_pair(torus_entry, selection):
            surface = figures.torus_surface(torus_data, labels, error)
            unrolled = figures.torus_heatmap(torus_data, labels, error)
            links = [html.Span("torus result", className="link-label"),
                     common.result_links(torus_entry["result_id"], public_api_url)]
        else:
            text = "Select a pair on the map." if not pair else "Computing the torus slice…"
            surface, unrolled, links = empty_figure(text), empty_figure(text), None
            streamed = None
            if torus_entry and torus_entry.get("state") == "running":
                resolution = int(torus_entry.get("params", {}).get("resolution") or 0)
                streamed = figures.torus_partial(torus_entry.get("partial") or {}, resolution)
            if streamed is not None:  # the unrolled slice fills in as the worker streams its cells
                unrolled = figures.torus_heatmap(streamed, labels, error)
        section_data = common.fetch_result(client, section_entry)
        if section_data is not None:
            section = figures.section_contour(section_data, labels, error)
            section_links = [html.Span("section result", className="link-label"),
                             common.result_links(section_entry["result_id"], public_api_url)]
        else:
            text = "Choose a third minimum C above." if pair and not third else (
                "Select a pair on the map, then a third minimum C." if not pair else "Computing the plane…")
            section, section_links = empty_figure(text), None
        return (surface, unrolled, common.entry_status(torus_entry, "torus slice"), links, section,
                common.entry_status(section_entry, "plane"), section_links)


def _same_pair(entry: dict | None, selection: dict) -> bool:
    ids = (entry or {}).get("params", {}).get("minimum_ids") or []
    return ids[:2] == [selection.get("a"), selection.get("b")]


def _labels(by_id: dict, selection: dict | None, third: str | None) -> dict[str, str]:
    """Names for the keys a torus/section result uses: A/B/C, w1/w2/w3, or minimum ids."""
    labels = {mid: m.get("name") or mid for mid, m in by_id.items()}
    chosen = [(selection or {}).get("a"), (selection or {}).get("b"), third]
    for tag, alias, mid in zip(("A", "B", "C"), ("w1", "w2", "w3"), chosen, strict=True):
        if mid:
            text = f"{tag} · {labels.get(mid, mid)}"
            labels[tag] = labels[alias] = text
    return labels
