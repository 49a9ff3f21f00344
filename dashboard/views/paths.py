"""Paths between the selected pair (docs/method.md §7): linear, linear aligned and geodesic, plus one-bend on request.

Selecting a pair on the map requests the three path analyses at once (cached results appear immediately); while a
worker evaluates a path its points stream in from the job's ``partial`` record. The barrier of each path (the highest
train error along it, raw max) and its length with its unit are in the legend and in a table whose rows carry
``data-kind``/``data-barrier`` (the column headers define each number).
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient
from toroid.dashboard.state import PATH_KINDS, is_active
from toroid.dashboard.views.common import (
    ANALYSES,
    CATALOG,
    MINIMA,
    SELECTION,
    card,
    entry_status,
    fetch_result,
    graph,
    message,
    minima_by_id,
    pending_intent,
    register_intent,
    request_analysis,
    result_links,
    track,
)
from toroid.plots import KIND_LABELS, empty_figure, percent

STORE = "paths-store"
GRAPH = "paths-graph"
ERROR = "paths-error"
BEND = "paths-bend"
BEND_INTENT = "paths-bend-intent"
TABLE = "barrier-table"
PROGRESS = "paths-progress"
TITLE = "paths-title"
POINTS = 33
ORDER = ("linear", "linear_aligned", "geodesic", "flip", "one_bend")
#: The barrier table's columns and their definitions (tooltips; docs/method.md §7, "Outputs", and §5)
HEADERS = (
    ("path", "linear: the straight line; linear aligned: after alignment; geodesic: normalized, aligned, along the "
             "units' great circles"),
    ("barrier (train)", "highest train error along the path (the raw maximum, not minus the endpoints)"),
    ("barrier (test)", "highest test error along the path"),
    ("length", "distance from A to B in the path's own metric: geodesic in rad (arc length over the normalized "
               "networks' unit spheres), the straight lines as the Euclidean norm over all parameters (not "
               "comparable with rad), flip paths in flipped weights"),
    ("points", "evaluated points, evenly spaced along the path"),
    ("", None),
    ("data", None),
)


def layout() -> html.Section:
    actions = [
        dcc.RadioItems(id=ERROR, value="train", inline=True, className="radio",
                       options=[{"label": "train error", "value": "train"}, {"label": "test error", "value": "test"},
                                {"label": "both", "value": "both"}]),
        html.Button("One-bend path", id=BEND, className="button", n_clicks=0,
                    title="Retrain the midpoint of the aligned pair and join A -> bend -> B with two geodesics"),
    ]
    return card(
        "Paths between A and B",
        [html.Div(id=TITLE, className="pair-title"), html.Div(id=PROGRESS, className="progress-stack"),
         graph(GRAPH, "paths", height="440px"), html.Div(id=TABLE, className="table-wrap"), dcc.Store(id=STORE),
         dcc.Store(id=BEND_INTENT)],
        actions=actions,
        class_name="paths-card",
    )


def _architecture(minimum: dict | None, catalog: dict | None) -> dict:
    arch = (minimum or {}).get("architecture")
    return next((a for a in (catalog or {}).get("architectures", []) if a["name"] == arch), {})


def path_kinds(minimum: dict | None, catalog: dict | None) -> tuple[str, ...]:
    """The paths compared for every pair: the kinds the API says fit the pair's architecture (the core's rule,
    docs/method.md §§4, 7: linear, linear aligned and geodesic; binary networks get the flip path instead of the
    geodesic), the one-bend path aside (it has its own button)."""
    kinds = _architecture(minimum, catalog).get("path_kinds") or PATH_KINDS
    return tuple(k for k in kinds if k != "one_bend")


def path_request(a: str, b: str, kind: str, minimum: dict | None = None, catalog: dict | None = None) -> dict:
    """The body of ``POST /api/analyses/path`` the dashboard sends for one path kind (a one-bend path takes the
    architecture's default segment kind)."""
    body = {"a": a, "b": b, "kind": kind, "points": POINTS}
    if kind == "one_bend":
        body["bend_kind"] = (_architecture(minimum, catalog).get("bend_kinds") or ["geodesic"])[0]
    return body


def register(app, client: ApiClient, public_api_url: str) -> None:
    register_intent(app, BEND, BEND_INTENT, State(SELECTION, "data"))

    @app.callback(
        Output(STORE, "data"),
        Input(SELECTION, "data"), Input(BEND_INTENT, "data"), Input(ANALYSES, "data"),
        State(STORE, "data"), State(MINIMA, "data"), State(CATALOG, "data"),
    )
    def analyses(selection, bend, jobs, store, minima, catalog):
        selection = selection or {}
        a, b = selection.get("a"), selection.get("b")
        if not a or not b:
            if not store:
                raise PreventUpdate
            return None
        if not store or store.get("pair") != [a, b]:
            kinds = path_kinds(minima_by_id(minima).get(a), catalog)
            entries = {kind: request_analysis(client, "path", path_request(a, b, kind)) for kind in kinds}
            return {"pair": [a, b], "entries": entries, "bend_n": (bend or {}).get("n")}  # older clicks: done
        entries = dict(store["entries"])
        changed = False
        bend_n = store.get("bend_n")
        if pending_intent(bend, bend_n):
            bend_n = bend["n"]
            asked = bend.get(SELECTION) or {}
            if [asked.get("a"), asked.get("b")] == [a, b] and not is_active(entries.get("one_bend")):
                body = path_request(a, b, "one_bend", minima_by_id(minima).get(a), catalog)
                entries["one_bend"] = request_analysis(client, "path", body)  # the server dedups a redone run
            changed = True
        for kind, entry in store["entries"].items():
            updated = track(client, entry, jobs)
            if updated is not None:
                entries[kind] = updated
                changed = True
        if not changed:
            raise PreventUpdate
        return {"pair": [a, b], "entries": entries, "bend_n": bend_n}

    @app.callback(Output(TITLE, "children"), Input(SELECTION, "data"), Input(MINIMA, "data"))
    def title(selection, minima):
        names = minima_by_id(minima)
        parts = []
        for tag in ("a", "b"):
            mid = (selection or {}).get(tag)
            if mid:
                parts += [html.Span(tag.upper(), className=f"pair-tag {tag}"),
                          html.Span(_name(names, mid), className="pair-name")]
        if not parts:
            return "No pair selected: click a minimum on the map, then a second one."
        return parts

    @app.callback(
        Output(GRAPH, "figure"), Output(TABLE, "children"), Output(PROGRESS, "children"),
        Input(STORE, "data"), Input(ERROR, "value"),
    )
    def draw(store, error):
        if not store:
            empty = empty_figure("Select two minima on the map to see the paths between them.")
            return empty, None, None
        paths, progress = {}, []
        entries = store["entries"]
        for kind in ORDER:
            entry = entries.get(kind)
            if entry is None:
                continue
            data = fetch_result(client, entry)
            if data is not None:
                paths[kind] = data
            elif _streamed_points(entry.get("partial") or {}):
                paths[kind] = entry["partial"]
            status = entry_status(entry, KIND_LABELS[kind])
            if status is not None:
                progress.append(status)
        fig = figures.barrier_figure(paths, error, expected_points=POINTS) if paths else empty_figure(
            "Waiting for the first path points…")
        return fig, _table(entries, paths, public_api_url), progress


def _streamed_points(partial: dict) -> bool:
    """True when a job's partial record holds path points (errors along x), not e.g. a bend's training epochs."""
    return bool(partial.get("train_error")) and bool(partial.get("x") or partial.get("distance"))


def _name(names: dict, minimum_id: str) -> str:
    return (names.get(minimum_id) or {}).get("name") or minimum_id


def _table(entries: dict, paths: dict, public_api_url: str) -> html.Table:
    rows = {row["kind"]: row for row in figures.barrier_rows(paths)}
    body = []
    for kind in ORDER:
        entry = entries.get(kind)
        if entry is None:
            continue
        row = rows.get(kind)
        finished = row is not None and row["complete"]
        barrier = row["barrier"] if finished else None
        test_barrier = row["test_barrier"] if finished else None
        attrs = {"data-kind": kind, "data-state": entry.get("state") or "",
                 "data-barrier": repr(barrier) if barrier is not None else "",
                 "data-test-barrier": repr(test_barrier) if test_barrier is not None else ""}
        state_cell = entry.get("error") or entry.get("state") or ""
        if entry.get("state") == "succeeded":
            state_cell = "✓"
        elif entry.get("state") in ("queued", "running"):
            state_cell = f"{entry['state']} {100 * (entry.get('progress') or 0):.0f}%"
        body.append(html.Tr(
            [html.Td(html.Span(KIND_LABELS[kind], className=f"kind-swatch {kind}")),
             html.Td(percent(barrier) if finished else "…", className="num barrier"),
             html.Td(percent(test_barrier) if finished else "…", className="num"),
             html.Td(row["length_text"] if finished and row["length"] is not None else "", className="num",
                     title=row["length_definition"] if row is not None else None),
             html.Td(str(row["points"]) if finished else "", className="num"),
             html.Td(state_cell, className="state"),
             html.Td(result_links(entry.get("result_id"), public_api_url))],
            id=f"barrier-row-{kind}", **attrs,
        ))
    if not body:
        return message("No paths requested.", "info")
    header = html.Thead(html.Tr([html.Th(h, title=tip) for h, tip in HEADERS]))
    return html.Table([header, html.Tbody(body)], className="table barrier-table")
