"""What every view shares: the ids of the app-wide stores, graph config, small components, analysis tracking.

App-wide stores (created in ``dashboard/app.py``):

* ``MINIMA``: the list of minimum records (``GET /api/minima``), refreshed by polling;
* ``ANALYSES``: the recent analysis jobs (every kind but training; finished ones without their streamed points),
  refreshed every second while jobs run: the views track their analyses in it;
* ``TRAINING``: the recent training jobs with their curves, written only while a view that shows them is open
  (Add minima, Jobs, the empty map);
* ``JOBS``: all recent job records (``GET /api/jobs``), written only while the Jobs view is open;
* ``SELECTION``: ``{"a", "b"}``, the pair picked on the map;
* ``CATALOG``: ``{"architectures", "datasets", "samplers"}`` from the registries;
* ``REFRESH``: written by actions (upload, train, cancel) to poll at once;
* ``DISTANCES``: the tracked distances analysis of the displayed family (map and distances views);
* ``TABS``: the navigation value (the visible view).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from dash import Input, Output, State, dcc, html

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.figures import error_text
from toroid.dashboard.state import advance_entry, entry_from_answer, entry_from_error, is_active

MINIMA = "minima-store"
JOBS = "jobs-store"
ANALYSES = "analyses-store"
TRAINING = "training-store"
SELECTION = "selection-store"
CATALOG = "catalog-store"
REFRESH = "refresh-store"
DISTANCES = "distances-store"
TABS = "tabs"


def graph_config(filename: str) -> dict[str, Any]:
    """Plotly config: the PNG download button stays in the modebar, named after the figure."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": f"toroid-{filename}", "scale": 2},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def graph(graph_id: str, filename: str, height: str = "460px", **kwargs: Any) -> dcc.Graph:
    """A dcc.Graph with the shared config."""
    return dcc.Graph(id=graph_id, config=graph_config(filename), style={"height": height}, **kwargs)


def progress_bar(fraction: float, label: str = "", state: str = "running") -> html.Div:
    """A thin progress bar with a label; ``state`` becomes a CSS class (running, queued, succeeded, failed)."""
    pct = max(0.0, min(1.0, float(fraction or 0.0))) * 100.0
    return html.Div(
        [html.Div(html.Div(className="progress-fill", style={"width": f"{pct:.0f}%"}), className="progress-track"),
         html.Span(label, className="progress-label")],
        className=f"progress {state}", **{"data-progress": f"{pct:.0f}"},
    )


def result_links(result_id: str | None, public_api_url: str) -> html.Span:
    """Download links of a result: CSV (``/api/results/{id}.csv``) and JSON (``/api/results/{id}``)."""
    if not result_id:
        return html.Span()
    base = public_api_url.rstrip("/")
    return html.Span(
        [html.A("CSV", href=f"{base}/results/{result_id}.csv", download=f"toroid-{result_id}.csv",
                className="dl", target="_blank"),
         html.A("JSON", href=f"{base}/results/{result_id}", className="dl", target="_blank")],
        className="downloads",
    )


def message(text: str, kind: str = "info", element_id: str | None = None) -> html.Div:
    """A status line; ``kind`` is info, ok or error (the backend's message is shown verbatim)."""
    props: dict[str, Any] = {"className": f"message {kind}", "data-kind": kind}
    if element_id:
        props["id"] = element_id
    return html.Div(text, **props)


def card(title: str, children: Any, actions: Any = None, class_name: str = "") -> html.Section:
    """A titled panel."""
    header = [html.H2(title)]
    if actions is not None:
        header.append(html.Div(actions, className="card-actions"))
    return html.Section([html.Div(header, className="card-header"), html.Div(children, className="card-body")],
                        className=f"card {class_name}".strip())


def minima_by_id(minima: list[dict] | None) -> dict[str, dict]:
    return {m["id"]: m for m in minima or []}


def minimum_options(minima: list[dict] | None) -> list[dict[str, str]]:
    """Dropdown options for minima: label 'name (sampler, test error)'."""
    options = []
    for m in minima or []:
        test = m.get("test_error")
        detail = (f"{m.get('sampler') or 'upload'}, test {100 * test:.1f}%" if test is not None
                  else f"{m.get('sampler') or 'upload'}, {error_text(m, 'test_error')}")
        options.append({"label": f"{m.get('name') or m['id']} ({detail})", "value": m["id"]})
    return options


def request_analysis(client: ApiClient, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """POST /api/analyses/<kind> and make an entry of the answer (cached: finished at once; refused: the error)."""
    try:
        return entry_from_answer(kind, params, client.analyze(kind, dict(params)))
    except ApiError as exc:
        return entry_from_error(kind, params, exc.message)


def lookup_analysis(client: ApiClient, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """GET /api/analyses/<kind>: the entry of a computation done or in flight, without asking for it (a 404 gives
    an entry in state ``missing``); reading never queues anything."""
    try:
        return entry_from_answer(kind, params, client.lookup(kind, dict(params)))
    except ApiError as exc:
        if exc.status == 404:
            return {**entry_from_error(kind, params, ""), "state": "missing", "error": None}
        return entry_from_error(kind, params, exc.message)


def track(client: ApiClient, entry: dict[str, Any] | None, jobs: list[dict] | None) -> dict[str, Any] | None:
    """The entry moved forward with its job's latest record (from the polled list, else fetched); None: unchanged."""
    if not is_active(entry):
        return None
    job = next((j for j in jobs or [] if j.get("id") == entry["job_id"]), None)
    if job is None:
        try:
            job = client.job(entry["job_id"])
        except ApiError as exc:
            return {**entry, "state": "failed", "error": exc.message}
    updated = advance_entry(entry, job)
    return updated if updated != entry else None


def track_all(client: ApiClient, entries: dict[str, Any], jobs: list[dict] | None) -> bool:
    """Move every tracked entry of ``entries`` forward (in place) with its job's latest record; True if one moved."""
    changed = False
    for key, entry in list(entries.items()):
        updated = track(client, entry, jobs)
        if updated is not None:
            entries[key] = updated
            changed = True
    return changed


def fetch_result(client: ApiClient, entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The result data of a finished entry (from the client's cache after the first time), else None."""
    if not entry or entry.get("state") != "succeeded" or not entry.get("result_id"):
        return None
    try:
        return client.result(entry["result_id"]).get("data")
    except ApiError:
        return None


def entry_status(entry: Mapping[str, Any] | None, label: str) -> html.Div | None:
    """A progress bar or an error line for an entry that is not finished successfully (None when it is)."""
    if not entry:
        return None
    state = entry.get("state")
    if entry.get("error"):
        return message(f"{label}: {entry['error']}", "error")
    if state in ("queued", "running"):
        detail = entry.get("message") or ""
        text = f"{label}: {state}" + (f" · {detail}" if detail and detail != state else "")
        return progress_bar(entry.get("progress") or 0.0, text, state)
    if state == "cancelled":
        return message(f"{label}: cancelled", "info")
    return None


def dataset_options(catalog: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Dropdown options of every dataset field: the built-ins (disabled when their files or packages are missing)
    and the uploaded datasets by name (docs/data.md); the value is the name the API takes."""
    options = []
    for d in (catalog or {}).get("datasets", []):
        available = d.get("available", True)
        label = d["name"] if available else f"{d['name']} (not installed)"
        if d.get("kind") == "upload":
            label = f"{d['name']} (uploaded: {d.get('train', '?')} / {d.get('test', '?')})"
        options.append({"label": label, "value": d["name"], "title": d.get("description", ""),
                        "disabled": not available})
    return options


def as_list(value: Any) -> list:
    """A dcc.Upload value (one item, a list, or None) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def decode_upload(contents: str) -> bytes:
    """The bytes of a dcc.Upload data URL ('data:<type>;base64,<payload>')."""
    if not contents or "," not in contents:
        raise ValueError("the uploaded file arrived empty; drop it again")
    return base64.b64decode(contents.split(",", 1)[1])


def register_intent(app, button: str, store: str, *states: State) -> None:
    """A button's click as data: ``store`` gets ``{"n": clicks, <state's component id>: value, ...}`` from a
    callback whose only input is the click.

    Dash drops the answer of a callback that is still running when the same callback fires again (the renderer
    keeps the newest request of each callback). A click handled inside a callback that the polls also fire would
    be lost whenever a poll lands while it runs, so views handle ``pending_intent`` on every run instead and write
    the handled ``n`` with their result (docs/dashboard.md, "Clicks and polls"): a dropped run is simply redone.
    """
    @app.callback(Output(store, "data"), Input(button, "n_clicks"), *states, prevent_initial_call=True)
    def _intent(clicks, *values):
        return {"n": clicks or 0, **{s.component_id: v for s, v in zip(states, values, strict=True)}}


def pending_intent(intent: Mapping[str, Any] | None, handled: int | None) -> bool:
    """True when the click recorded in ``intent`` has not been handled yet (``handled`` is the last handled n)."""
    return bool(intent) and bool(intent.get("n")) and intent["n"] != (handled or 0)
