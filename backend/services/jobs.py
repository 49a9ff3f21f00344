"""Jobs and results: lookup, listing, cancellation, and the table (CSV) form of a result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.services.pages import Page, page_of
from toroid.store.errors import Conflict, Invalid, NotFound
from toroid.store.ledger import cancel_job
from toroid.store.models import Job, Result, iso


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}; GET /api/jobs lists them")
    return job


def list_jobs(session: Session, *, state: str | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
    return jobs_page(session, state=state, kind=kind, limit=limit).rows


def jobs_page(session: Session, *, state: str | None = None, kind: str | None = None, limit: int = 100,
              after: str | None = None) -> Page:
    """A page of the jobs, newest first, of one ``state`` and ``kind`` when given."""
    filters = [c for c in (Job.state == state if state else None, Job.kind == kind if kind else None) if c is not None]
    return page_of(session, "jobs", Job, select(Job), limit=limit, after=after, filters=filters)


#: The columns of a result's summary in ``GET /api/results`` (its ``data`` only at ``GET /api/results/{id}``).
RESULT_SUMMARY = (Result.id, Result.kind, Result.params, Result.minimum_ids, Result.created_at, Result.key,
                  Result.job_id)


def results_page(session: Session, *, kind: str | None = None, limit: int = 100, after: str | None = None) -> Page:
    """A page of the results' summaries (rows of ``RESULT_SUMMARY``), newest first, of one ``kind`` when given."""
    filters = [Result.kind == kind] if kind else []
    return page_of(session, "results", Result, select(*RESULT_SUMMARY), limit=limit, after=after, filters=filters,
                   columns=True)


def result_summaries(page: Page) -> list[dict[str, Any]]:
    return [{"id": r.id, "kind": r.kind, "params": r.params or {}, "minimum_ids": list(r.minimum_ids or []),
             "created_at": iso(r.created_at), "key": r.key, "job_id": r.job_id} for r in page.rows]


def cancel(session: Session, job_id: str) -> Job:
    """Cancel a queued or running job (its task stops at its next progress report); 409 when it finished."""
    job = cancel_job(session, get_job(session, job_id))
    if job.state in ("succeeded", "failed"):
        raise Conflict(f"job {job_id} already {job.state}; there is nothing to cancel")
    return job


def get_result(session: Session, result_id: str) -> Result:
    result = session.get(Result, result_id)
    if result is None:
        raise NotFound(f"no result with id {result_id!r}")
    return result


PROFILE_COLUMNS = ("x", "distance", "train_error", "test_error", "train_loss", "test_loss")
SHARPNESS_COLUMNS = ("top_eigenvalue", "residual", "iterations", "trace", "trace_stderr", "probes", "samples",
                     "parameters", "train_loss", "base_train_error", "base_test_error", "normalized")


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def _profile_rows(profile: dict[str, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    for i in range(len(profile.get("x") or [])):
        yield (*prefix, *(_at(profile.get(c), i) for c in PROFILE_COLUMNS))


def _grid_rows(data: dict[str, Any], xs: str, ys: str) -> Iterator[tuple[Any, ...]]:
    train, test = data.get("train_error") or [], data.get("test_error") or []
    for j, y in enumerate(data.get(ys) or []):
        for i, x in enumerate(data.get(xs) or []):
            yield x, y, _at(_at(train, j), i), _at(_at(test, j), i)


def result_table(result: Result) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...]]]:
    """Header and rows of a result's arrays, by kind."""
    data = result.data or {}
    if result.kind == "path" and "profiles" in data:  # one_bend: two segments
        rows = (row for s, p in enumerate(data["profiles"]) for row in _profile_rows(p, (s,)))
        return ("segment", *PROFILE_COLUMNS), rows
    if result.kind == "path":
        return PROFILE_COLUMNS, _profile_rows(data)
    if result.kind == "flatness":
        columns = ("sigma", "mean", "std", "stderr", "samples", "capped")  # capped: empty in records before it
        keys = ("sigmas", "mean", "std", "stderr", "samples", "capped")
        n = len(data.get("sigmas") or [])
        return columns, (tuple(_at(data.get(k), i) for k in keys) for i in range(n))
    if result.kind == "sharpness":
        return SHARPNESS_COLUMNS, iter([tuple(data.get(c) for c in SHARPNESS_COLUMNS)])
    if result.kind == "distances":
        ids, names, matrices = data.get("ids") or [], data.get("names") or [], data.get("matrices") or {}
        metrics = sorted(matrices)
        rows = (
            (ids[i], _at(names, i), ids[j], _at(names, j), *(_at(_at(matrices[m], i), j) for m in metrics))
            for i in range(len(ids)) for j in range(len(ids)) if i < j
        )
        return ("id_a", "name_a", "id_b", "name_b", *metrics), rows
    if result.kind == "section":
        return ("x", "y", "train_error", "test_error"), _grid_rows(data, "x", "y")
    if result.kind == "torus":
        return ("phi1", "phi2", "train_error", "test_error"), _grid_rows(data, "phi1", "phi2")
    raise Invalid(f"results of kind {result.kind!r} have no CSV form")
