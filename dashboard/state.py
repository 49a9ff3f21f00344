"""Pure helpers for the dashboard's client-side state: the selected pair, landscape families, tracked analyses.

Everything here works on plain JSON (the API's records), so it is unit-tested without a server or a browser. An
*entry* tracks one analysis the dashboard asked for:

    {"kind", "params", "job_id", "state", "progress", "message", "partial", "result_id", "error"}

It is made from the answer of ``POST /api/analyses/<kind>`` (:func:`entry_from_answer`) and moved forward with the
job records the dashboard polls (:func:`advance_entry`) until the job has finished; the result itself is fetched by
id (results are immutable, so the client caches them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "PATH_KINDS",
    "advance_entry",
    "entry_from_answer",
    "entry_from_error",
    "families",
    "family_key",
    "is_active",
    "job_summary",
    "next_selection",
    "selection_ids",
]

PATH_KINDS = ("linear", "linear_aligned", "geodesic")
ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")


def next_selection(selection: Mapping[str, Any] | None, clicked: str | None) -> dict[str, Any]:
    """The pair after a click on minimum ``clicked``: first click picks A, a second (other) minimum B.

    A click on A or B while the pair is incomplete keeps it as is; once A and B are set the next click starts a new
    pair at the clicked minimum. The third minimum ``c`` (for sections and three-minimum tori) is kept unless it
    becomes A or B.
    """
    current = dict(selection or {})
    a, b, c = current.get("a"), current.get("b"), current.get("c")
    if not clicked:
        return {"a": a, "b": b, "c": c}
    if a is None:
        a = clicked
    elif b is None:
        if clicked != a:
            b = clicked
    else:
        a, b = clicked, None
    if c in (a, b):
        c = None
    return {"a": a, "b": b, "c": c}


def selection_ids(selection: Mapping[str, Any] | None) -> list[str]:
    """The ids of A, B, C in that order, without the unset ones."""
    selection = selection or {}
    return [selection[k] for k in ("a", "b", "c") if selection.get(k)]


def family_key(minimum: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Minima are comparable (alignable, one distance matrix) when the server's ``family`` keys agree (the same
    network structure and dataset, whatever the source); records without one: architecture, full config, dataset.

    The config is completed with the architecture's defaults (from ``GET /api/architectures``) so that ``{}`` and
    the explicit defaults fall in the same family.
    """
    if minimum.get("family"):  # the server's key: one structure, any source (docs/models.md)
        return str(minimum["family"])
    arch = minimum.get("architecture") or "?"
    config = dict((defaults or {}).get(arch, {}))
    config.update(minimum.get("config") or {})
    options = minimum.get("dataset_options") or {}
    return json.dumps([arch, config, minimum.get("dataset") or "?", options], sort_keys=True, default=str)


def _config_text(config: Mapping[str, Any]) -> str:
    """``k=v, ...``; an exported program's structure hash (docs/models.md) is shown by its first 8 digits."""
    return ", ".join(f"{k}={str(v)[:8] if k == 'structure' else v}" for k, v in sorted(config.items()))


def dataset_label(minimum: Mapping[str, Any], dataset_names: Mapping[str, str] | None = None) -> str:
    """The dataset of a minimum as a researcher named it: an uploaded dataset (kind ``upload``, addressed by its
    sha256, docs/data.md) shows its name from ``dataset_names`` (sha256 -> name), else its first 12 hex digits."""
    dataset = str(minimum.get("dataset"))
    if dataset != "upload":
        return dataset
    sha = str((minimum.get("dataset_options") or {}).get("sha256") or "")
    return (dataset_names or {}).get(sha) or f"upload {sha[:12]}"


def families(
    minima: Iterable[Mapping[str, Any]], defaults: Mapping[str, Mapping[str, Any]] | None = None,
    dataset_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Groups of comparable minima, largest first: [{"key", "label", "ids"}]; ``ids`` keep the input order."""
    groups: dict[str, dict[str, Any]] = {}
    for minimum in minima:
        key = family_key(minimum, defaults)
        group = groups.get(key)
        if group is None:
            config = minimum.get("config") or {}
            config_text = f" ({_config_text(config)})" if config else ""
            label = f"{minimum.get('architecture')}{config_text} on {dataset_label(minimum, dataset_names)}"
            group = groups[key] = {"key": key, "label": label, "ids": []}
        group["ids"].append(minimum["id"])
    ordered = sorted(groups.values(), key=lambda g: (-len(g["ids"]), g["label"]))
    for group in ordered:
        count = len(group["ids"])
        group["label"] = f"{group['label']} · {count} minim{'um' if count == 1 else 'a'}"
    return ordered


def job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a job record the dashboard keeps in an entry."""
    return {
        "job_id": job.get("id"),
        "state": job.get("state"),
        "progress": float(job.get("progress") or 0.0),
        "message": job.get("message") or "",
        "partial": job.get("partial") or {},
        "result_id": job.get("result_id"),
        "minimum_id": job.get("minimum_id"),
        "error": job.get("error"),
    }


def entry_from_answer(kind: str, params: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    """An entry from the body of ``POST /api/analyses/<kind>`` (cached: result id at once; else the queued job)."""
    job = answer.get("job") or {}
    entry = {"kind": kind, "params": dict(params), **job_summary(job)}
    result = answer.get("result")
    if answer.get("cached") and result:
        entry.update(state="succeeded", progress=1.0, result_id=result.get("id"), cached=True)
    return entry


def entry_from_error(kind: str, params: Mapping[str, Any], message: str) -> dict[str, Any]:
    """An entry for a request the API refused; ``error`` is its message, shown verbatim."""
    return {
        "kind": kind, "params": dict(params), "job_id": None, "state": "failed", "progress": 0.0, "message": "",
        "partial": {}, "result_id": None, "minimum_id": None, "error": message,
    }


def is_active(entry: Mapping[str, Any] | None) -> bool:
    """True while the entry's job is queued or running."""
    return bool(entry) and entry.get("state") in ACTIVE_STATES and bool(entry.get("job_id"))


def advance_entry(entry: Mapping[str, Any], job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entry updated with the latest record of its job (``None``: unchanged)."""
    if job is None or job.get("id") != entry.get("job_id"):
        return dict(entry)
    return {**entry, **job_summary(job)}
