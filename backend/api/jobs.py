"""GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import JobRecord
from toroid.backend.services import jobs as service
from toroid.store.eta import annotate
from toroid.store.params import JobKind, JobState
from toroid.store.users import Principal

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_RESPONSES)


@router.get("", response_model=list[JobRecord], dependencies=[Depends(require_read)], summary="Jobs, newest first")
def list_jobs(
    session: SessionDep,
    state: JobState | None = Query(None, description="Only jobs in this state."),
    kind: JobKind | None = Query(None, description="Only jobs of this kind."),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict]:
    return annotate(session, service.list_jobs(session, state=state, kind=kind, limit=limit))


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
