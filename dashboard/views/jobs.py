"""The jobs panel: state and progress of every job (training, flatness, paths, distances, sections, tori), with
its queue, how long it waited and ran, its place in the queue and its ETA (estimates of the API, docs/operations.md),
cancel for queued and running ones, the downloads of each finished job's result, and the training curves of a
training job (the running one unless another is picked)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.state import ACTIVE_STATES
from toroid.dashboard.views.common import (
    JOBS,
    MINIMA,
    REFRESH,
    card,
    graph,
    message,
    minima_by_id,
    progress_bar,
    result_links,
)
from toroid.plots import empty_figure

TABLE = "jobs-table"
FILTER = "jobs-filter"
MESSAGE = "jobs-message"
CANCEL = "job-cancel"
PROGRESS = "job-progress"
DETAIL = "job-detail"
SHAPE = "jobs-shape"
CURVES_JOB = "jobs-curves-job"
CURVES = "jobs-curves"
#: the cells that move every poll without rebuilding the rows: id type -> what they show
TIMING = ("job-queue", "job-waited", "job-duration", "job-eta")
DASH = "—"
HEADERS = ("kind", "what", "queue", "state", "progress", "message", "created", "waited", "run time", "ETA", "")


def layout() -> html.Div:
    actions = dcc.RadioItems(id=FILTER, value="all", inline=True, className="radio",
                             options=[{"label": "all", "value": "all"}, {"label": "active", "value": "active"},
                                      {"label": "finished", "value": "finished"}])
    table = card("Jobs", [html.Div(id=MESSAGE), html.Div(id=TABLE, className="table-wrap"), dcc.Store(id=SHAPE)],
                 actions=actions)
    pick = dcc.Dropdown(id=CURVES_JOB, placeholder="the running training job", clearable=True,
                        style={"minWidth": "420px"})
    curves = card("Training curves", graph(CURVES, "training-curves", height="420px"), actions=pick)
    return html.Div([table, curves])


def describe(job: dict, names: dict[str, dict]) -> str:
    """A one-line summary of what a job computes, with minimum names instead of ids; a chunk of a split analysis
    (docs/operations.md, "Chunks") says which and of what."""
    params = job.get("params") or {}
    chunk = params.get("chunk")
    if isinstance(chunk, dict):
        what = describe({**job, "params": {k: v for k, v in params.items() if k != "chunk"}}, names)
        unit = "points" if job.get("kind") == "path" else "cells"
        return (f"{what} · chunk {int(chunk.get('index', 0)) + 1}/{chunk.get('count', '?')} ({unit} "
                f"{chunk.get('start', '?')}–{int(chunk.get('stop', 1)) - 1}) of job {chunk.get('parent', '?')}")

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
    if kind == "study":
        return f"study {params.get('name') or params.get('study_id') or '?'}"
    if kind == "sharpness":
        return f"Hessian sharpness of {name(params.get('minimum_id'))} (normalized)"
    if kind in ("distances", "section", "torus"):
        ids = params.get("minimum_ids") or []
        shown = ", ".join(name(mid) for mid in ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        return f"{kind} of {shown}"
    return kind or "job"


def humanize(seconds: Any) -> str:
    """A duration as people say it: "42 s", "3 min 10 s", "1 h 5 min", "2 d 3 h"; "—" when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        return DASH
    if seconds < 1:
        return "<1 s"
    total = int(round(seconds))
    if total >= 3600:  # rounded to what is shown: minutes, or hours beyond a day
        total = int(round(seconds / (3600 if total >= 86400 else 60))) * (3600 if total >= 86400 else 60)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def timing(job: dict) -> dict[str, Any]:
    """The queue, waited, run-time and ETA cells of one job record (every field optional: "—" when absent).

    Queue: the queue's name, with the job's place in it while it waits (``#2 in cpu``). Waited: ``wait_s``. Run
    time: ``duration_s`` (so far while it runs), or its estimate ``estimated_s`` (``est. 3 min``) while it waits.
    ETA: ``eta_s``, the time until the job finishes, for queued and running jobs."""
    state = job.get("state")
    queue = job.get("queue") or DASH
    position = job.get("queue_position")
    if state == "queued" and isinstance(position, int) and not isinstance(position, bool):
        queue = f"#{position} in {queue}"
    duration = humanize(job.get("duration_s"))
    if state == "queued":
        estimate = humanize(job.get("estimated_s"))
        duration = DASH if estimate == DASH else f"est. {estimate}"
    eta = humanize(job.get("eta_s")) if state in ACTIVE_STATES else DASH
    return {"job-queue": queue, "job-waited": humanize(job.get("wait_s")), "job-duration": duration,
            "job-eta": eta if eta == DASH else f"in {eta}"}


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


def jobs_table(jobs: list[dict] | None, which: str, minima: list[dict] | None, public_api_url: str) -> Any:
    """The table of ``jobs`` (``which``: all, active or finished): one row per job, its live cells addressed by
    pattern ids (``live`` below refreshes them every poll)."""
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
        times = timing(job)
        estimate = humanize(job.get("estimated_s"))
        hints = {"job-duration": f"estimated run time {estimate}" if estimate != DASH else None}
        cells = {cell: html.Td(times[cell], id={"type": cell, "job": job["id"]}, className="num",
                               title=hints.get(cell)) for cell in TIMING}
        rows.append(html.Tr(
            [html.Td(job.get("kind")), html.Td(describe(job, names), className="what"), cells["job-queue"],
             html.Td(html.Span(state, className=f"badge {state}")),
             html.Td(_progress(job), id={"type": PROGRESS, "job": job["id"]}),
             html.Td(_detail(job), id={"type": DETAIL, "job": job["id"]}, className="detail"),
             html.Td(_when(job.get("created_at")), className="num"),
             cells["job-waited"], cells["job-duration"], cells["job-eta"],
             html.Td(html.Button("Cancel", id={"type": CANCEL, "job": job["id"]}, className="button small danger",
                                 n_clicks=0) if active else result_links(job.get("result_id"), public_api_url))],
            id=f"job-{job['id']}", **{"data-state": state, "data-kind": job.get("kind") or ""},
        ))
    header = html.Thead(html.Tr([html.Th(h) for h in HEADERS]))
    return html.Table([header, html.Tbody(rows)], className="table jobs-table")


def train_title(job: dict) -> str:
    """``name (architecture on dataset)`` of a training job."""
    params = job.get("params") or {}
    name = params.get("name") or f"{params.get('sampler', '?')}-{params.get('seed', '?')}"
    return f"{name} ({params.get('architecture', '?')} on {params.get('dataset', '?')})"


def training_figure(jobs: list[dict] | None, job_id: str | None) -> Any:
    """The training curves of the chosen training job, else the running one, else the newest with curves; the
    title gives its state, progress and ETA."""
    train_jobs = [j for j in jobs or [] if j.get("kind") == "train"]
    job = (next((j for j in train_jobs if j["id"] == job_id), None)
           or next((j for j in train_jobs if j.get("state") == "running"), None)
           or next((j for j in train_jobs if (j.get("partial") or {}).get("epoch")), None))
    if job is None:
        return empty_figure("No training job yet: the curves of a running one appear here.")
    state = job.get("state") or ""
    title = f"{train_title(job)} · {state} {100 * (job.get('progress') or 0):.0f}%"
    eta = timing(job)["job-eta"]
    if eta != DASH:
        title += f" · done {eta}"
    return figures.training_curves(job.get("partial") or {}, title)


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
        return jobs_table(jobs, which, minima, public_api_url)

    @app.callback(
        Output({"type": PROGRESS, "job": ALL}, "children"), Output({"type": DETAIL, "job": ALL}, "children"),
        *[Output({"type": cell, "job": ALL}, "children") for cell in TIMING],
        Input(JOBS, "data"),
    )
    def live(jobs):
        """Progress bars, messages, times and ETAs move every poll without rebuilding the rows."""
        by_id = {j["id"]: j for j in jobs or []}
        ids = [out["id"]["job"] for out in ctx.outputs_list[0]]
        if not ids:
            raise PreventUpdate
        times = [timing(by_id.get(i, {})) for i in ids]
        return ([_progress(by_id.get(i, {})) for i in ids], [_detail(by_id.get(i, {})) for i in ids],
                *[[t[cell] for t in times] for cell in TIMING])

    @app.callback(Output(CURVES_JOB, "options"), Input(JOBS, "data"))
    def curve_jobs(jobs):
        return [{"label": f"{train_title(j)} · {j.get('state')}", "value": j["id"]}
                for j in jobs or [] if j.get("kind") == "train"]

    @app.callback(Output(CURVES, "figure"), Input(CURVES_JOB, "value"), Input(JOBS, "data"))
    def curves(job_id, jobs):
        return training_figure(jobs, job_id)

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
