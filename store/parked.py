"""Parked jobs: a job that gave its worker back without finishing, waiting for other jobs (a study between its
rounds, ``toroid.worker.study``; docs/studies.md, "How it runs").

``JobRun.park`` (``toroid.store.ledger``) leaves the job ``running`` with no worker (``worker`` NULL) and
``partial.waiting_on`` naming the jobs it waits for. Whoever ends one of those continues it (``take_parked``: one
atomic ``UPDATE`` from no worker to a worker, so one process at a time), ``recover_jobs`` does when that was missed
(``missed_continuations``), and cancelling it reaches what it waits for (``cancel_waited``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from toroid.store.db import new_session
from toroid.store.models import ACTIVE_STATES, Job, utcnow

__all__ = ["KEPT_PARTIAL", "cancel_waited", "missed_continuations", "parked_waiting_for", "take_parked"]

#: What a job's ``partial`` keeps when it is claimed again (everything else starts empty): a study's bookkeeping,
#: the job of each of its steps and the jobs it created, so that a step that failed before a restart still fails it
#: and a cancellation still reaches the jobs it created (toroid.worker.study); a chunked analysis's chunks and what
#: they share (toroid.worker.chunks), so that a restart merges them instead of splitting again.
KEPT_PARTIAL = ("jobs", "created", "chunks", "chunked")


def cancel_waited(session: Session, job: Job, *, running: bool = True) -> list[str]:
    """Cancel what ``job`` waits for (``partial.waiting_on``): queued jobs, and (``running``) the running ones it
    created itself (``partial.created``); returns their ids. Used when a study is cancelled or fails."""
    partial = job.partial or {}
    waited = [str(i) for i in partial.get("waiting_on") or []]
    created = {str(i) for i in partial.get("created") or []}
    ids = []
    for child in session.scalars(select(Job).where(Job.id.in_(waited), Job.state.in_(ACTIVE_STATES))).all():
        states = ("queued", "running") if running and child.id in created else ("queued",)
        done = session.execute(
            update(Job).where(Job.id == child.id, Job.state.in_(states))
            .values(state="cancelled", message=f"cancelled with {job.kind} job {job.id}", finished_at=utcnow())
        )
        if done.rowcount == 1:
            ids.append(child.id)
    session.commit()
    return ids


def take_parked(job_id: str, worker: str) -> Job | None:
    """Take a parked job (``JobRun.park``) to continue it in this process: one atomic ``UPDATE`` from no worker to
    ``worker`` (its attempt stays: a continuation is no new attempt). None when it is not parked (another process
    continues it, or it was cancelled or finished)."""
    with new_session() as session:
        now = utcnow()
        taken = session.execute(update(Job).where(Job.id == job_id, Job.state == "running", Job.worker.is_(None))
                                .values(worker=worker[:200], heartbeat_at=now))
        session.commit()
        if taken.rowcount != 1:
            return None
        return session.get(Job, job_id, populate_existing=True)


def parked_waiting_for(session: Session, job_id: str, kinds: Iterable[str] | None = None) -> list[str]:
    """The parked jobs (of ``kinds``, default any) that wait for ``job_id`` (its end continues them)."""
    query = select(Job.id, Job.partial).where(Job.state == "running", Job.worker.is_(None))
    if kinds is not None:
        query = query.where(Job.kind.in_(list(kinds)))
    rows = session.execute(query).all()
    return [row.id for row in rows if job_id in ((row.partial or {}).get("waiting_on") or [])]


def missed_continuations(session: Session, cutoff: datetime) -> list[Job]:
    """Parked jobs (``JobRun.park``) of which a job they wait for ended before ``cutoff`` (or vanished): the process
    that ended it died before continuing them."""
    parked = session.scalars(select(Job).where(Job.state == "running", Job.worker.is_(None))).all()
    missed = []
    for job in parked:
        waited = [str(i) for i in (job.partial or {}).get("waiting_on") or []]
        ended = {row.id: row.finished_at for row in session.execute(
            select(Job.id, Job.finished_at).where(Job.id.in_(waited), Job.state.not_in(ACTIVE_STATES))).all()}
        known = set(session.scalars(select(Job.id).where(Job.id.in_(waited))).all())
        if (not waited or len(known) < len(set(waited))
                or any(at is None or at < cutoff for at in ended.values())):
            missed.append(job)
    return missed
