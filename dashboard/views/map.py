"""The home view: every minimum on a 2-D map (MDS of the normalized + aligned geodesic distances, docs/method.md
§5, with its stress-1 and share of variance in the caption), colored by sampler and sized by flatness; click two
minima to select a pair.

The distances of the displayed family (minima of one architecture/config/dataset, the only ones that can be aligned
with each other) are looked up whenever the family's membership changes and tracked until their job finishes; the map
places every minimum whose distances are known as soon as they are (from the last result, and the pairs the running
job has streamed so far), lines the others up underneath, and with fewer than two placeable minima lays them out by
train/test error. With no minima at all it says what is training and when it will be ready.
"""

from __future__ import annotations

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.figures.map import map_layout
from toroid.dashboard.state import families, next_selection
from toroid.dashboard.views.common import (
    ANALYSES,
    CATALOG,
    DISTANCES,
    MINIMA,
    SELECTION,
    TABS,
    TRAINING,
    card,
    entry_status,
    fetch_result,
    graph,
    lookup_analysis,
    message,
    minimum_options,
    pending_intent,
    register_intent,
    request_analysis,
    track,
)
from toroid.dashboard.views.distances import VARIANT as DISTANCES_VARIANT
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
TO_DISTANCES = "map-to-distances"
CSV = "map-csv"
DOWNLOAD = "map-download"
CSV_MESSAGE = "map-csv-message"

PAIR_EXACT = "map-pair-exact"

VARIANTS = {"geodesic": "geodesic (normalized + aligned)", "raw": "raw Euclidean"}
#: The largest family the dashboard looks up by its minimum ids (``GET /api/analyses/distances`` takes at most 32);
#: a larger one is found through ``GET /api/map`` (its distances result), so no request the API refuses is sent
LOOKUP_MAX = 32


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
    actions = [
        html.Button("Distance matrix", id=TO_DISTANCES, className="button secondary", n_clicks=0,
                    title="The distances this map is drawn from, as a heatmap (the Distances view)"),
        html.Button("CSV", id=CSV, className="button secondary", n_clicks=0,
                    title="The map's coordinates (GET /api/map?format=csv)"),
        dcc.Download(id=DOWNLOAD),
    ]
    return card(
        "Minima map",
        [controls, html.Div(id=STATUS), html.Div(id=CSV_MESSAGE),
         html.Button("Compute the distances", id=COMPUTE, className="button secondary", n_clicks=0,
                     style={"display": "none"}),
         graph(GRAPH, "minima-map", height="520px", clear_on_unhover=True),
         html.Div(id=NOTE, className="note"), pair, dcc.Store(id=POSITIONS),
         dcc.Store(id=COMPUTE_INTENT), dcc.Store(id=COMPUTE_DONE), dcc.Store(id=PAIR_EXACT)],
        actions=actions, class_name="map-card",
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
        Input(MINIMA, "data"), Input(FAMILY, "value"), Input(ANALYSES, "data"), Input(COMPUTE_INTENT, "data"),
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
        if len(ids) > LOOKUP_MAX:  # the server's family job keeps it up to date: found through GET /api/map
            new = _family_entry(client, family, ids)
            return answer(no_update if entry is not None and new == entry else new)
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
        if new.get("state") == "missing":  # the server's family job may align to a reference (TOROID_MAP_PAIRWISE_MAX)
            found = _family_entry(client, family, ids)
            if found["state"] == "succeeded":
                return answer(no_update if entry is not None and found == entry else found)
        same_ids = bool(entry) and (entry.get("params") or {}).get("minimum_ids") == ids
        if new.get("state") != "succeeded" and (previous is None or new.get("state") == "missing" or not same_ids):
            # opened while new minima wait, or their job is not asked yet: the largest subset computed before
            new["previous_result_id"] = _covering_result(client, family) or previous
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
        Output(PAIR_EXACT, "data"),
        Input(SELECTION, "data"), Input(DISTANCES, "data"), Input(ANALYSES, "data"), State(PAIR_EXACT, "data"),
    )
    def pair_exact(selection, entry, jobs, current):
        """On a map drawn from distances aligned to a common reference (docs/method.md §5, "Many minima"), the
        selected pair's pairwise-aligned distances: asked once the user picks A and B (a pair costs one job of
        one alignment), then tracked until they are in."""
        a, b = (selection or {}).get("a"), (selection or {}).get("b")
        if not (a and b) or not entry or entry.get("alignment") != "reference":
            if current is None:
                raise PreventUpdate
            return None
        params = {"minimum_ids": [a, b]}
        if current and (current.get("params") or {}).get("minimum_ids") == [a, b]:
            updated = track(client, current, jobs)
            if updated is None:
                raise PreventUpdate
            return updated
        return request_analysis(client, "distances", params)

    @app.callback(
        Output(GRAPH, "figure"), Output(NOTE, "children"), Output(POSITIONS, "data"), Output(STATUS, "children"),
        Output(NOTE, "data-method"), Output(NOTE, "data-pending"),
        Input(MINIMA, "data"), Input(DISTANCES, "data"), Input(FAMILY, "value"), Input(VARIANT, "value"),
        Input(COLOR, "value"), Input(SELECTION, "data"), Input(THIRD, "value"), Input(TRAINING, "data"),
        Input(PAIR_EXACT, "data"), State(POSITIONS, "data"), State(CATALOG, "data"),
    )
    def draw(minima, entry, family, variant, color_by, selection, third, jobs, exact, stored, catalog):
        minima = minima or []
        ids = set(_family_ids(minima, family, catalog))
        shown = [m for m in minima if m["id"] in ids]
        if not shown:  # what is training, and when it will be ready (the job list is polled)
            return empty_figure(training_text(jobs)), "", no_update, None, "none", "0"
        if {t["prop_id"].split(".")[0] for t in ctx.triggered} == {TRAINING}:
            raise PreventUpdate  # the jobs only matter to the empty map; the distances job moves DISTANCES
        data = fetch_result(client, entry)
        if data is None and entry and entry.get("previous_result_id"):
            data = fetch_result(client, {"state": "succeeded", "result_id": entry["previous_result_id"]})
        key = f"{family}|{variant}"
        previous = stored["positions"] if stored and stored.get("key") == key else None
        layout = map_layout(shown, data, variant, previous, _streamed(entry))
        sel = {**(selection or {}), "c": third}
        pair_distance = None
        if sel.get("a") and sel.get("b"):
            pair_distance = layout.distance(sel["a"], sel["b"])
        fig = figures.minima_map(shown, layout.positions, layout.method, sel, color_by, variant, pair_distance,
                                 layout=layout)
        note = _note(shown, layout.method, layout.pending, selection)
        if layout.alignment == "reference" and sel.get("a") and sel.get("b"):
            note += " " + _exact_text(client, exact, variant)
        status = entry_status(entry, "distances") if entry and entry.get("state") != "succeeded" else None
        store = {"key": key, "positions": layout.coords} if layout.method == "mds" else no_update
        return fig, note, store, status, layout.method, str(len(layout.pending))

    @app.callback(
        Output(TABS, "value"), Output(DISTANCES_VARIANT, "value"),
        Input(TO_DISTANCES, "n_clicks"), State(VARIANT, "value"), prevent_initial_call=True,
    )
    def to_distances(clicks, variant):
        """The heatmap of the distances this map is drawn from: one click away (the Distances view)."""
        if not clicks:
            raise PreventUpdate
        return "distances", variant or "geodesic"

    @app.callback(
        Output(DOWNLOAD, "data"), Output(CSV_MESSAGE, "children"),
        Input(CSV, "n_clicks"), State(FAMILY, "value"), State(VARIANT, "value"), prevent_initial_call=True,
    )
    def download_csv(clicks, family, variant):
        """The map's coordinates as CSV, from GET /api/map (the API computes the same embedding; the map may be
        turned to keep still as minima arrive, so orientation can differ, distances do not)."""
        if not clicks:
            raise PreventUpdate
        if not family:
            return no_update, message("No minima on the map yet: nothing to download.", "info")
        try:
            text = client.map_csv(family, variant or "geodesic")
        except ApiError as exc:
            return no_update, message(f"CSV: {exc.message}", "error")
        return dcc.send_string(text, f"toroid-map-{family[:12]}-{variant or 'geodesic'}.csv"), None


def _family_entry(client: ApiClient, family: str, ids: list[str]) -> dict:
    """The distances entry of a family too large to look up by its ids: the result ``GET /api/map`` is drawn from
    (succeeded when it places every minimum; else "queued", no job to track, the result so far as the previous
    one: the server's family job fills it in as minima arrive)."""
    base = {"kind": "distances", "family": family, "params": {"minimum_ids": ids}, "job_id": None, "partial": {},
            "error": None, "minimum_id": None}
    try:
        found = client.map(family, "raw")  # every distances result has the raw matrix
    except ApiError as exc:
        return {**base, "state": "failed", "progress": 0.0, "message": "", "result_id": None, "error": exc.message}
    result_id, pending = found.get("result_id"), found.get("pending") or []
    if result_id and not pending:
        return {**base, "state": "succeeded", "progress": 1.0, "message": "", "result_id": result_id,
                "previous_result_id": result_id, "alignment": found.get("alignment")}
    waiting = f"{len(pending)} of {len(ids)} minima wait for their distances (computed by the server as they arrive)"
    return {**base, "state": "queued", "progress": (len(ids) - len(pending)) / len(ids), "message": waiting,
            "result_id": None, "previous_result_id": result_id, "alignment": found.get("alignment")}


def _exact_text(client: ApiClient, exact: dict | None, variant: str) -> str:
    """The note's line on the selected pair's pairwise-aligned distance (asked when both are selected)."""
    if not exact:
        return ""
    if exact.get("error"):
        return f"Pairwise-aligned distance of A and B: {exact['error']}"
    data = fetch_result(client, exact)
    if data is None:
        return "Pairwise-aligned distance of A and B: computing…"
    matrix = (data.get("matrices") or {}).get(variant)
    if not matrix:
        return ""
    unit = " rad" if variant == "geodesic" else ""
    return (f"Pairwise-aligned {VARIANTS.get(variant, variant)} distance of A and B: {float(matrix[0][1]):.3g}{unit} "
            "(the map's distances are aligned to a common reference: an upper bound).")


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


def _streamed(entry: dict | None) -> dict | None:
    """The pairs a running distances job has streamed so far (its ``partial``), for the map to place what it can."""
    if not entry or entry.get("state") not in ("queued", "running") or not entry.get("partial"):
        return None
    return {"ids": (entry.get("params") or {}).get("minimum_ids") or [], "partial": entry["partial"]}


def _covering_result(client: ApiClient, family: str | None) -> str | None:
    """The distances result the server's map uses for the family while its full matrix is missing (the largest
    subset computed before), so a page opened meanwhile shows those minima by distance at once."""
    if not family:
        return None
    try:
        return client.map(family, "raw").get("result_id")  # every distances result has the raw matrix
    except ApiError:
        return None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def training_line(job: dict) -> str:
    """One training job as the empty map lists it: name, state, progress or place in line, time left (when the
    server estimates one: ``eta_s``; ``queue_position`` and ``eta_s`` are optional fields of a job record)."""
    params = job.get("params") or {}
    name = params.get("name") or f"{params.get('sampler') or 'sgd'} seed {params.get('seed', 0)}"
    if job.get("state") == "running":
        parts = [f"running {100 * float(job.get('progress') or 0):.0f}%"]
    else:
        position = job.get("queue_position")
        parts = [f"queued ({_ordinal(int(position))} in line)" if isinstance(position, int) and position > 0
                 else "queued"]
    eta = job.get("eta_s")
    if isinstance(eta, int | float) and eta >= 0:
        parts.append(f"ready in {_duration(float(eta))}")
    return f"{name}: {', '.join(parts)}"


def training_text(jobs: list[dict] | None, limit: int = 8) -> str:
    """The empty map's message: the active training jobs (running first), or how to add minima."""
    active = [j for j in jobs or [] if j.get("kind") == "train" and j.get("state") in ("queued", "running")]
    if not active:
        return "No minima yet: train some or upload a checkpoint (Add minima)."
    active.sort(key=lambda j: (j.get("state") != "running", j.get("queue_position") or 0, j.get("created_at") or ""))
    count = len(active)
    jobs_text = "1 training job will add it" if count == 1 else f"{count} training jobs will add them"
    lines = [f"No minima yet: {jobs_text}"]
    lines += [training_line(j) for j in active[:limit]]
    if count > limit:
        lines.append(f"and {count - limit} more (Jobs view)")
    etas = [j.get("eta_s") for j in active if isinstance(j.get("eta_s"), int | float)]
    if etas and len(etas) == count:
        lines.append(f"The map fills in as each finishes; all ready in {_duration(max(etas))}.")
    else:
        lines.append("The map fills in as each finishes.")
    return "<br>".join(lines)


def _note(shown: list[dict], method: str, pending: list[str], selection: dict | None) -> str:
    parts = []
    if len(shown) < 2:
        parts.append("One minimum so far: add another to see distances and paths.")
    elif method == "error":
        parts.append("Laid out by error until the distances are computed.")
    if pending:
        parts.append(f"{len(pending)} new minim{'um' if len(pending) == 1 else 'a'} below the map: placed when "
                     "its distances are ready.")
    selection = selection or {}
    if not selection.get("a"):
        parts.append("Click a minimum, then a second one, to compare them.")
    elif not selection.get("b"):
        parts.append("Now click a second minimum.")
    return " ".join(parts)
