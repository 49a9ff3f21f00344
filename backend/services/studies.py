"""Studies: presets, starting (or resuming) a study, reading its record (docs/studies.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.services.pages import Page, page_of
from toroid.store.errors import NotFound
from toroid.store.models import Job, Study
from toroid.store.studies import ensure_tables, get_study, open_study, study_record
from toroid.store.study_spec import PRESETS, preset_spec, resolve_spec


def presets() -> list[dict[str, Any]]:
    return [{"name": name, "description": raw.get("description", ""), "spec": preset_spec(name).model_dump()}
            for name, raw in PRESETS.items()]


def record(study_id: str) -> dict[str, Any]:
    found = get_study(study_id)
    if found is None:
        raise NotFound(f"no study with id {study_id!r}; GET /api/studies lists them")
    return study_record(*found)


def studies_page(session: Session, *, limit: int | None = None, after: str | None = None) -> tuple[Page, list[dict]]:
    """A page of the studies, newest first (all of them without ``limit``), and their records."""
    ensure_tables()
    page = page_of(session, "studies", Study, select(Study), limit=limit, after=after)
    return page, [study_record(s, session.get(Job, s.job_id) if s.job_id else None) for s in page.rows]


def start(body: dict[str, Any], owner: str | None = None) -> tuple[dict[str, Any], bool]:
    """Start or resume the study of a spec (or ``{"preset": name, ...overrides}``); returns its record and whether
    it was already finished (the identical study succeeded before). ``owner``: who asks (a new study is theirs)."""
    preset = body.get("preset") if isinstance(body.get("preset"), str) else None
    spec = resolve_spec(body)
    study, job, started = open_study(spec, preset=preset, owner=owner)
    return record(study.id), (not started and job.state == "succeeded")
