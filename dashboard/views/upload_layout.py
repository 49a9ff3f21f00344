"""The panels beside the upload form: what a checkpoint must hold, the renaming of keys the API proposes, and the
symmetries of an uploaded program.

* "What the checkpoint must hold": ``GET /api/architectures/{name}/layout`` for the chosen architecture, dataset,
  config and dataset options (docs/api.md, upload): input shape, classes, parameter count and the first keys with
  their shapes. A 422 (unknown name, bad config) shows the API's message in the panel.
* Key map: an upload whose keys differ from the architecture's but whose tensors line up in layer order answers 422
  with a proposed ``key_map`` (docs/api.md, upload); :func:`key_map_rows` draws it as upload key -> architecture key.
* Symmetries: :func:`symmetry_summary` is the one line shown after an upload whose record carries ``symmetries``.

Everything is read through the dashboard's API client, with the signed-in user's token.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import PurePath
from typing import Any

from dash import Input, Output, dcc, html

from toroid.dashboard.client import ApiClient, ApiError
from toroid.dashboard.views.common import message

LAYOUT_PANEL = "upload-layout"
LAYOUT_TITLE = "upload-layout-title"
#: How many keys the layout panel and the key-map table list before "… N more".
SHOWN_KEYS = 12
PT2_SUFFIX = ".pt2"
PT2_NOTE = ("A .pt2 file is a torch.export program: it carries its own network and keys, so it needs no "
            "architecture or config, only the dataset it reads (and its options and a name).")
PT2_PANEL = ("The staged .pt2 program defines its own keys: the server reads them from the file, checks the "
             "program's input against the dataset, and reports the symmetries of its units after the upload.")


def parse_json_field(text: str | None, what: str) -> dict:
    """A JSON object typed into a form field; ValueError names the field and the JSON error."""
    text = (text or "").strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         "write an object such as {}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object such as {{}}, got {type(value).__name__}")
    return value


def effective_architecture(listed: str | None, typed: str | None) -> str:
    """The architecture an upload or a training run names: the typed library model (e.g. ``torchvision:resnet18``)
    when the field is filled, else the one chosen in the dropdown."""
    return (typed or "").strip() or (listed or "").strip()


def is_pt2(name: str | None) -> bool:
    """Whether a dropped file is a torch.export program (by its name; the server reads its bytes)."""
    return PurePath(name or "").suffix.lower() == PT2_SUFFIX


def staged_pt2(filenames: Any) -> bool:
    """Whether the staged checkpoint (the dropped file that is not a sidecar .json) is a .pt2 program."""
    names = filenames if isinstance(filenames, list | tuple) else [filenames] if filenames else []
    return any(is_pt2(n) for n in names if PurePath(n or "").suffix.lower() != ".json")


def shape_text(shape: list[int]) -> str:
    return " × ".join(str(s) for s in shape) if shape else "scalar"


def panel() -> html.Div:
    """The card body of "What the checkpoint must hold" (filled by the callback of :func:`register`)."""
    return html.Div([
        html.Div(id=LAYOUT_TITLE, className="note"),
        dcc.Loading(html.Div(id=LAYOUT_PANEL, className="layout-panel", **{"data-state": "empty"}),
                    type="dot", delay_show=400),
    ])


def layout_view(layout: dict[str, Any], shown: int = SHOWN_KEYS) -> list:
    """The summary line and the table of the first ``shown`` keys of an answer of the layout endpoint."""
    tensors = layout.get("tensors") or []
    summary = (f"inputs {shape_text(layout.get('input_shape') or [])} · {layout.get('num_classes')} classes · "
               f"{int(layout.get('parameters') or 0):,} parameters in {len(tensors)} tensors")
    rows = [html.Tr([html.Td(html.Code(t["key"])), html.Td(shape_text(t.get("shape") or []), className="num"),
                     html.Td(t.get("dtype", ""), className="muted")],
                    **{"data-key": t["key"], "data-shape": "x".join(str(s) for s in t.get("shape") or [])})
            for t in tensors[:shown]]
    if len(tensors) > shown:
        rows.append(html.Tr(html.Td(f"… {len(tensors) - shown} more", colSpan=3, className="muted more")))
    table = html.Table([html.Thead(html.Tr([html.Th("key"), html.Th("shape"), html.Th("dtype")])),
                        html.Tbody(rows)], className="table layout-table")
    return [html.Div(summary, className="stat layout-summary"), html.Div(table, className="table-wrap")]


def layout_title(layout: dict[str, Any]) -> str:
    config = json.dumps(layout.get("config") or {})
    options = layout.get("dataset_options") or {}
    return (f"{layout.get('architecture')} (config {config}) on {layout.get('dataset')}"
            + (f" ({json.dumps(options)})" if options else "") + ", keys in layer order:")


def key_map_rows(key_map: dict[str, str], shown: int = SHOWN_KEYS) -> html.Div:
    """The proposed renaming as a compact table upload key -> architecture key (renamed keys only)."""
    renamed = [(k, v) for k, v in key_map.items() if k != v]
    kept = len(key_map) - len(renamed)
    rows = [html.Tr([html.Td(html.Code(k)), html.Td("→", className="arrow"), html.Td(html.Code(v))],
                    **{"data-from": k, "data-to": v}) for k, v in renamed[:shown]]
    if len(renamed) > shown:
        rows.append(html.Tr(html.Td(f"… {len(renamed) - shown} more", colSpan=3, className="muted more")))
    table = html.Table([html.Thead(html.Tr([html.Th("upload key"), html.Th(""), html.Th("architecture key")])),
                        html.Tbody(rows)], className="table keymap-table")
    note = (f"Renaming {len(renamed)} key(s) makes the upload fit"
            + (f"; {kept} keep their names." if kept else "."))
    return html.Div([html.Div(note, className="note"), html.Div(table, className="table-wrap")])


def symmetry_summary(symmetries: dict[str, Any] | None) -> str:
    """One line on the symmetries found in an uploaded program, e.g. '12 unit groups: 10 permuted and rescaled,
    2 permuted only (gelu); unsupported: ...' ('' without a ``symmetries`` object)."""
    if not isinstance(symmetries, dict):
        return ""
    groups = [g for g in symmetries.get("groups") or [] if isinstance(g, dict)]
    kinds: Counter[str] = Counter()
    reasons: dict[str, list[str]] = {}
    for group in groups:
        kind = _group_kind(group)
        kinds[kind] += 1
        for reason in group.get("reasons") or []:
            if str(reason) not in reasons.setdefault(kind, []):
                reasons[kind].append(str(reason))
    parts = [f"{count} {kind}" + (f" ({_few(reasons[kind])})" if reasons.get(kind) else "")
             for kind, count in kinds.items()]
    text = (f"{len(groups)} unit group{'' if len(groups) == 1 else 's'}: " + ", ".join(parts) if groups
            else "no unit groups with a symmetry")
    unsupported = [_item_text(u) for u in symmetries.get("unsupported") or []]
    if unsupported:
        text += f"; unsupported: {_few(unsupported)}"
    return text


def _group_kind(group: dict[str, Any]) -> str:
    moves = [m for m in ("permuted", "rescaled", "flipped") if group.get(m)]
    if not moves:
        return "without symmetry"
    if len(moves) == 1:
        return f"{moves[0]} only"
    return ", ".join(moves[:-1]) + " and " + moves[-1]


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        head = item.get("name") or item.get("node") or item.get("op") or ""
        why = item.get("reason") or item.get("reasons") or ""
        why = "; ".join(map(str, why)) if isinstance(why, list) else str(why)
        return f"{head} ({why})" if head and why else str(head or why or json.dumps(item))
    return str(item)


def _few(items: list[str], most: int = 3) -> str:
    return ", ".join(items[:most]) + (f", … {len(items) - most} more" if len(items) > most else "")


def read_layout(client: ApiClient, arch: str, dataset: str | None, config: str | None,
                options: str | None) -> tuple[str, str, list | html.Div]:
    """(state, title, children) of the layout panel: ``ok`` with the table, ``error`` with the API's message (or the
    JSON error of a field), ``empty`` while the architecture or the dataset is not chosen."""
    if not arch or not dataset:
        return "empty", "", message("Choose an architecture and a dataset to see the keys a checkpoint must hold.")
    try:
        config_text = json.dumps(parse_json_field(config, "config"))
        options_text = json.dumps(parse_json_field(options, "dataset options"))
    except ValueError as exc:
        return "error", "", message(str(exc), "error")
    try:
        layout = client.architecture_layout(arch, dataset, config_text, options_text)
    except ApiError as exc:
        return "error", f"{arch} on {dataset}:", message(exc.message, "error")
    return "ok", layout_title(layout), layout_view(layout)


def register(app, client: ApiClient, ids: dict[str, str]) -> None:
    """The layout panel's callback; ``ids``: the upload form's component ids (arch, library, dataset, config,
    options, drop)."""

    @app.callback(
        Output(LAYOUT_PANEL, "children"), Output(LAYOUT_PANEL, "data-state"), Output(LAYOUT_TITLE, "children"),
        Input(ids["arch"], "value"), Input(ids["library"], "value"), Input(ids["dataset"], "value"),
        Input(ids["config"], "value"), Input(ids["options"], "value"), Input(ids["drop"], "filename"),
    )
    def show_layout(arch, library, dataset, config, options, filenames):
        if staged_pt2(filenames):
            return message(PT2_PANEL, "info"), "pt2", ""
        state, title, children = read_layout(client, effective_architecture(arch, library), dataset, config, options)
        return children, state, title
