"""The study page: start a study from a preset (with JSON overrides), follow its progress, read its report.

Talks to the API only (``/api/studies``); the report is the server's static HTML page (``report.html``), shown in
a frame, with links to the CSV tables and the zip. Self-contained: ``layout()`` and ``register(app, client)``.
"""

from __future__ import annotations

import json

from dash import Input, Output, State, dcc, html, no_update

from dashboard.client import ApiClient, ApiError
from dashboard.views.common import card, message, progress_bar

PRESET = "study-preset"
OVERRIDES = "study-overrides"
START = "study-start"
SELECT = "study-select"
STATUS = "study-status"
REPORT = "study-report"
TICK = "study-tick"
FEEDBACK = "study-feedback"


def layout() -> html.Section:
    form = html.Div([
        html.Label("Preset"), dcc.Dropdown(id=PRESET, clearable=False, placeholder="loading presets ..."),
        html.Label("Overrides (JSON, merged into the preset)"),
        dcc.Textarea(id=OVERRIDES, value="{}", style={"width": "100%", "height": "90px", "fontFamily": "monospace"}),
        html.Button("Run study", id=START, n_clicks=0, className="primary"),
        html.Div(id=FEEDBACK),
    ], className="study-form")
    follow = html.Div([
        html.Label("Study"), dcc.Dropdown(id=SELECT, placeholder="no studies yet"),
        html.Div(id=STATUS), html.Div(id=REPORT),
    ])
    return card("Studies", [form, html.Hr(), follow, dcc.Interval(id=TICK, interval=2000)])


def status_view(study: dict) -> list:
    """Progress bar, message and step counts of one study record."""
    state = study.get("state") or "queued"
    fraction = 1.0 if state == "succeeded" else float(study.get("progress") or 0.0)
    parts = [progress_bar(fraction, f"{100 * fraction:.0f}%", state),
             html.Div(f"{state}: {study.get('message') or ''} ({study.get('steps_done')}/"
                      f"{study.get('steps_total')} steps)", className="study-message")]
    if study.get("error"):
        parts.append(message(study["error"] + " (run the study again to resume)", "error"))
    return parts


def report_view(study: dict, api_url: str) -> list:
    """The report (a frame on the server's report.html) and its downloads, once the study succeeded."""
    if study.get("state") != "succeeded":
        return []
    base = f"{api_url.rstrip('/')}/studies/{study['id']}"
    return [
        html.Div([html.A("report.html", href=f"{base}/report.html", target="_blank"), " · ",
                  html.A("every number (CSV)", href=f"{base}/report.csv"), " · ",
                  html.A("zip", href=f"{base}/report.zip")], className="downloads"),
        html.Iframe(src=f"{base}/report.html", style={"width": "100%", "height": "1400px", "border": "0"}),
    ]


def register(app, client: ApiClient, public_api_url: str | None = None) -> None:
    api_url = public_api_url or client.base_url

    @app.callback(Output(PRESET, "options"), Output(PRESET, "value"), Input(TICK, "n_intervals"),
                  State(PRESET, "options"))
    def presets(_tick, current):
        if current:
            return no_update, no_update
        try:
            found = client.get("/studies/presets")
        except ApiError:
            return no_update, no_update
        return [{"label": f"{p['name']}: {p['description'][:90]}", "value": p["name"]} for p in found], \
            (found[0]["name"] if found else None)

    @app.callback(Output(FEEDBACK, "children"), Output(SELECT, "value"), Input(START, "n_clicks"),
                  State(PRESET, "value"), State(OVERRIDES, "value"), prevent_initial_call=True)
    def start(_clicks, preset, overrides):
        try:
            extra = json.loads(overrides or "{}")
            if not isinstance(extra, dict):
                raise ValueError("overrides must be a JSON object")
        except ValueError as exc:
            return message(f"overrides: {exc}", "error"), no_update
        try:
            study = client.post("/studies", json={"preset": preset, **extra})
        except ApiError as exc:
            return message(str(exc), "error"), no_update
        return message(f"study {study['name']} ({study['id']}): {study['state']}", "ok"), study["id"]

    @app.callback(Output(SELECT, "options"), Input(TICK, "n_intervals"))
    def studies(_tick):
        try:
            found = client.get("/studies")
        except ApiError:
            return no_update
        return [{"label": f"{s['name']} ({s['state']}, {100 * float(s.get('progress') or 0):.0f}%)",
                 "value": s["id"]} for s in found]

    @app.callback(Output(STATUS, "children"), Output(REPORT, "children"), Input(SELECT, "value"),
                  Input(TICK, "n_intervals"), State(REPORT, "children"))
    def follow(study_id, _tick, shown):
        if not study_id:
            return [], []
        try:
            study = client.get(f"/studies/{study_id}")
        except ApiError as exc:
            return message(str(exc), "error"), []
        report = report_view(study, api_url)
        same = bool(shown) and bool(report) and str(study["id"]) in json.dumps(shown, default=str)
        return status_view(study), (no_update if same else report)
