"""The home view: every minimum on a 2-D map (classical MDS of the normalized + aligned geodesic distances,
docs/method.md §5), colored by sampler and sized by flatness; click two minima to select a pair.

The distances of the displayed family (minima of one architecture/config/dataset, the only ones that can be aligned
with each other) are requested from ``POST /api/analyses/distances`` whenever the family's membership changes and
tracked until the job finishes; until then the map keeps the last embedding (new minima wait underneath) or, with
none, lays the minima out by train/test error.
"""

from __future__ import annotations

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient
from toroid.dashboard.state import families, next_selection
from toroid.dashboard.views.common import (
    CATALOG,
    DISTANCES,
    JOBS,
    MINIMA,
    SELECTION,
    card,
    entry_status,
    fetch_result,
    graph,
    lookup_analysis,
    minimum_options,
    pending_intent,
    register_intent,
    request_analysis,
    track,
)
from toroid.plots import empty_figure

GRAPH = "map-graph"
FAMILY = "map-family"
VARIANT = "map-variant"
COLOR = "map-color"
NOTE = "map-note"
PAIR_A = "pair-a"
PAIR_B = "pair-b"
RESET = "pair-reset"
POSITIONS = "map-positions"
STATUS = "map-status"
COMPUTE = "map-compute"
COMPUTE_INTENT = "map-compute-intent"
COMPUTE_DONE = "map-compute-done"
THIRD = "torus-third"  # the third minimum, chosen in the torus view, is ringed on the map too

VARIANTS = {"geodesic": "geodesic (normalized + aligned)", "raw": "raw Euclidean"}


def layout() -> html.Section:
    controls = html.Div(
        [
            dcc.Dropdown(id=FAMILY, placeholder="Landscape (architecture on dataset)", clearable=False,
                         className="family-dropdown"),
            dcc.RadioItems(id=VARIANT, value="geodesic", inline=True, className="radio",
                           options=[{"label": label, "value": value} for value, label in VARIANTS.items()]),
            dcc.RadioItems(id=COLOR, value="sampler", inline=True, className="radio",
                           options=[{"label": "color: sampler (size: flatness)", "value": "sampler"},
                                    {"label": "color: flatness", "value": "flatness"}]),
        ],
        className="controls",
    )
    pair = html.Div(
        [
            html.Span("A", className="pair-tag a"),
            dcc.Dropdown(id=PAIR_A, placeholder="click a minimum", className="pair-dropdown"),
            html.Span("B", className="pair-tag b"),
            dcc.Dropdown(id=PAIR_B, placeholder="then a second one", className="pair-dropdown"),
            html.Button("Reset", id=RESET, className="button secondary", n_clicks=0),
        ],
        className="pair-row",
    )
    return card(
        "Minima map",
        [controls, html.Div(id=STATUS),
         html.Button("Compute the distances", id=COMPUTE, className="button secondary", n_clicks=0,
                     style={"display": "none"}),
         graph(GRAPH, "minima-map", height="520px", clear_on_unhover=True),
         html.Div(id=NOTE, className="note"), pair, dcc.Store(id=POSITIONS),
         dcc.Store(id=COMPUTE_INTENT), dcc.Store(id=COMPUTE_DONE)],
        class_name="map-card",
    )


def register(app, client: ApiClient) -> None:
    @app.callback(
        Output(FAMILY, "options"), Output(FAMILY, "value"),
        Input(MINIMA, "data"), Input(CATALOG, "data"), State(FAMILY, "value"),
    )
    def family_options(minima, catalog, current):
        groups = families(minima or [], _defaults(catalog), _dataset_names(catalog))
        options = [{"label": g["label"], "value": g["key"]} for g in groups]
        keys = [g["key"] for g in groups]
        value = current if current in keys else (keys[0] if keys else None)
        return options, value

    register_intent(app, COMPUTE, COMPUTE_INTENT, State(FAMILY, "value"))

    @app.callback(
        Output(DISTANCES, "data"), Output(COMPUTE_DONE, "data"),
        Input(MINIMA, "data"), Input(FAMILY, "value"), Input(JOBS, "data"), Input(COMPUTE_INTENT, "data"),
        State(DISTANCES, "data"), State(COMPUTE_DONE, "data"), State(CATALOG, "data"),
    )
    def distances(minima, family, jobs, compute, entry, done, catalog):
        """The family's distances, looked up (never requested) as the page loads and polls: the server asks for
        them when a minimum joins a family. Only the "Compute the distances" button asks (a user's action)."""
        ids = sorted(_family_ids(minima, family, catalog))
        same_family = bool(entry) and entry.get("family") == family
        asked = pending_intent(compute, done)

        def answer(value):
            if value is no_update and not asked:
                raise PreventUpdate
            return value, (compute["n"] if asked else no_update)

        if len(ids) < 2:
            return answer(no_update if entry is None else None)
        previous = None
        if same_family:
            previous = entry["result_id"] if entry.get("state") == "succeeded" else entry.get("previous_result_id")
        params = {"minimum_ids": ids}
        if asked and compute.get(FAMILY) == family:  # a redone run asks again: the server dedups it
            return answer({**request_analysis(client, "distances", params), "family": family,
                           "previous_result_id": previous})
        if entry and entry.get("params", {}).get("minimum_ids") == ids and entry.get("state") != "missing":
            updated = track(client, entry, jobs)
            return answer(no_update if updated is None else updated)
        new = {**lookup_analysis(client, "distances", params), "family": family, "previous_result_id": previous}
        return answer(no_update if entry is not None and new == entry else new)

    @app.callback(Output(COMPUTE, "style"), Input(DISTANCES, "data"))
    def compute_button(entry):
        missing = bool(entry) and entry.get("state") == "missing"
        return {"display": "inline-block", "marginBottom": "8px"} if missing else {"display": "none"}

    @app.callback(
        Output(SELECTION, "data"), Output(PAIR_A, "value"), Output(PAIR_B, "value"), Output(GRAPH, "clickData"),
        Input(GRAPH, "clickData"), Input(RESET, "n_clicks"), Input(PAIR_A, "value"), Input(PAIR_B, "value"),
        State(SELECTION, "data"),
    )
    def select(click, _reset, a_value, b_value, selection):
        trigger = ctx.triggered_id
        selection = selection or {"a": None, "b": None}
        if trigger == RESET:
            selection = {"a": None, "b": None}
        elif trigger == GRAPH:
            clicked = _clicked_id(click)
            if clicked is None:
                raise PreventUpdate
            selection = next_selection(selection, clicked)
        elif trigger == PAIR_A:
            selection = {**selection, "a": a_value}
            if a_value and a_value == selection.get("b"):
                selection["b"] = None
        elif trigger == PAIR_B:
            selection = {**selection, "b": b_value if b_value != selection.get("a") else None}
        selection = {"a": selection.get("a"), "b": selection.get("b")}
        return selection, selection["a"], selection["b"], None

    @app.callback(Output(PAIR_A, "options"), Output(PAIR_B, "options"), Input(MINIMA, "data"))
    def pair_options(minima):
        options = minimum_options(minima)
        return options, options

    @app.callback(
        Output(GRAPH, "figure"), Output(NOTE, "children"), Output(POSITIONS, "data"), Output(STATUS, "children"),
        Output(NOTE, "data-method"), Output(NOTE, "data-pending"),
        Input(MINIMA, "data"), Input(DISTANCES, "data"), Input(FAMILY, "value"), Input(VARIANT, "value"),
        Input(COLOR, "value"), Input(SELECTION, "data"), Input(THIRD, "value"),
        State(POSITIONS, "data"), State(CATALOG, "data"),
    )
    def draw(minima, entry, family, variant, color_by, selection, third, stored, catalog):
        minima = minima or []
        ids = set(_family_ids(minima, family, catalog))
        shown = [m for m in minima if m["id"] in ids]
        if not shown:
            fig = empty_figure("No minima yet: train some or upload a checkpoint (Add minima).")
            return fig, "", no_update, None, "none", "0"
        data = fetch_result(client, entry)
        if data is None and entry and entry.get("previous_result_id"):
            data = fetch_result(client, {"state": "succeeded", "result_id": entry["previous_result_id"]})
        key = f"{family}|{variant}"
        previous = stored["positions"] if stored and stored.get("key") == key else None
        positions, method, pending = figures.map_positions(shown, data, variant, previous)
        sel = {**(selection or {}), "c": third}
        pair_distance = _pair_distance(data, variant, sel.get("a"), sel.get("b"))
        fig = figures.minima_map(shown, positions, method, sel, color_by, variant, pair_distance)
        note = _note(shown, method, pending, selection)
        status = entry_status(entry, "distances") if entry and entry.get("state") != "succeeded" else None
        settled = {mid: xy for mid, xy in positions.items() if mid not in pending}
        store = {"key": key, "positions": settled} if method == "mds" else no_update
        return fig, note, store, status, method, str(len(pending))


def _defaults(catalog: dict | None) -> dict[str, dict]:
    return {a["name"]: a.get("defaults") or {} for a in (catalog or {}).get("architectures", [])}


def _dataset_names(catalog: dict | None) -> dict[str, str]:
    """sha256 -> name of the uploaded datasets (docs/data.md), for the family labels."""
    uploaded = [d for d in (catalog or {}).get("datasets", []) if d.get("kind") == "upload" and d.get("id")]
    return {d["id"]: d["name"] for d in uploaded}


def _family_ids(minima: list[dict] | None, family: str | None, catalog: dict | None) -> list[str]:
    for group in families(minima or [], _defaults(catalog)):
        if group["key"] == family:
            return group["ids"]
    return []


def _clicked_id(click: dict | None) -> str | None:
    """The minimum id of a plotly click event (``customdata[0]`` of the point)."""
    for point in (click or {}).get("points", []):
        custom = point.get("customdata")
        if isinstance(custom, list) and custom:
            return custom[0]
    return None


def _pair_distance(data: dict | None, variant: str, a: str | None, b: str | None) -> float | None:
    if not data or not a or not b:
        return None
    ids = data.get("ids") or []
    matrix = (data.get("matrices") or {}).get(variant)
    if matrix is None or a not in ids or b not in ids:
        return None
    return float(matrix[ids.index(a)][ids.index(b)])


def _note(shown: list[dict], method: str, pending: list[str], selection: dict | None) -> str:
    parts = []
    if len(shown) < 2:
        parts.append("One minimum so far: add another to see distances and paths.")
    elif method == "error":
        parts.append("Laid out by error until the distances are computed.")
    else:
        parts.append("Distances in the plane approximate the chosen distance (classical MDS).")
    if pending:
        parts.append(f"{len(pending)} new minim{'um' if len(pending) == 1 else 'a'} below the map: placed when "
                     "its distances are ready.")
    selection = selection or {}
    if not selection.get("a"):
        parts.append("Click a minimum, then a second one, to compare them.")
    elif not selection.get("b"):
        parts.append("Now click a second minimum.")
    return " ".join(parts)
