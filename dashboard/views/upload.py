"""Add minima: upload a checkpoint (drag and drop) or train one with a sampler, with live training curves.

Upload: drop a ``.safetensors`` / ``.pt`` state_dict and choose its architecture, config and dataset, or drop it
together with the sidecar ``.json`` written by ``toroid train`` (which carries all of that); or drop a torch.export
``.pt2`` program, which carries its own network and needs only the dataset. The architecture is a listed one (the
dropdown) or a library model typed as ``torchvision:<name>`` / ``timm:<name>`` (docs/api.md). Beside the form, "What
the checkpoint must hold" lists the keys the chosen architecture expects (``dashboard/views/upload_layout.py``).
The backend validates the checkpoint; its message is shown verbatim in ``#upload-message``. When the keys differ
but the tensors line up in layer order, the API proposes a ``key_map`` (docs/api.md, upload): the form shows it and
"Rename and add" sends the same file again with ``key_map=auto``.

Train: ``POST /api/minima/train`` with architecture, dataset, sampler (docs/method.md §8), seed and epochs; the curves
of the watched training job come from its ``partial`` record while it runs.
"""

from __future__ import annotations

import json
from pathlib import PurePath

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard import figures
from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views import upload_layout
from toroid.dashboard.views.common import (
    CATALOG,
    REFRESH,
    TRAINING,
    as_list,
    card,
    dataset_options,
    decode_upload,
    graph,
    message,
)
from toroid.dashboard.views.upload_layout import effective_architecture, is_pt2, parse_json_field
from toroid.plots import empty_figure

__all__ = ["layout", "parse_json_field", "register", "split_files", "watched_train_job"]

DROP = "upload-drop"
FILES = "upload-files"
ARCH = "upload-architecture"
LIBRARY = "upload-library"
CONFIG = "upload-config"
DATASET = "upload-dataset"
DATASET_OPTIONS = "upload-dataset-options"
NAME = "upload-name"
SUBMIT = "upload-submit"
MESSAGE = "upload-message"
MODEL_FIELDS = ("upload-architecture-field", "upload-library-field", "upload-config-field")
KEYMAP = "upload-keymap"
KEYMAP_TABLE = "upload-keymap-table"
KEYMAP_ACCEPT = "upload-keymap-accept"
KEYMAP_STORE = "upload-keymap-store"
SYMMETRIES = "upload-symmetries"

TRAIN_ARCH = "train-architecture"
TRAIN_LIBRARY = "train-library"
TRAIN_CONFIG = "train-config"
TRAIN_DATASET = "train-dataset"
TRAIN_DATASET_OPTIONS = "train-dataset-options"
TRAIN_SAMPLER = "train-sampler"
TRAIN_HPARAMS = "train-hparams"
TRAIN_SEED = "train-seed"
TRAIN_EPOCHS = "train-epochs"
TRAIN_NAME = "train-name"
TRAIN_SUBMIT = "train-submit"
TRAIN_MESSAGE = "train-message"
TRAIN_JOB = "train-job"
TRAIN_GRAPH = "train-graph"

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".pt2")
NOTHING_STAGED = html.Span("No file dropped yet.", className="muted")
LIBRARY_HINT = "a torchvision:<name> or timm:<name> model; used instead of the list when filled"


def _field(label: str, control, hint: str | None = None, field_id: str | None = None) -> html.Label:
    children = [html.Span(label, className="field-label"), control]
    if hint:
        children.append(html.Span(hint, className="field-hint"))
    return html.Label(children, className="field", **({"id": field_id} if field_id else {}))


def _library_input(input_id: str) -> dcc.Input:
    return dcc.Input(id=input_id, type="text", placeholder="torchvision:resnet18", debounce=True, value="")


def layout() -> html.Div:
    upload = card("Upload a checkpoint", [
        dcc.Upload(
            id=DROP, multiple=True, className="dropzone", className_active="dropzone active",
            children=html.Div([html.Strong("Drop a checkpoint here"),
                               html.Span(" (safetensors or .pt state_dict, optionally with its sidecar .json, or a "
                                         "torch.export .pt2 program) or click to choose")]),
        ),
        html.Div(NOTHING_STAGED, id=FILES, className="staged"),
        html.Div([
            _field("architecture", dcc.Dropdown(id=ARCH, placeholder="architecture", clearable=False),
                   field_id=MODEL_FIELDS[0]),
            _field("or a library model", _library_input(LIBRARY), LIBRARY_HINT, field_id=MODEL_FIELDS[1]),
            _field("dataset", dcc.Dropdown(id=DATASET, placeholder="dataset", clearable=False)),
            _field("name", dcc.Input(id=NAME, type="text", placeholder="default: the file name", debounce=False)),
            _field("config (JSON)", dcc.Textarea(id=CONFIG, value="{}", className="json"),
                   "the architecture's settings, e.g. {\"widths\": [512, 512]}", field_id=MODEL_FIELDS[2]),
            _field("dataset options (JSON)", dcc.Textarea(id=DATASET_OPTIONS, value="{}", className="json")),
        ], className="form-grid"),
        html.Div([html.Button("Add minimum", id=SUBMIT, className="button", n_clicks=0),
                  html.Div(id=MESSAGE, className="message", **{"data-kind": ""})], className="form-actions"),
        html.Div([html.Div(id=KEYMAP_TABLE),
                  html.Button("Rename and add", id=KEYMAP_ACCEPT, className="button", n_clicks=0)],
                 id=KEYMAP, className="keymap", style={"display": "none"}),
        html.Div(id=SYMMETRIES, className="message info symmetries"),
        dcc.Store(id=KEYMAP_STORE),
    ])
    must_hold = card("What the checkpoint must hold", upload_layout.panel(), class_name="layout-card")
    train_form = html.Div([
        html.Div([
            _field("architecture", dcc.Dropdown(id=TRAIN_ARCH, placeholder="architecture", clearable=False)),
            _field("or a library model", _library_input(TRAIN_LIBRARY), LIBRARY_HINT),
            _field("dataset", dcc.Dropdown(id=TRAIN_DATASET, placeholder="dataset", clearable=False)),
            _field("sampler", dcc.Dropdown(id=TRAIN_SAMPLER, placeholder="sampler", clearable=False)),
            _field("config (JSON)", dcc.Textarea(id=TRAIN_CONFIG, value="{}", className="json")),
            _field("dataset options (JSON)", dcc.Textarea(id=TRAIN_DATASET_OPTIONS, value="{}", className="json")),
            _field("hyperparameters (JSON)", dcc.Textarea(id=TRAIN_HPARAMS, value="{}", className="json"),
                   "overrides of the sampler's defaults"),
            _field("seed", dcc.Input(id=TRAIN_SEED, type="number", value=0, min=0, step=1)),
            _field("epochs", dcc.Input(id=TRAIN_EPOCHS, type="number", value=30, min=1, step=1)),
            _field("name", dcc.Input(id=TRAIN_NAME, type="text", placeholder="default: sampler-seed")),
        ], className="form-grid"),
        html.Div([html.Button("Train", id=TRAIN_SUBMIT, className="button", n_clicks=0),
                  html.Div(id=TRAIN_MESSAGE, className="message")], className="form-actions"),
    ])
    train_watch = html.Div([
        _field("training job", dcc.Dropdown(id=TRAIN_JOB, placeholder="the training job to watch")),
        graph(TRAIN_GRAPH, "training", height="380px"),  # three legend rows above the plot (ADV)
    ])
    train = card("Train a minimum", html.Div([train_form, train_watch], className="grid two"))
    return html.Div([html.Div([upload, must_hold], className="grid two upload-row"), train])


def split_files(names: list[str]) -> tuple[int | None, int | None, list[str]]:
    """Index of the checkpoint and of the sidecar among dropped file names, and problems to report."""
    checkpoint = sidecar = None
    problems = []
    for i, name in enumerate(names):
        suffix = PurePath(name).suffix.lower()
        if suffix == ".json":
            if sidecar is not None:
                problems.append("drop at most one sidecar .json")
            sidecar = i
        else:
            if checkpoint is not None:
                problems.append("drop one checkpoint at a time (with its sidecar .json if you have one)")
            checkpoint = i
    if checkpoint is None and names:
        problems.append("a sidecar alone is not enough: drop the checkpoint (.safetensors, .pt or .pt2) with it")
    return checkpoint, sidecar, problems


def register(app, client: ApiClient) -> None:
    @app.callback(
        Output(ARCH, "options"), Output(DATASET, "options"), Output(TRAIN_ARCH, "options"),
        Output(TRAIN_DATASET, "options"), Output(TRAIN_SAMPLER, "options"),
        Output(TRAIN_ARCH, "value"), Output(TRAIN_DATASET, "value"), Output(TRAIN_SAMPLER, "value"),
        Output(ARCH, "value"), Output(DATASET, "value"),
        Input(CATALOG, "data"),
        State(TRAIN_ARCH, "value"), State(TRAIN_DATASET, "value"), State(TRAIN_SAMPLER, "value"),
        State(ARCH, "value"), State(DATASET, "value"),
    )
    def catalog_options(catalog, arch, dataset, sampler, upload_arch, upload_dataset):
        catalog = catalog or {}
        archs = [{"label": a["name"], "value": a["name"], "title": a.get("description", "")}
                 for a in catalog.get("architectures", [])]
        datasets = dataset_options(catalog)
        samplers = [{"label": s["name"], "value": s["name"], "title": s.get("description", "")}
                    for s in catalog.get("samplers", [])]
        names = {"arch": [o["value"] for o in archs], "dataset": [o["value"] for o in datasets],
                 "sampler": [o["value"] for o in samplers]}
        arch = arch or ("mlp" if "mlp" in names["arch"] else next(iter(names["arch"]), None))
        dataset = dataset or ("digits" if "digits" in names["dataset"] else next(iter(names["dataset"]), None))
        sampler = sampler or ("sgd" if "sgd" in names["sampler"] else next(iter(names["sampler"]), None))
        return (archs, datasets, archs, datasets, samplers, arch, dataset, sampler, upload_arch or arch,
                upload_dataset or dataset)

    @app.callback(
        Output(FILES, "children"), *[Output(f, "style") for f in MODEL_FIELDS],
        Output(MESSAGE, "children", allow_duplicate=True), Output(MESSAGE, "className", allow_duplicate=True),
        Output(MESSAGE, "data-kind", allow_duplicate=True), Output(SYMMETRIES, "children", allow_duplicate=True),
        Input(DROP, "filename"),
        prevent_initial_call=True,
    )
    def staged(filenames):
        names = as_list(filenames)
        if not names:  # nothing staged, or the upload went in: its message stays
            return NOTHING_STAGED, {}, {}, {}, no_update, no_update, no_update, no_update
        checkpoint, sidecar, problems = split_files(names)
        items = [html.Li([html.Code(name), " (sidecar: architecture, config and dataset come from it)"
                          if i == sidecar else ""]) for i, name in enumerate(names)]
        shown = [html.Ul(items)] + [message(p, "error") for p in problems]
        styles = [{}, {}, {}]
        if checkpoint is not None and is_pt2(names[checkpoint]):
            shown.append(message(upload_layout.PT2_NOTE, "info", "upload-pt2-note"))
            styles = [{"display": "none"}] * 3
        return shown, *styles, "", "message", "", ""  # the last file's message is about another file

    @app.callback(
        Output(MESSAGE, "children"), Output(MESSAGE, "className"), Output(MESSAGE, "data-kind"),
        Output(REFRESH, "data", allow_duplicate=True), Output(DROP, "contents"), Output(DROP, "filename"),
        Output(KEYMAP_STORE, "data"), Output(SYMMETRIES, "children"),
        Input(SUBMIT, "n_clicks"), Input(KEYMAP_ACCEPT, "n_clicks"),
        State(DROP, "contents"), State(DROP, "filename"), State(ARCH, "value"), State(LIBRARY, "value"),
        State(CONFIG, "value"), State(DATASET, "value"), State(DATASET_OPTIONS, "value"), State(NAME, "value"),
        State(KEYMAP_STORE, "data"),
        prevent_initial_call=True,
    )
    def submit(n_clicks, n_accept, contents, filenames, arch, library, config, dataset, dataset_options, name,
               proposal):
        if not (n_clicks or n_accept):
            raise PreventUpdate
        names, blobs = as_list(filenames), as_list(contents)
        checkpoint, sidecar, problems = split_files(names)
        accept = ctx.triggered_id == KEYMAP_ACCEPT
        if accept and not (proposal and proposal.get("files") == names):
            raise PreventUpdate  # the proposal was for other files: its box is hidden already

        def fail(text: str, kind: str = "error", keymap: dict | None = None):
            return text, f"message {kind}", kind, no_update, no_update, no_update, keymap, ""

        if not names:
            return fail("Drop a checkpoint file (.safetensors, .pt or .pt2) first.")
        if problems:
            return fail(" ".join(problems))
        try:
            content = decode_upload(blobs[checkpoint])
            side = (names[sidecar], decode_upload(blobs[sidecar])) if sidecar is not None else None
            fields = upload_fields(names[checkpoint], side is not None, effective_architecture(arch, library),
                                   config, dataset, dataset_options, name)
        except ValueError as exc:
            return fail(str(exc))
        try:
            record = client.upload_minimum(names[checkpoint], content, sidecar=side, fields=fields,
                                           key_map="auto" if accept else None)
        except ApiError as exc:
            key_map = (exc.body or {}).get("key_map") if isinstance(exc.body, dict) else None
            if exc.status == 422 and isinstance(key_map, dict) and key_map and not accept:
                return fail(exc.message, "keymap", {"files": names, "key_map": key_map})
            return fail(exc.message)
        text = (f"Added {record.get('name')} ({record.get('architecture')} on {record.get('dataset')}): "
                f"train error {figures.error_text(record, 'train_error')}, "
                f"test error {figures.error_text(record, 'test_error')}"
                + (" (a worker is evaluating it; the minima list shows the errors when it is done)."
                   if record.get("evaluation") == "pending" else "."))
        if accept:
            text = f"Renamed {_renamed(proposal['key_map'])} key(s). " + text
        symmetries = upload_layout.symmetry_summary(record.get("symmetries"))
        return (text, "message ok", "ok", {"minimum": record.get("id")}, None, None, None,
                f"Symmetries: {symmetries}" if symmetries else "")

    @app.callback(
        Output(KEYMAP, "style"), Output(KEYMAP_TABLE, "children"),
        Input(KEYMAP_STORE, "data"), Input(DROP, "filename"),
    )
    def show_key_map(proposal, filenames):
        if not proposal or proposal.get("files") != as_list(filenames):
            return {"display": "none"}, None
        return {}, upload_layout.key_map_rows(proposal["key_map"])

    @app.callback(Output(CONFIG, "value"), Input(ARCH, "value"), Input(LIBRARY, "value"), State(CATALOG, "data"),
                  prevent_initial_call=True)
    def upload_defaults(arch, library, catalog):
        return _defaults_text(catalog, effective_architecture(arch, library))

    upload_layout.register(app, client, {"arch": ARCH, "library": LIBRARY, "dataset": DATASET, "config": CONFIG,
                                         "options": DATASET_OPTIONS, "drop": DROP})

    @app.callback(Output(TRAIN_CONFIG, "value"), Input(TRAIN_ARCH, "value"), Input(TRAIN_LIBRARY, "value"),
                  State(CATALOG, "data"))
    def train_defaults(arch, library, catalog):
        return _defaults_text(catalog, effective_architecture(arch, library))

    @app.callback(
        Output(TRAIN_MESSAGE, "children"), Output(TRAIN_MESSAGE, "className"), Output(TRAIN_JOB, "value"),
        Output(REFRESH, "data", allow_duplicate=True),
        Input(TRAIN_SUBMIT, "n_clicks"),
        State(TRAIN_ARCH, "value"), State(TRAIN_LIBRARY, "value"), State(TRAIN_CONFIG, "value"),
        State(TRAIN_DATASET, "value"),
        State(TRAIN_DATASET_OPTIONS, "value"), State(TRAIN_SAMPLER, "value"), State(TRAIN_HPARAMS, "value"),
        State(TRAIN_SEED, "value"), State(TRAIN_EPOCHS, "value"), State(TRAIN_NAME, "value"),
        prevent_initial_call=True,
    )
    def train(n_clicks, arch, library, config, dataset, dataset_options, sampler, hparams, seed, epochs, name):
        if not n_clicks:
            raise PreventUpdate
        try:
            body = {
                "architecture": effective_architecture(arch, library), "config": parse_json_field(config, "config"),
                "dataset": dataset,
                "dataset_options": parse_json_field(dataset_options, "dataset options"), "sampler": sampler,
                "hyperparameters": parse_json_field(hparams, "hyperparameters"),
                "seed": int(seed if seed is not None else 0), "epochs": int(epochs) if epochs else None,
            }
        except ValueError as exc:
            return str(exc), "message error", no_update, no_update
        if (name or "").strip():
            body["name"] = name.strip()
        try:
            job = client.train(body)
        except ApiError as exc:
            return exc.message, "message error", no_update, no_update
        return (f"Training job {job['id']} queued ({sampler}, seed {body['seed']}).", "message ok", job["id"],
                {"job": job["id"]})

    @app.callback(Output(TRAIN_JOB, "options"), Input(TRAINING, "data"))
    def train_jobs(jobs):
        return [{"label": f"{_job_title(j)} · {j.get('state')}", "value": j["id"]}
                for j in jobs or [] if j.get("kind") == "train"]

    @app.callback(Output(TRAIN_GRAPH, "figure"), Input(TRAIN_JOB, "value"), Input(TRAINING, "data"))
    def curves(job_id, jobs):
        job = watched_train_job(jobs or [], job_id)
        if job is None:
            return empty_figure("Start a training run: its curves appear here live.")
        title = f"{_job_title(job)} · {job.get('state')} {100 * (job.get('progress') or 0):.0f}%"
        return figures.training_curves(job.get("partial") or {}, title)


def upload_fields(filename: str, with_sidecar: bool, arch: str, config: str | None, dataset: str | None,
                  dataset_options: str | None, name: str | None) -> dict[str, str] | None:
    """The form fields of an upload: none but an optional name beside a sidecar; dataset, options and name for a
    .pt2 program (it carries its network); else architecture, config, dataset, options and name. ValueError for a
    field that is not a JSON object."""
    name = (name or "").strip()
    if with_sidecar:
        return {"name": name} if name else None
    fields = {
        "dataset": dataset or "",
        "dataset_options": json.dumps(parse_json_field(dataset_options, "dataset options")),
        "name": name or PurePath(filename).stem,
    }
    if not is_pt2(filename):
        fields.update(architecture=arch or "", config=json.dumps(parse_json_field(config, "config")))
    return fields


def watched_train_job(jobs: list[dict], job_id: str | None) -> dict | None:
    """The training job whose curves are drawn: the chosen one, else the running one, else the newest that has
    curves, else the newest."""
    train_jobs = [j for j in jobs if j.get("kind") == "train"]
    chosen = next((j for j in train_jobs if j["id"] == job_id), None)
    running = next((j for j in train_jobs if j.get("state") == "running"), None)
    with_curves = next((j for j in train_jobs if (j.get("partial") or {}).get("epoch")), None)
    return chosen or running or with_curves or (train_jobs[0] if train_jobs else None)


def _renamed(key_map: dict[str, str]) -> int:
    return sum(1 for k, v in key_map.items() if k != v)


def _defaults_text(catalog: dict | None, arch: str | None) -> str:
    for a in (catalog or {}).get("architectures", []):
        if a["name"] == arch:
            return json.dumps(a.get("defaults") or {})
    return "{}"


def _job_title(job: dict) -> str:
    params = job.get("params") or {}
    name = params.get("name") or f"{params.get('sampler', '?')}-{params.get('seed', '?')}"
    return f"{name} ({params.get('architecture', '?')} on {params.get('dataset', '?')})"
