"""The study page: start a study from a preset and a form, follow its progress, read its report.

The form shows the chosen preset's values of the knobs a researcher changes most (seeds, budget, initializations,
local energy samples and mode, path kinds, points and pairs, one-bend paths); what differs from the preset is sent
as overrides (``form_overrides``), and a JSON box takes any other key of the spec (docs/studies.md), merged last.
Talks to the API only (``/api/studies``); the report is the server's static HTML page (``report.html``), shown in
a frame sized to its content, with links to the CSV tables and the zip. The feedback under the button follows the
study it started (queued, running with its progress, succeeded with a link to the report, failed with the error).
Self-contained: ``layout()`` and ``register(app, client)``.
"""

from __future__ import annotations

import json
from typing import Any

from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views.common import TABS, card, message, progress_bar

PRESET = "study-preset"
OVERRIDES = "study-overrides"
START = "study-start"
SELECT = "study-select"
STATUS = "study-status"
REPORT = "study-report"
TICK = "study-tick"
FEEDBACK = "study-feedback"
PRESETS = "study-presets"
STARTED = "study-started"
SHOWN = "study-shown"
FRAME = "study-report-frame"
LINKS = "study-report-links"
FRAME_SHOWN = {"width": "100%", "border": "0", "display": "block"}
FRAME_HIDDEN = {**FRAME_SHOWN, "display": "none"}

#: form field id -> (spec path, how the spec's value shows in the field)
FIELDS: dict[str, tuple[str, ...]] = {
    "study-seeds": ("seeds",),
    "study-epochs": ("epochs",),
    "study-inits": ("inits",),
    "study-flat-samples": ("flatness", "samples"),
    "study-flat-mode": ("flatness", "mode"),
    "study-path-kinds": ("paths", "kinds"),
    "study-points": ("paths", "points"),
    "study-pairs": ("paths", "pairs"),
    "study-bend": ("one_bend", "enabled"),
    "study-bend-epochs": ("one_bend", "epochs"),
}
PATH_KINDS = ["linear", "linear_aligned", "geodesic", "flip"]
PAIR_CHOICES = ["all", "within", "across", "1", "2", "3"]


def _get(spec: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = spec
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def fields_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The form's values for a (normalized) spec: seeds as a count, pairs as text, one-bend as a checklist."""
    values = {field: _get(spec, path) for field, path in FIELDS.items()}
    values["study-seeds"] = len(values["study-seeds"] or [])
    values["study-pairs"] = str(values["study-pairs"]) if values["study-pairs"] is not None else "all"
    values["study-bend"] = ["on"] if values["study-bend"] else []
    return values


def form_overrides(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Overrides of ``spec`` for the form ``values`` that differ from the spec's own (so a preset's seeds list,
    e.g. [2, 3], stays unless the count changes). Empty number fields leave the spec's value."""
    shown = fields_from_spec(spec)
    out: dict[str, Any] = {}
    for field, path in FIELDS.items():
        value = values.get(field)
        if value is None or value == "" or value == shown.get(field):
            continue
        if field == "study-bend":
            value = "on" in (value or [])
        elif field == "study-pairs":
            value = int(value) if str(value).isdigit() else value
        elif field == "study-path-kinds":
            value = [k for k in PATH_KINDS if k in value]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested dicts merged key by key (the API merges overrides into presets alike)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _number(field: str, minimum: int, maximum: int) -> dcc.Input:
    return dcc.Input(id=field, type="number", min=minimum, max=maximum, step=1, debounce=True)


def _row(label: str, control: Any, hint: str | None = None) -> html.Div:
    """A labelled control; ``hint`` shows on hover."""
    return html.Div([html.Label(label), control], className="study-field", title=hint)


def layout() -> html.Section:
    knobs = html.Div([
        _row("Seeds per sampler", _number("study-seeds", 1, 20), "minima per sampler"),
        _row("Epoch budget", _number("study-epochs", 1, 10_000), "budget of samplers without their own; "
             "training stops earlier at the target train error"),
        _row("Initializations", dcc.RadioItems(id="study-inits", inline=True, options=[
            {"label": "independent", "value": "independent"}, {"label": "shared by equal seeds", "value": "shared"}])),
        _row("Local energy samples", _number("study-flat-samples", 1, 10_000), "noise draws per sigma"),
        _row("Local energy mode", dcc.RadioItems(id="study-flat-mode", inline=True, options=[
            {"label": "sequential (to a standard error)", "value": "sequential"},
            {"label": "exact (full data)", "value": "exact"}, {"label": "fast (subsampled)", "value": "fast"}])),
        _row("Path kinds", dcc.Checklist(id="study-path-kinds", inline=True,
                                         options=[{"label": k, "value": k} for k in PATH_KINDS])),
        _row("Points per path", _number("study-points", 3, 1025), "evenly spaced, endpoints included"),
        _row("Pairs", dcc.Dropdown(id="study-pairs", clearable=False, options=[
            {"label": p if not p.isdigit() else f"at most {p} per pair type", "value": p} for p in PAIR_CHOICES])),
        _row("One-bend paths", dcc.Checklist(id="study-bend", inline=True, options=[{"label": "on", "value": "on"}])),
        _row("Bend retraining epochs", _number("study-bend-epochs", 1, 10_000), "the paper: 300"),
    ], className="study-knobs")
    form = html.Div([
        html.Label("Preset"), dcc.Dropdown(id=PRESET, clearable=False, placeholder="loading presets ..."),
        knobs,
        html.Label("More overrides (JSON, any key of the spec, merged last; e.g. {\"config\": {\"widths\": [256]}})"),
        dcc.Textarea(id=OVERRIDES, value="{}", style={"width": "100%", "height": "70px", "fontFamily": "monospace"}),
        html.Button("Run study", id=START, n_clicks=0, className="primary"),
        html.Div(id=FEEDBACK), dcc.Store(id=PRESETS), dcc.Store(id=STARTED), dcc.Store(id=SHOWN),
    ], className="study-form")
    follow = html.Div([
        html.Label("Study"), dcc.Dropdown(id=SELECT, placeholder="no studies yet"),
        html.Div(id=STATUS),
        # the frame is sized to the report's height by the clientside callback of ``register`` (no inner scrollbar
        # to clip the last plot); hidden until a study succeeded
        html.Div([html.Div(id=LINKS), html.Iframe(id=FRAME, height="900", style=FRAME_HIDDEN)], id=REPORT),
    ])
    return card("Studies", [form, html.Hr(), follow, dcc.Interval(id=TICK, interval=2000)])


def _job_place(study: dict) -> str:
    """`` · #2 in cpu, done in 3 min`` for a study whose job waits or runs (the job record's optional fields)."""
    job = study.get("job") or {}
    parts = []
    if study.get("state") == "queued" and job.get("queue_position"):
        parts.append(f"#{job['queue_position']} in {job.get('queue') or 'its queue'}")
    eta = job.get("eta_s")
    if isinstance(eta, int | float) and eta >= 0:
        parts.append(f"done in about {_human(eta)}")
    return (" · " + ", ".join(parts)) if parts else ""


def _steps(study: dict) -> str:
    return f"{study.get('steps_done')}/{study.get('steps_total')} steps done"


def _human(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def feedback_view(study: dict, api_url: str) -> html.Div:
    """The line under *Run study* for the study it started, following its record: queued (with its place in the
    queue), running (progress bar, running step, step counts), succeeded (a link to the report), failed (the error),
    cancelled."""
    state = study.get("state") or "queued"
    name = f"study {study.get('name')} ({study.get('id')})"
    steps = _steps(study)
    kind = "ok"  # the server took the study; only a failure turns the line red, a cancel grey
    if state == "succeeded":
        report = f"{api_url.rstrip('/')}/studies/{study['id']}/report.html"
        body: Any = [f"{name} succeeded · {steps} · ", html.A("open the report", href=report, target="_blank")]
    elif state == "failed":
        body, kind = f"{name} failed: {study.get('error') or study.get('message') or 'no message'}", "error"
    elif state == "running":
        fraction = float(study.get("progress") or 0.0)
        detail = study.get("message") or ""
        body = progress_bar(fraction, f"{name} running {100 * fraction:.0f}% · {detail} · {steps}{_job_place(study)}",
                            "running")
    else:
        body, kind = f"{name} {state}{_job_place(study)}", ("info" if state == "cancelled" else "ok")
    return html.Div(body, className=f"message {kind}", **{"data-kind": kind, "data-state": state})


def status_view(study: dict) -> list:
    """Progress bar, message and step counts of one study record."""
    state = study.get("state") or "queued"
    fraction = 1.0 if state == "succeeded" else float(study.get("progress") or 0.0)
    detail = study.get("message") or ""
    parts = [progress_bar(fraction, f"{100 * fraction:.0f}%", state),
             html.Div(f"{state}{f' · {detail}' if detail not in ('', state, 'done') else ''} · {_steps(study)}"
                      f"{_job_place(study)}", className="study-message")]
    if study.get("error"):
        parts.append(message(study["error"] + " (run the study again to resume)", "error"))
    return parts


def report_view(study: dict, api_url: str) -> tuple[list, str | None]:
    """The report's downloads and the address of its page (shown in the frame), once the study succeeded."""
    if study.get("state") != "succeeded":
        return [], None
    base = f"{api_url.rstrip('/')}/studies/{study['id']}"
    links = [html.Div([html.A("report.html", href=f"{base}/report.html", target="_blank"), " · ",
                       html.A("every number (CSV)", href=f"{base}/report.csv"), " · ",
                       html.A("zip", href=f"{base}/report.zip")], className="downloads")]
    return links, f"{base}/report.html"


def register(app, client: ApiClient, public_api_url: str | None = None) -> None:
    # the studies are polled only while their view is open (docs/dashboard.md, "Polling")
    app.clientside_callback("function(tab) { return tab !== 'studies'; }", Output(TICK, "disabled"),
                            Input(TABS, "value"))
    api_url = public_api_url or client.base_url

    @app.callback(Output(PRESET, "options"), Output(PRESET, "value"), Output(PRESETS, "data"),
                  Input(TICK, "n_intervals"), State(PRESET, "options"))
    def presets(_tick, current):
        if current:
            return no_update, no_update, no_update
        try:
            found = client.get("/studies/presets")
        except ApiError:
            return no_update, no_update, no_update
        return ([{"label": f"{p['name']}: {p['description'][:90]}", "value": p["name"]} for p in found],
                (found[0]["name"] if found else None), {p["name"]: p["spec"] for p in found})

    @app.callback([Output(field, "value") for field in FIELDS], Input(PRESET, "value"), State(PRESETS, "data"),
                  prevent_initial_call=True)
    def fill(preset, specs):
        spec = (specs or {}).get(preset)
        if not spec:
            return [no_update] * len(FIELDS)
        values = fields_from_spec(spec)
        return [values[field] for field in FIELDS]

    # The click posts in a callback of its own: Dash drops the answer of a callback that fires again while it
    # runs (docs/dashboard.md, "Clicks and polls"), and the list below fires every poll. It only records what
    # happened; the feedback line is drawn from that record by ``feedback``.
    @app.callback(Output(STARTED, "data"), Input(START, "n_clicks"),
                  State(PRESET, "value"), State(PRESETS, "data"), State(OVERRIDES, "value"),
                  *[State(field, "value") for field in FIELDS], prevent_initial_call=True)
    def start(clicks, preset: str | None, specs: dict | None, overrides: str | None, *values) -> dict[str, Any]:
        """POST the study of the form: ``{"n", "id"}`` of the new study, or ``{"n", "error"}``."""
        try:
            extra = json.loads(overrides or "{}")
            if not isinstance(extra, dict):
                raise ValueError("overrides must be a JSON object")
        except ValueError as exc:
            return {"n": clicks, "error": f"overrides: {exc}"}
        form = form_overrides((specs or {}).get(preset) or {}, dict(zip(FIELDS, values, strict=True)))
        try:
            study = client.post("/studies", json={"preset": preset, **merge(form, extra)})
        except ApiError as exc:
            return {"n": clicks, "error": str(exc)}
        return {"n": clicks, "id": study["id"]}

    # The feedback follows the started study (every tick, and at once when a click records a new one): a run that
    # a newer one replaces is simply redone, it only reads.
    @app.callback(Output(FEEDBACK, "children"), Input(STARTED, "data"), Input(TICK, "n_intervals"))
    def feedback(started, _tick):
        started = started or {}
        if started.get("error"):
            return message(started["error"], "error")
        if not started.get("id"):
            raise PreventUpdate
        try:
            study = client.get(f"/studies/{started['id']}")
        except ApiError:
            raise PreventUpdate from None
        return feedback_view(study, api_url)

    # One callback owns the list and its value: the dropdown drops a value missing from its options, so a new
    # study's id must arrive together with a list that holds it. A run dropped by a poll is redone: the started
    # id shows until SHOWN says it was.
    @app.callback(Output(SELECT, "options"), Output(SELECT, "value"), Output(SHOWN, "data"),
                  Input(TICK, "n_intervals"), Input(STARTED, "data"), State(SHOWN, "data"))
    def studies(_tick, started, shown):
        try:
            found = client.get("/studies")
        except ApiError:
            raise PreventUpdate from None
        options = [{"label": f"{s['name']} ({s['state']}, {100 * float(s.get('progress') or 0):.0f}%)",
                    "value": s["id"]} for s in found]
        started = (started or {}).get("id")
        if started and started != shown and any(s["id"] == started for s in found):
            return options, started, started
        return options, no_update, no_update

    @app.callback(Output(STATUS, "children"), Output(LINKS, "children"), Output(FRAME, "src"), Output(FRAME, "style"),
                  Input(SELECT, "value"), Input(TICK, "n_intervals"), State(FRAME, "src"))
    def follow(study_id, _tick, shown):
        if not study_id:
            return [], [], None, FRAME_HIDDEN
        try:
            study = client.get(f"/studies/{study_id}")
        except ApiError as exc:
            return message(str(exc), "error"), [], None, FRAME_HIDDEN
        links, src = report_view(study, api_url)
        if src is None:
            return status_view(study), [], None, FRAME_HIDDEN
        if src == shown:  # the frame keeps its page (and its height) while the study stays selected
            return status_view(study), no_update, no_update, no_update
        return status_view(study), links, src, FRAME_SHOWN

    # The frame takes the height of the report it shows (same origin: the dashboard mounted in the API server);
    # a report on another origin cannot be measured and gets a frame as tall as the window, scrolling inside.
    app.clientside_callback(
        """function(_tick, height) {
            const frame = document.getElementById('""" + FRAME + """');
            if (!frame || frame.offsetParent === null) { return window.dash_clientside.no_update; }  // not shown
            let wanted = Math.max(600, window.innerHeight - 80);  // another origin: contentDocument is null
            try {
                const doc = frame.contentDocument;
                if (doc && (!doc.body || doc.readyState !== 'complete' || doc.URL === 'about:blank')) {
                    return window.dash_clientside.no_update;  // still loading
                }
                if (doc) {  // the body's own height (the document's would never shrink below the frame's)
                    const style = doc.defaultView.getComputedStyle(doc.body);
                    wanted = Math.ceil(doc.body.getBoundingClientRect().height + parseFloat(style.marginTop)
                                       + parseFloat(style.marginBottom)) + 24;
                }
            } catch (err) { /* cross-origin access refused: keep the window-tall frame */ }
            return Math.abs(wanted - Number(height)) < 8 ? window.dash_clientside.no_update : String(wanted);
        }""",
        Output(FRAME, "height"), Input(TICK, "n_intervals"), State(FRAME, "height"),
    )
