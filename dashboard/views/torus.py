"""The torus view: the error on a two-dimensional torus through the selected pair (normalized + aligned; every unit
on its own great circle, docs/method.md), drawn on a 3-D torus and unrolled, with the geodesic between A and B; and
the Gram-Schmidt plane through A, B and a third minimum C as a contour plot (docs/method.md §7).

Analyses are requested while this view is open: ``POST /api/analyses/torus`` with [A, B] (or [A, B, C] when "C as
the second torus axis" is ticked) and ``POST /api/analyses/section`` with [A, B, C] once C is chosen. While a job
runs, both torus panels and the plane fill in from the job's ``partial["grid"]`` (coarse to fine, on the fixed 0-100 %
colour scale of the final figures; docs/method.md §7).
"""

from __future__ import annotations

import math

from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient
from toroid.dashboard.figures.torus import section_partial, section_units, torus_axes
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
CAPTION = "torus-caption"
TORUS_SHOWN = "torus-shown"  # what the torus figures show (``figure_key``): they redraw when it changes
SECTION_SHOWN = "section-shown"
SECTION_CAPTION = "section-caption"
RESOLUTIONS = (13, 21, 33, 49)
#: The grid the view asks for first (the API's default too): 21 x 21 cells take about 5 s for the demo minima (MLP
#: 2 x 512 on digits) on a two-core machine (docs/dashboard.md, "Torus & plane").
DEFAULT_RESOLUTION = 21
HEIGHT, SECTION_HEIGHT = 430, 440  # px: the torus card and the plane fit a 1440 x 900 screen each
SECTION_TAGS = {"w1": "A", "w2": "B", "w3": "C"}  # a section's networks are the chosen A, B, C
CAPTION_STYLE = {"fontSize": "12px", "color": "#4b5563", "margin": "4px 0 0", "lineHeight": "1.45"}


def layout() -> html.Div:
    controls = html.Div(
        [
            html.Div([html.Span("grid", className="field-label"),
                      dcc.RadioItems(id=RESOLUTION, value=DEFAULT_RESOLUTION, inline=True, className="radio",
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
        html.Div([common.graph(SURFACE, "torus-3d", height=f"{HEIGHT}px"),
                  common.graph(UNROLLED, "torus-unrolled", height=f"{HEIGHT}px")], className="grid two tight",
                 style={"gridTemplateColumns": "minmax(0, 720px) auto", "justifyContent": "center"}),
        html.P(id=CAPTION, style=CAPTION_STYLE),
        html.Div(id=LINKS, className="links-row"),
    ], class_name="torus-card")
    section = common.card("Plane through A, B and C", [
        dcc.RadioItems(id=SPACE, value="normalized", inline=True, className="radio",
                       options=[{"label": "normalized parameters", "value": "normalized"},
                                {"label": "raw parameters", "value": "raw"}]),
        html.Div(id=SECTION_STATUS, className="progress-stack"),
        html.Div([common.graph(SECTION, "section", height=f"{SECTION_HEIGHT}px"),
                  html.Div(id=SECTION_CAPTION, style={**CAPTION_STYLE, "alignSelf": "center", "maxWidth": "560px"})],
                 className="grid two tight", style={"gridTemplateColumns": "auto minmax(0, 1fr)"}),
        html.Div(id=SECTION_LINKS, className="links-row"),
    ], class_name="plane-card")
    return html.Div([controls, torus, section, dcc.Store(id=STORE, data={}), dcc.Store(id=TORUS_SHOWN),
                     dcc.Store(id=SECTION_SHOWN)])


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
        Input(USE_THIRD, "value"), Input(SPACE, "value"), Input(common.ANALYSES, "data"),
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
        Output(STATUS, "children"), Output(SECTION_STATUS, "children"),
        Input(STORE, "data"), Input(common.SELECTION, "data"), Input(THIRD, "value"),
    )
    def status(store, selection, third):
        store, selection = store or {}, selection or {}
        pair = bool(selection.get("a") and selection.get("b"))
        return (common.entry_status(store.get("torus") if pair else None, "torus slice"),
                common.entry_status(store.get("section") if pair and third else None, "plane"))

    # The figures redraw when what they show changes (a new pass or chunk of cells, the result, the choices), not at
    # every poll of a running job: a 3-D redraw costs the browser far more than a progress bar. What a figure shows
    # is kept in a store written by the same callback, so a run that Dash drops (docs/dashboard.md, "Clicks and
    # polls") leaves the store as it was and the next run draws. A hidden view is not drawn.
    @app.callback(
        Output(SURFACE, "figure"), Output(UNROLLED, "figure"), Output(LINKS, "children"), Output(CAPTION, "children"),
        Output(TORUS_SHOWN, "data"),
        Input(STORE, "data"), Input(ERROR, "value"), Input(common.SELECTION, "data"), Input(THIRD, "value"),
        Input(common.TABS, "value"), State(TORUS_SHOWN, "data"), State(common.MINIMA, "data"),
    )
    def draw_torus(store, error, selection, third, tab, shown, minima):
        if tab != VIEW:  # drawn when the view is opened
            raise PreventUpdate
        labels = _labels(common.minima_by_id(minima), selection, third)
        selection = selection or {}
        pair = bool(selection.get("a") and selection.get("b"))
        entry = (store or {}).get("torus") if pair else None
        key = {"entry": figure_key(entry), "error": error, "pair": [selection.get("a"), selection.get("b")],
               "labels": labels}
        if key == shown:
            raise PreventUpdate
        data = common.fetch_result(client, entry)
        links = None
        if data is not None and _same_pair(entry, selection):
            links = [html.Span("torus result", className="link-label"),
                     common.result_links(entry["result_id"], public_api_url)]
        elif entry and entry.get("state") == "running" and _same_pair(entry, selection):
            # both panels fill in as the worker reports its grid, coarse to fine
            resolution = int(entry.get("params", {}).get("resolution") or 0)
            data = figures.torus_partial(entry.get("partial") or {}, resolution)
        else:
            data = None
        if data is None:
            text = "Select a pair on the map." if not pair else "Computing the first, coarse pass of the torus…"
            return empty_figure(text), empty_figure(text), None, torus_caption(None, error), key
        return (figures.torus_surface(data, labels, error), figures.torus_heatmap(data, labels, error, height=HEIGHT),
                links, torus_caption(data, error), key)

    @app.callback(
        Output(SECTION, "figure"), Output(SECTION_LINKS, "children"), Output(SECTION_CAPTION, "children"),
        Output(SECTION_SHOWN, "data"),
        Input(STORE, "data"), Input(ERROR, "value"), Input(common.SELECTION, "data"), Input(THIRD, "value"),
        Input(common.TABS, "value"), State(SECTION_SHOWN, "data"), State(common.MINIMA, "data"),
    )
    def draw_section(store, error, selection, third, tab, shown, minima):
        if tab != VIEW:
            raise PreventUpdate
        labels = _labels(common.minima_by_id(minima), selection, third)
        selection = selection or {}
        pair = bool(selection.get("a") and selection.get("b"))
        entry = (store or {}).get("section") if pair and third else None
        key = {"entry": figure_key(entry), "error": error, "pair": [selection.get("a"), selection.get("b"), third],
               "labels": labels}
        if key == shown:
            raise PreventUpdate
        data = common.fetch_result(client, entry)
        links = None
        if data is not None:
            links = [html.Span("section result", className="link-label"),
                     common.result_links(entry["result_id"], public_api_url)]
        elif entry and entry.get("state") == "running":
            data = section_partial(entry.get("partial") or {})
        if data is None:
            text = "Choose a third minimum C above." if pair and not third else (
                "Select a pair on the map, then a third minimum C." if not pair else
                "Computing the first, coarse pass of the plane…")
            return empty_figure(text), None, section_caption(None, labels, error), key
        return (figures.section_contour(data, labels, error, height=SECTION_HEIGHT), links,
                section_caption(data, labels, error), key)


def figure_key(entry: dict | None) -> dict | None:
    """What a torus or plane figure shows of an analysis entry: its request, state and result, and while it runs
    the number of cells in its latest grid report (the figures change only with these)."""
    if not entry:
        return None
    grid = (entry.get("partial") or {}).get("grid")
    return {"params": entry.get("params"), "state": entry.get("state"), "result_id": entry.get("result_id"),
            "cells": grid.get("cells") if isinstance(grid, dict) else None}


def _pi(value: float) -> str:
    return "0" if value == 0 else f"{value / math.pi:.2f}π"


def torus_caption(data: dict | None, error: str = "train") -> str:
    """One paragraph under the torus panels: what the angles are (units, docs/method.md §7), where A, B (C) sit,
    the colour scale, and what a running job shows."""
    ax1, ax2 = torus_axes(data or {})
    minima = (data or {}).get("minima") or {}
    where = ", ".join(f"{n} at ({_pi(c[0])}, {_pi(c[1])})" for n, c in minima.items())
    return (
        f"φ₁ and φ₂ are torus angles in radians (2π-periodic) in the normalized space: φ₁ turns {ax1}, "
        f"φ₂ {ax2}; " + ("φ₁ reaches B at the mean angle between A's and B's units, φ₂ reaches C likewise"
                         if "C" in minima else "each reaches B at the mean angle between A's and B's units it turns")
        + " (docs/method.md §7)."
        + (f" {where}." if where else "")
        + (" Red: the geodesics A→B (solid) and A→C (dashed), straight lines on the unrolled torus." if "C" in minima
           else " Red: the geodesic, a straight line on the unrolled torus.")
        + f" Colour: {error} error, 0–100 % (one scale for"
        " both panels, its bar on the right). A running job computes a coarse grid over the whole torus first, then"
        " refines it; until then a cell shows the nearest computed cell."
    )


def section_caption(data: dict | None, labels: dict[str, str], error: str = "train") -> list:
    """Beside the plane: the three minima (name, errors), their distances in the plane's unit, and the unit."""
    if not data:
        return [html.Span("The Gram-Schmidt plane through A, B and C (docs/method.md §7): x along A→B, y towards C "
                          "orthogonal to it, in the parameter space's distance unit; equal aspect.")]
    points = data.get("points") or {}
    errors = (data.get("extra") or {}).get("point_errors") or {}
    rows = []
    for key, tag in SECTION_TAGS.items():
        e = errors.get(key) or {}
        text = " · ".join(f"{s} {100 * e[f'{s}_error']:.1f}%" for s in ("train", "test")
                          if e.get(f"{s}_error") is not None)
        rows.append(html.Li([html.B(labels.get(tag, tag)), f": {text}" if text else ""]))
    dist = []
    for p, q in (("w1", "w2"), ("w1", "w3"), ("w2", "w3")):
        if p in points and q in points:
            dist.append(f"|{SECTION_TAGS[p]}{SECTION_TAGS[q]}| = {math.dist(points[p], points[q]):.3g}")
    space = data.get("space", "raw")
    return [
        html.Ul(rows, style={"margin": "0 0 6px", "paddingLeft": "18px"}),
        html.Div(", ".join(dist)),
        html.P(
            f"x runs along A→B, y towards C orthogonally to it (Gram-Schmidt; docs/method.md §7). Unit: "
            f"{section_units(space)}"
            + ("; each hidden unit's weight vector has norm 1 and the last layer norm √(outputs), docs/method.md §2"
               if space == "normalized" else "")
            + f". Equal aspect: distances on the plot are true distances. Colour: {error} error, 0–100 %; where the "
            "errors span less than 10 points, white lines add finer levels (labelled in %). A running job computes "
            "a coarse grid over the whole plane first, then refines it.",
            style={"margin": "6px 0 0"}),
    ]


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
