"""The Dash application factory (mounted by the API server under /dashboard, or run on its own).

The page is one header (system health, running jobs, the Export menu of CSV tables: ``dashboard/views/exports.py``)
and six views switched by tabs; each view lives in ``dashboard/views/<view>.py`` with ``layout()`` and
``register(app, client, ...)``. This module owns the app-wide
stores (see ``dashboard/views/common.py``) and the one polling loop: ``GET /api/minima`` and ``GET /api/jobs`` every
second while jobs run, every few seconds otherwise, with the ETags of the last answers (``poll_once``): an idle poll
moves a few hundred bytes and the API answers 304; views react to those stores instead of polling themselves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlparse

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views import data, distances, exports, flatness, jobs, paths, sharpness, study, torus, upload
from toroid.dashboard.views import map as minima_map
from toroid.dashboard.views.common import (
    ANALYSES,
    CATALOG,
    DISTANCES,
    JOBS,
    MINIMA,
    REFRESH,
    SELECTION,
    TABS,
    TRAINING,
)

FAST_POLL_MS = 1000
SLOW_POLL_MS = 4000
#: The session cookie the server's sign-in page sets (HttpOnly; the browser sends it with every callback).
SESSION_COOKIE = "toroid_session"

VIEWS = (
    ("map", "Map & paths"),
    ("flatness", "Flatness"),
    ("distances", "Distances"),
    ("torus", "Torus & plane"),
    ("add", "Add minima"),
    ("data", "Data"),
    ("studies", "Studies"),
    ("jobs", "Jobs"),
)


def _view_children(value: str):
    if value == "map":
        return html.Div([minima_map.layout(), paths.layout()], className="grid home")
    return {"flatness": flatness.layout, "distances": distances.layout, "torus": torus.layout,
            "add": upload.layout, "data": data.layout, "studies": study.layout, "jobs": jobs.layout}[value]()


def session_token() -> str | None:
    """The token of the browser behind the current Dash request (its session cookie), for the API client of a
    dashboard mounted in the server: each callback acts with its own user's credentials, never the server's."""
    import flask

    return flask.request.cookies.get(SESSION_COOKIE) if flask.has_request_context() else None


def _account(session: dict | None) -> list:
    """The top bar's account part: who is signed in and a sign-out button, or a sign-in link."""
    if not session or not session.get("auth"):
        return []
    if session.get("user"):
        return [html.Span(f"{session['user']} ({session['role']})", className="account"),
                html.Form(html.Button("Sign out", type="submit", className="link-button"), method="post",
                          action="/logout", className="logout")]
    return [html.A("Sign in", href="/login", className="api-link")]


def sign_in_page(docs_url: str) -> html.Div:
    """What an anonymous visitor sees on a server whose reads are private: nothing but the way in."""
    return html.Div([
        html.Header(html.Div([html.H1("Toroid"), html.Span("error landscapes of neural networks without "
                                                            "symmetries", className="tagline")], className="brand"),
                    className="topbar"),
        html.Div([html.H2("Sign in to see this server's minima"),
                  html.P("Its data are private (TOROID_PUBLIC_READS=false)."),
                  html.A("Sign in", href="/login", className="button"),
                  html.A("API docs", href=docs_url, className="api-link")], className="card sign-in"),
    ], className="page")


def build_layout(docs_url: str = "/docs", session: dict | None = None) -> html.Div:
    header = html.Header(
        [
            html.Div([html.H1("Toroid"),
                      html.Span("error landscapes of neural networks without symmetries", className="tagline")],
                     className="brand"),
            html.Div([html.Span(id="jobs-badge", className="jobs-badge"),
                      html.Span(id="health", className="health"),
                      html.A("API docs", href=docs_url, target="_blank", className="api-link"),
                      exports.menu(), *_account(session)], className="status"),
        ],
        className="topbar",
    )
    nav = dcc.Tabs(id=TABS, value="map", className="nav", parent_className="nav-parent",
                   children=[dcc.Tab(label=label, value=value, className="nav-tab",
                                     selected_className="nav-tab selected") for value, label in VIEWS])
    views = [html.Div(_view_children(value), id=f"view-{value}", className="view",
                      style={"display": "block" if value == "map" else "none"}) for value, _ in VIEWS]
    stores = [
        dcc.Store(id=MINIMA), dcc.Store(id=ANALYSES), dcc.Store(id=TRAINING), dcc.Store(id=JOBS),
        dcc.Store(id=SELECTION, data={"a": None, "b": None}),
        dcc.Store(id=CATALOG), dcc.Store(id=REFRESH), dcc.Store(id=DISTANCES), dcc.Store(id=POLL_MARKS),
        dcc.Interval(id="tick", interval=FAST_POLL_MS), dcc.Interval(id="health-tick", interval=5000),
        dcc.Interval(id="catalog-tick", interval=3000),
    ]
    return html.Div([header, nav, html.Main(views, className="views"), *stores], className="page")


#: The views that show the training jobs (curves, the empty map's "what is training") and the full job list.
TRAINING_VIEWS = ("add", "jobs")
JOBS_VIEWS = ("jobs",)


def slim_job(job: dict) -> dict:
    """A job record for the browser-side store: a finished analysis drops its streamed ``partial`` points (its
    result is fetched instead); training jobs keep theirs (the training curves)."""
    if job.get("state") in ("queued", "running") or job.get("kind") == "train":
        return job
    return {**job, "partial": {}}


def poll_stores(recent: list[dict], minima: list | bool | None, tab: str | None) -> dict[str, list[dict] | None]:
    """What one poll writes to the job stores, for the view that is open (docs/dashboard.md, "Polling"):
    ``ANALYSES`` (the analyses a view tracks, always), ``TRAINING`` (the training jobs: their curves and the empty
    map's text) and ``JOBS`` (the whole list) only where they are shown; None leaves a store as it is. A training's
    progress, which changes every poll, then wakes only the views that draw it, not every analysis a view tracks.
    ``minima``: the minima, or whether there are any."""
    # a chunk of a long analysis (docs/operations.md, "Chunks") is no analysis of its own: its parent shows it
    analyses = [slim_job(job) for job in recent
                if job.get("kind") != "train" and not (job.get("params") or {}).get("chunk")]
    training = [job for job in recent if job.get("kind") == "train"]
    shows_training = tab in TRAINING_VIEWS or (tab == "map" and not minima)
    return {ANALYSES: analyses, TRAINING: training if shows_training else None,
            JOBS: recent if tab in JOBS_VIEWS else None}


#: The poll's fingerprints, the only state the browser sends with a poll (docs/dashboard.md, "Polling"): the
#: API's ETags of the minima (``minima``) and of the job list (``jobs``), a hash of what each store holds
#: (``stores``), the stores that hold the job list of that ETag (``synced``), and whether there are minima.
POLL_MARKS = "poll-marks"


def content_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def poll_once(client: ApiClient, tab: str | None, marks: dict | None) -> tuple[tuple | None, dict]:
    """One poll: the outputs of ``poll`` (the MINIMA, ANALYSES, TRAINING and JOBS stores, the tick's interval and
    the badge, ``no_update`` for what did not change) and the new marks, or (None, marks) when nothing changed.
    The API is asked with the ETags of the marks (``If-None-Match``) and answers 304 when its answer is the same, so
    a poll in which nothing changed moves the marks (a few hundred bytes) and two empty answers; the job list is
    asked for in full when a store the open view shows does not hold its latest version (a view just opened)."""
    marks = dict(marks or {})
    hashes = dict(marks.get("stores") or {})
    outputs: list[Any] = [no_update] * 6
    answer = client.get_if_changed("/minima", marks.get("minima"))
    if answer is not None:
        minima, marks["minima"] = answer
        marks["has_minima"] = bool(minima)
        digest = content_hash(minima)
        if digest != hashes.get(MINIMA):  # the ETag also covers stored columns that records do not show
            outputs[0], hashes[MINIMA] = minima, digest
    has_minima = bool(marks.get("has_minima"))
    shown = [store for store, value in poll_stores([], has_minima, tab).items() if value is not None]
    current = set(shown) <= set(marks.get("synced") or [])
    jobs = client.get_if_changed("/jobs", marks.get("jobs") if current else None, limit=100)
    if jobs is not None:
        recent, marks["jobs"] = [slim_job(job) for job in jobs[0]], jobs[1]
        written = []
        for i, (store, value) in enumerate(poll_stores(recent, has_minima, tab).items(), start=1):
            if value is None:
                continue
            written.append(store)
            digest = content_hash(value)
            if digest != hashes.get(store):
                outputs[i], hashes[store] = value, digest
        marks["synced"] = written
        running = sum(1 for j in recent if j.get("state") == "running")
        queued = sum(1 for j in recent if j.get("state") == "queued")
        badge = f"{running} running · {queued} queued" if running + queued else "idle"
        interval = FAST_POLL_MS if running + queued else SLOW_POLL_MS
        if (interval, badge) != (marks.get("interval"), marks.get("badge")):
            outputs[4], outputs[5] = interval, badge
            marks["interval"], marks["badge"] = interval, badge
    marks["stores"] = hashes
    if answer is None and jobs is None:
        return None, marks
    return tuple(outputs), marks


def create_dash(api_url: str, prefix: str = "/dashboard/", public_api_url: str | None = None,
                token_provider=None) -> dash.Dash:
    """The Dash app talking to the API at ``api_url`` (server side); download links in the page point to
    ``public_api_url`` (the server passes its TOROID_PUBLIC_API_URL; default: the path of ``api_url`` on the page's
    own origin)."""
    client = ApiClient(api_url, token_provider=token_provider)
    public = public_api_url or urlparse(api_url).path or "/api"
    app = dash.Dash(
        __name__,
        requests_pathname_prefix=prefix,
        routes_pathname_prefix="/",
        title="Toroid",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
    )
    root = public.rstrip("/")
    docs_url = (root[: -len("/api")] if root.endswith("/api") else root) + "/docs"
    def layout():
        try:
            session = client.session()
        except ApiError:
            session = None
        if session and session.get("auth") and not session.get("user") and not session.get("public_reads"):
            return sign_in_page(docs_url)
        return build_layout(docs_url, session)

    app.layout = layout

    @app.callback(Output("health", "children"), Input("health-tick", "n_intervals"))
    def show_health(_n):
        try:
            status = client.health()
        except ApiError as exc:
            return f"API unreachable: {exc.message}"
        parts = ("redis", "database", "workers")
        return " · ".join(f"{name}: {'ok' if status[name]['ok'] else 'down'}" for name in parts)

    @app.callback(
        Output(CATALOG, "data"), Output("catalog-tick", "disabled"),
        Input("catalog-tick", "n_intervals"),
    )
    def load_catalog(_n):
        try:
            catalog = {"architectures": client.architectures(), "datasets": client.datasets(),
                       "samplers": client.samplers()}
        except ApiError:
            raise PreventUpdate from None  # retried on the next catalog tick
        return catalog, True

    @app.callback(
        Output(MINIMA, "data"), Output(ANALYSES, "data"), Output(TRAINING, "data"), Output(JOBS, "data"),
        Output("tick", "interval"), Output("jobs-badge", "children"), Output(POLL_MARKS, "data"),
        Input("tick", "n_intervals"), Input(REFRESH, "data"), Input(TABS, "value"),
        State(POLL_MARKS, "data"),
    )
    def poll(_n, _refresh, tab, marks):
        try:
            outputs, marks = poll_once(client, tab, marks)
        except ApiError:
            raise PreventUpdate from None
        if outputs is None:
            raise PreventUpdate  # nothing changed: the browser gets an empty answer
        return (*outputs, marks)

    view_names = json.dumps([value for value, _ in VIEWS])
    app.clientside_callback(
        "function(value) { return " + view_names + ".map(v => ({display: v === value ? 'block' : 'none'})); }",
        [Output(f"view-{value}", "style") for value, _ in VIEWS],
        Input(TABS, "value"),
    )

    minima_map.register(app, client)
    paths.register(app, client, public)
    flatness.register(app, client, public)
    sharpness.register(app, client, public)
    distances.register(app, client, public)
    torus.register(app, client, public)
    upload.register(app, client)
    data.register(app, client)
    study.register(app, client, public)
    jobs.register(app, client, public)
    exports.register(app, client)
    return app

