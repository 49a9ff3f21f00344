"""Data: the datasets minima can be trained and evaluated on, and "Add data" for a researcher's own (docs/data.md).

"Add data" takes one ``.npz`` (arrays ``x_train, y_train, x_test, y_test``, optional ``num_classes`` and
``class_names``) or the four IDX files of an MNIST-style dataset, and a name; it posts them to ``POST /api/datasets``
with the signed-in user's token, so the server validates them (shapes, labels, finite inputs, its size cap) and
answers with the record or with a message shown verbatim. Once added, the name is a dataset like the built-ins in
every dataset field of the dashboard (the catalog is read again). The table lists every dataset with its splits,
input shape, classes and, for uploaded ones, class counts, owner and a delete button (the API refuses with 409
while a minimum uses the dataset, and with 403 for another user's dataset).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views.common import CATALOG, as_list, card, decode_upload, message

DROP = "data-drop"
FILES = "data-files"
NAME = "data-name"
SUBMIT = "data-submit"
MESSAGE = "data-message"
TABLE = "data-table"
DELETE = "data-delete"

NOTHING_STAGED = html.Span("No file dropped yet.", className="muted")
IDX_PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def layout() -> html.Div:
    add = card("Add data", [
        dcc.Upload(
            id=DROP, multiple=True, className="dropzone", className_active="dropzone active",
            children=html.Div([html.Strong("Drop your dataset here"),
                               html.Span(" (one .npz with x_train, y_train, x_test, y_test, or the four IDX files "
                                         "of an MNIST-style set) or click to choose")]),
        ),
        html.Div(NOTHING_STAGED, id=FILES, className="staged"),
        html.Div([
            html.Label([html.Span("name", className="field-label"),
                        dcc.Input(id=NAME, type="text", placeholder="e.g. my-scans (letters, digits, . _ -)"),
                        html.Span("how the dataset is named in every dataset field", className="field-hint")],
                       className="field"),
        ], className="form-grid"),
        html.Div([html.Button("Add dataset", id=SUBMIT, className="button", n_clicks=0),
                  html.Div(id=MESSAGE, className="message", **{"data-kind": ""})], className="form-actions"),
        html.P("Inputs are standardized with training statistics unless the dataset options say "
               "{\"standardize\": \"none\"}; \"train_size\" / \"test_size\" take a stratified slice (docs/data.md).",
               className="note"),
    ])
    listing = card("Datasets", html.Div(id=TABLE, className="table-wrap"))
    return html.Div([add, listing], className="grid data-view")


def staged_kind(names: list[str]) -> tuple[str | None, list[str]]:
    """What the dropped files are: ``"npz"``, ``"idx"`` or None, and problems to report (before any upload)."""
    if not names:
        return None, []
    suffixes = [PurePath(n).suffix.lower() for n in names]
    if len(names) == 1 and suffixes[0] == ".npz":
        return "npz", []
    if ".npz" in suffixes:
        return None, ["drop one .npz alone (it holds both splits)"]
    missing = [part for part in IDX_PARTS if not any(part in n or part.replace("t10k", "test") in n for n in names)]
    if len(names) == 4 and not missing:
        return "idx", []
    return None, [f"an IDX dataset is four files; missing: {', '.join(missing) or 'none'} "
                  f"(got {len(names)} file(s): {', '.join(names)})"]


def _shape(value: Any) -> str:
    return " × ".join(str(s) for s in value) if isinstance(value, list | tuple) and value else "?"


def _counts(item: dict) -> str:
    counts = (item.get("class_counts") or {}).get("train")
    if not counts:
        return ""
    names = item.get("class_names") or [str(i) for i in range(len(counts))]
    shown = ", ".join(f"{n}: {c}" for n, c in list(zip(names, counts, strict=False))[:10])
    return shown + (f", … {len(counts) - 10} more" if len(counts) > 10 else "")


def dataset_rows(datasets: list[dict]) -> html.Table:
    """The table of datasets: built-ins first (with whether their files are here), then uploaded ones."""
    head = html.Tr([html.Th(h) for h in ("name", "kind", "train", "test", "input", "classes", "train class counts",
                                         "owner", "")])
    rows = []
    for item in sorted(datasets, key=lambda d: (d.get("kind") == "upload", d.get("name", ""))):
        uploaded = item.get("kind") == "upload"
        available = item.get("available", True)
        action = (html.Button("Delete", id={"type": DELETE, "dataset": item.get("id") or item["name"]},
                              className="button secondary small", n_clicks=0) if uploaded else "")
        # a built-in without default sizes reads what its options name (npz: the file's path): say so, not blanks
        sized = uploaded or item.get("train") is not None
        kind = "uploaded" if uploaded else ("built-in" if available else "built-in (files missing)")
        description = item.get("description", "")
        rows.append(html.Tr([
            html.Td(item["name"], title=description),
            html.Td(kind if sized else f"{kind}: the file its options name", title=description),
            *(html.Td("—" if item.get(key) is None else item[key]) for key in ("train", "test")),
            html.Td(_shape(item.get("input_shape")) if item.get("input_shape") else "—"),
            html.Td("—" if item.get("num_classes") is None else item["num_classes"]),
            html.Td(_counts(item), className="counts"),
            html.Td(item.get("owner") or ""), html.Td(action),
        ], **{"data-name": item["name"], "data-kind": item.get("kind") or "builtin"}))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="table datasets-table")


def register(app, client: ApiClient) -> None:
    def refreshed_catalog(catalog: dict | None) -> Any:
        """The catalog with the datasets read again (every dataset field lists a new upload at once)."""
        try:
            return {**(catalog or {}), "datasets": client.datasets()}
        except ApiError:
            return no_update

    @app.callback(Output(FILES, "children"), Input(DROP, "filename"), prevent_initial_call=True)
    def staged(filenames):
        names = as_list(filenames)
        if not names:
            return NOTHING_STAGED
        kind, problems = staged_kind(names)
        items = [html.Li(html.Code(n)) for n in names]
        label = {"npz": "one .npz archive", "idx": "an IDX quartet"}.get(kind or "", "")
        return [html.Ul(items), *([message(label, "info")] if label else []),
                *[message(p, "error") for p in problems]]

    @app.callback(
        Output(MESSAGE, "children"), Output(MESSAGE, "className"), Output(MESSAGE, "data-kind"),
        Output(CATALOG, "data", allow_duplicate=True), Output(DROP, "contents"), Output(DROP, "filename"),
        Input(SUBMIT, "n_clicks"),
        State(DROP, "contents"), State(DROP, "filename"), State(NAME, "value"), State(CATALOG, "data"),
        prevent_initial_call=True,
    )
    def submit(clicks, contents, filenames, name, catalog):
        if not clicks:
            raise PreventUpdate

        def fail(text: str):
            return text, "message error", "error", no_update, no_update, no_update

        names, blobs = as_list(filenames), as_list(contents)
        if not names:
            return fail("Drop a dataset first: one .npz, or the four IDX files of an MNIST-style set.")
        kind, problems = staged_kind(names)
        if problems:
            return fail(" ".join(problems))
        if not (name or "").strip():
            return fail("Give the dataset a name (letters, digits, '.', '_' or '-'): it names the dataset in "
                        "every dataset field.")
        try:
            files = [(n, decode_upload(b)) for n, b in zip(names, blobs, strict=True)]
        except ValueError as exc:
            return fail(str(exc))
        try:
            record = client.upload_dataset(name.strip(), files)
        except ApiError as exc:
            return fail(exc.message)
        text = (f"Added {record['name']}: {record.get('train')} training and {record.get('test')} test samples of "
                f"shape {_shape(record.get('input_shape'))}, {record.get('num_classes')} classes.")
        return text, "message ok", "ok", refreshed_catalog(catalog), None, None

    @app.callback(Output(TABLE, "children"), Input(CATALOG, "data"))
    def table(catalog):
        return dataset_rows((catalog or {}).get("datasets") or [])

    @app.callback(
        Output(MESSAGE, "children", allow_duplicate=True), Output(MESSAGE, "className", allow_duplicate=True),
        Output(MESSAGE, "data-kind", allow_duplicate=True), Output(CATALOG, "data", allow_duplicate=True),
        Input({"type": DELETE, "dataset": ALL}, "n_clicks"), State(CATALOG, "data"),
        prevent_initial_call=True,
    )
    def delete(clicks, catalog):
        trigger = ctx.triggered_id
        if not trigger or not any(clicks or []) or not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        try:
            client.delete_dataset(trigger["dataset"])
        except ApiError as exc:
            return exc.message, "message error", "error", refreshed_catalog(catalog)
        return f"Deleted dataset {trigger['dataset']}.", "message ok", "ok", refreshed_catalog(catalog)
