"""The jobs panel: state and progress of every job (training, flatness, paths, distances, sections, tori), with
cancel for queued and running ones, and the downloads of each finished job's result."""

from __future__ import annotations

from datetime import datetime

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.state import ACTIVE_STATES
from toroid.dashboard.views.common import JOBS, MINIMA, REFRESH, card, message, minima_by_id, progress_bar, result_links

TABLE = "jobs-table"
FILTER = "jobs-filter"
MESSAGE = "jobs-message"
CANCEL = "job-cancel"
PROGRESS = "job-progress"
DETAIL = "job-detail"
SHAPE = "jobs-shape"


def layout() -> html.Section:
    actions = dcc.RadioItems(id=FILTER, value="all", inline=True, className="radio",
                             options=[{"label": "all", "value": "all"}, {"label": "active", "value": "active"},
                                      {"label": "finished", "value": "finished"}])
    return card("Jobs", [html.Div(id=MESSAGE), html.Div(id=TABLE, className="table-wrap"), dcc.Store(id=SHAPE)],
                actions=actions)


def describe(job: dict, names: dict[str, dict]) -> str:
    """A one-line summary of what a job computes, with minimum names instead of ids."""
    params = job.get("params") or {}

    def name(mid: str | None) -> str:
        return (names.get(mid) or {}).get("name") or (mid or "?")

    kind = job.get("kind")
    if kind == "train":
        return (f"{params.get('sampler', '?')} seed {params.get('seed', '?')}: {params.get('architecture', '?')} on "
                f"{params.get('dataset', '?')}, {params.get('epochs') or 'default'} epochs")
    if kind == "path":
        return f"{params.get('kind', '?')} path {name(params.get('a'))} → {name(params.get('b'))}"
    if kind == "flatness":
        return f"local energy of {name(params.get('minimum_id'))} ({params.get('mode', 'sequential')})"
    if kind == "sharpness":
        return f"Hessian sharpness of {name(params.get('minimum_id'))} (normalized)"
    if kind in ("distances", "section", "torus"):
        ids = params.get("minimum_ids") or []
        shown = ", ".join(name(mid) for mid in ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        return f"{kind} of {shown}"
    return kind or "job"


def _progress(job: dict) -> html.Div:
    fraction = job.get("progress") or 0.0
    return progress_bar(fraction, f"{100 * fraction:.0f}%", job.get("state") or "")


def _detail(job: dict) -> str:
    return job.get("error") or job.get("message") or ""


def _when(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M:%S")
    except ValueError:
        return stamp


def structure(jobs: list[dict] | None) -> list[list]:
    """What the table's rows are made of (ids, states, results): the rows, and their Cancel buttons, are rebuilt
    only when this changes, so a click never lands on a button that the next poll is replacing."""
    return [[j["id"], j.get("state"), j.get("result_id"), j.get("error")] for j in jobs or []]


def register(app, client: ApiClient, public_api_url: str) -> None:
    @app.callback(Output(SHAPE, "data"), Input(JOBS, "data"), State(SHAPE, "data"))
    def shape(jobs, current):
        new = structure(jobs)
        if new == current:
            raise PreventUpdate
        return new

    @app.callback(Output(TABLE, "children"), Input(SHAPE, "data"), Input(FILTER, "value"),
                  State(JOBS, "data"), State(MINIMA, "data"))
    def table(_shape, which, jobs, minima):
        jobs = jobs or []
        if which == "active":
            jobs = [j for j in jobs if j.get("state") in ACTIVE_STATES]
        elif which == "finished":
            jobs = [j for j in jobs if j.get("state") not in ACTIVE_STATES]
        if not jobs:
            return message("No jobs yet." if which == "all" else f"No {which} jobs.", "info")
        names = minima_by_id(minima)
        rows = []
        for job in jobs:
            state = job.get("state") or ""
            active = state in ACTIVE_STATES
            rows.append(html.Tr(
                [html.Td(job.get("kind")), html.Td(describe(job, names), className="what"),
                 html.Td(html.Span(state, className=f"badge {state}")),
                 html.Td(_progress(job), id={"type": PROGRESS, "job": job["id"]}),
                 html.Td(_detail(job), id={"type": DETAIL, "job": job["id"]}, className="detail"),
                 html.Td(_when(job.get("created_at")), className="num"),
                 html.Td(html.Button("Cancel", id={"type": CANCEL, "job": job["id"]}, className="button small danger",
                                     n_clicks=0) if active else result_links(job.get("result_id"), public_api_url))],
                id=f"job-{job['id']}", **{"data-state": state, "data-kind": job.get("kind") or ""},
            ))
        header = html.Thead(html.Tr([html.Th(h) for h in ("kind", "what", "state", "progress", "message",
                                                          "created", "")]))
        return html.Table([header, html.Tbody(rows)], className="table jobs-table")

    @app.callback(
        Output({"type": PROGRESS, "job": ALL}, "children"), Output({"type": DETAIL, "job": ALL}, "children"),
        Input(JOBS, "data"),
    )
    def live(jobs):
        """Progress bars and messages move every poll without rebuilding the rows."""
        by_id = {j["id"]: j for j in jobs or []}
        ids = [out["id"]["job"] for out in ctx.outputs_list[0]]
        if not ids:
            raise PreventUpdate
        return ([_progress(by_id.get(i, {})) for i in ids], [_detail(by_id.get(i, {})) for i in ids])

    @app.callback(
        Output(MESSAGE, "children"), Output(REFRESH, "data", allow_duplicate=True),
        Input({"type": CANCEL, "job": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def cancel(clicks):
        trigger = ctx.triggered_id
        if not trigger or not any(clicks or []) or not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        try:
            job = client.cancel_job(trigger["job"])
        except ApiError as exc:
            return message(exc.message, "error"), no_update
        return message(f"Job {job['id']} {job.get('state')}.", "ok"), {"cancelled": job["id"]}
