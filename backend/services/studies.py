"""Studies: presets, starting (or resuming) a study, reading its record (docs/studies.md)."""

from __future__ import annotations

from typing import Any

from toroid.store.errors import NotFound
from toroid.store.studies import get_study, list_studies, open_study, study_record
from toroid.store.study_spec import PRESETS, preset_spec, resolve_spec


def presets() -> list[dict[str, Any]]:
    return [{"name": name, "description": raw.get("description", ""), "spec": preset_spec(name).model_dump()}
            for name, raw in PRESETS.items()]


def record(study_id: str) -> dict[str, Any]:
    found = get_study(study_id)
    if found is None:
        raise NotFound(f"no study with id {study_id!r}; GET /api/studies lists them")
    return study_record(*found)


def records() -> list[dict[str, Any]]:
    return [study_record(s, j) for s, j in list_studies()]


def start(body: dict[str, Any], owner: str | None = None) -> tuple[dict[str, Any], bool]:
    """Start or resume the study of a spec (or ``{"preset": name, ...overrides}``); returns its record and whether
    it was already finished (the identical study succeeded before). ``owner``: who asks (a new study is theirs)."""
    preset = body.get("preset") if isinstance(body.get("preset"), str) else None
    spec = resolve_spec(body)
    study, job, started = open_study(spec, preset=preset, owner=owner)
    return record(study.id), (not started and job.state == "succeeded")
