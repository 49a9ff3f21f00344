"""GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_read, require_write
from toroid.backend.paging import LIST_RESPONSES, Conditional, after_query, limit_query
from toroid.backend.schemas import JobRecord
from toroid.backend.services import jobs as service
from toroid.backend.services.pages import record_fingerprint
from toroid.store.eta import annotate
from toroid.store.params import JobKind, JobState
from toroid.store.users import Principal

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_RESPONSES)


@router.get("", response_model=list[JobRecord], responses=LIST_RESPONSES,
            summary="Jobs, newest first, in pages of limit (default 100) with after; ETag and If-None-Match for "
                    "cheap polls")
def list_jobs(
    request: Request, response: Response, session: SessionDep,
    state: JobState | None = Query(None, description="Only jobs in this state."),
    kind: JobKind | None = Query(None, description="Only jobs of this kind."),
    limit: int = limit_query(100), after: str | None = after_query(),
    principal: Principal = Depends(require_read),
) -> Any:
    page = service.jobs_page(session, state=state, kind=kind, limit=limit, after=after)
    # the records, not the rows: wait_s, duration_s and eta_s are computed at read time (store/eta.py)
    records = annotate(session, page.rows)
    answer = Conditional.of(request, principal, page, record_fingerprint(records, page.total, page.next_cursor))
    if answer.not_modified:
        return answer.unchanged()
    answer.decorate(response)
    return records


@router.get("/{job_id}", response_model=JobRecord, dependencies=[Depends(require_read)],
            responses={404: {"description": "unknown job"}})
def read_job(job_id: str, session: SessionDep) -> dict:
    return annotate(session, [service.get_job(session, job_id)])[0]


@router.post(
    "/{job_id}/cancel", response_model=JobRecord,
    summary="Cancel a queued or running job (a running task stops at its next progress report)",
    responses={403: {"description": "someone else's job"}, 404: {"description": "unknown job"},
               409: {"description": "the job already finished"}},
)
def cancel(job_id: str, session: SessionDep, principal: Principal = Depends(require_write)) -> dict:
    principal.require_owner(service.get_job(session, job_id).owner, f"job {job_id}")
    return service.cancel(session, job_id).to_record()
