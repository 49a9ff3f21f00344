"""GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.api.deps import AUTH_RESPONSES
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import JobKind, JobRecord, JobState
from toroid.store.db import get_session
from toroid.store.ledger import cancel_job
from toroid.store.models import Job

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_RESPONSES)


def _get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job with id {job_id!r}; GET /api/jobs lists them")
    return job


@router.get("", response_model=list[JobRecord], dependencies=[Depends(require_read)], summary="Jobs, newest first")
def list_jobs(
    state: JobState | None = Query(None, description="Only jobs in this state."),
    kind: JobKind | None = Query(None, description="Only jobs of this kind."),
    limit: int = Query(100, ge=1, le=1000),
    session: Session = Depends(get_session),
) -> list[dict]:
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return [job.to_record() for job in session.scalars(query).all()]


@router.get("/{job_id}", response_model=JobRecord, dependencies=[Depends(require_read)],
            responses={404: {"description": "unknown job"}})
def read_job(job_id: str, session: Session = Depends(get_session)) -> dict:
    return _get_job(session, job_id).to_record()


@router.post(
    "/{job_id}/cancel", response_model=JobRecord, dependencies=[Depends(require_write)],
    summary="Cancel a queued or running job (a running task stops at its next progress report)",
    responses={404: {"description": "unknown job"}, 409: {"description": "the job already finished"}},
)
def cancel(job_id: str, session: Session = Depends(get_session)) -> dict:
    job = cancel_job(session, _get_job(session, job_id))
    if job.state in ("succeeded", "failed"):
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.state}; there is nothing to cancel")
    return job.to_record()
