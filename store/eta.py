"""Where a job stands in its queue and when it will be done: queue position, ETA, duration (docs/operations.md,
"Queues").

Estimates, not promises, computed from what the ledger already holds:

* a job's own run time is ``a + b x cost`` per kind, fitted on the last finished jobs of that kind (``a``: the
  shortest of their durations, the fixed part of loading a model and data; ``b``: the ratio of sums
  ``sum(duration - a) / sum(cost)``, which the largest jobs dominate, so that the noise of tiny jobs does not
  extrapolate); the fit is used only for jobs at most ten times costlier than the largest job it saw. Otherwise,
  and with no history, the defaults of store/cost.py's docstring stand in (training about 1.5e9 and everything
  else about 4e10 sample-parameter operations per second on a 2-core CPU, plus one second);
* a running job's remaining time comes from its progress (``elapsed x (1 - p) / p``) once it reported some, else
  from its estimate minus the time it has run;
* a queued job waits for the jobs ahead of it in its queue (Celery's Redis queues are first in, first out), shared
  by the workers that consume that queue (their heartbeats in Redis name their queues; one when none is known), the
  way a list scheduler would hand them out.
"""

from __future__ import annotations

import heapq
import json
import statistics
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toroid.store.models import ACTIVE_STATES, Job, utcnow

__all__ = ["DEFAULT_RATES", "annotate", "job_timing", "workers_by_queue"]

#: Sample-parameter operations per second of a kind with no finished job yet (store/cost.py's docstring).
DEFAULT_RATES = {"train": 1.5e9}
DEFAULT_RATE = 4e10
DEFAULT_OVERHEAD_S = 1.0
HISTORY = 30  # finished jobs per kind that the fit reads
#: Redis keys of the workers' heartbeats (``toroid.worker.tasks``); their value names the worker's queues.
WORKER_KEYS = "toroid:worker:*"
_cache: dict[str, tuple[float, Any]] = {}
CACHE_S = 5.0
_fit_cache: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _cached(name: str, compute: Any) -> Any:
    hit = _cache.get(name)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    value = compute()
    _cache[name] = (now, value)
    return value


def workers_by_queue() -> dict[str, int]:
    """How many live workers consume each queue, from their heartbeat keys (cached for a few seconds; empty when
    Redis cannot be reached)."""

    def read() -> dict[str, int]:
        from toroid.store.celery_app import celery_app

        counts: dict[str, int] = {}
        try:
            import redis

            client = redis.Redis.from_url(celery_app.conf.broker_url, socket_connect_timeout=1, socket_timeout=1)
            for key in client.scan_iter(WORKER_KEYS, count=100):
                raw = client.get(key) or b""
                try:
                    queues = json.loads(raw).get("queues") or []
                except (ValueError, AttributeError):
                    queues = []  # a worker of an older version: its value is its pid
                for queue in queues:
                    counts[str(queue)] = counts.get(str(queue), 0) + 1
        except Exception:  # no broker: the estimates assume one worker per queue
            return {}
        return counts

    return _cached("workers", read)


Fit = tuple[float, float | None, float | None, float]


def _fits(session: Session) -> dict[str, Fit]:
    """Per kind: (fixed seconds a, seconds per cost unit b, median duration, largest cost seen) from its last
    finished jobs.

    Kept while the ledger's finished jobs are the same (their count and newest finish, one indexed read), so a
    record's estimate changes exactly when a job finishes, never seconds later: an unchanged job list keeps its
    ETag (docs/api.md, "Lists: pages and cheap polls")."""
    stamp = session.execute(
        select(func.count(), func.max(Job.finished_at)).where(Job.state == "succeeded")
    ).one()
    hit = _fit_cache.get(str(session.get_bind().url))
    if hit is not None and hit[0] == tuple(stamp):
        return hit[1]

    def fit() -> dict[str, Fit]:
        out: dict[str, Fit] = {}
        kinds = session.scalars(select(Job.kind).distinct()).all()
        for kind in kinds:
            rows = session.execute(
                select(Job.cost, Job.started_at, Job.finished_at)
                .where(Job.kind == kind, Job.state == "succeeded", Job.started_at.is_not(None),
                       Job.finished_at.is_not(None))
                .order_by(Job.finished_at.desc()).limit(HISTORY)
            ).all()
            durations = [(cost, d) for cost, s, f in rows if (d := _seconds(s, f)) is not None]
            if not durations:
                continue
            fixed = min(d for _, d in durations)
            costed = [(cost, d) for cost, d in durations if cost and cost > 0]
            slope = sum(d - fixed for _, d in costed) / sum(c for c, _ in costed) if costed else None
            out[kind] = (fixed, slope, statistics.median(d for _, d in durations),
                         max((c for c, _ in costed), default=0.0))
        return out

    fitted = fit()
    _fit_cache[str(session.get_bind().url)] = (tuple(stamp), fitted)
    return fitted


#: The fit of a kind is trusted up to this many times the largest cost it was fitted on.
EXTRAPOLATION = 10.0


def estimated_run_s(job: Job, fits: dict[str, Fit]) -> float | None:
    """The job's own run time: the fit of its kind applied to its cost (within ``EXTRAPOLATION`` of what it saw),
    else the default rate, else the median duration of its kind (a job without a cost estimate), else unknown."""
    fixed, slope, median, largest = fits.get(job.kind, (None, None, None, 0.0))
    if job.cost is not None and job.cost >= 0:
        if slope is not None and fixed is not None and job.cost <= EXTRAPOLATION * largest:
            return fixed + slope * job.cost
        return DEFAULT_OVERHEAD_S + job.cost / DEFAULT_RATES.get(job.kind, DEFAULT_RATE)
    return median


def _remaining_s(job: Job, own: float | None, now: datetime) -> float | None:
    elapsed = _seconds(job.started_at, now) or 0.0
    progress = float(job.progress or 0.0)
    if progress >= 0.05 and elapsed > 0:
        return elapsed * (1.0 - progress) / progress
    if own is None:
        return None
    return max(own - elapsed, 0.0)


def job_timing(job: Job, now: datetime | None = None) -> dict[str, float | None]:
    """Durations of one job: ``wait_s`` (created to started, or to now while queued) and ``duration_s`` (started
    to finished, or to now while running)."""
    now = now or utcnow()
    started = job.started_at
    wait = _seconds(job.created_at, started or (now if job.state == "queued" else job.finished_at))
    return {"wait_s": wait, "duration_s": _seconds(started, job.finished_at or now) if started else None}


def annotate(session: Session, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """The records of ``jobs`` with ``queue_position`` (1-based while queued), ``estimated_s`` (its own run time),
    ``eta_s`` (seconds until it finishes, while active), ``wait_s`` and ``duration_s``."""
    now = utcnow()
    fits = _fits(session)
    wanted_queues = {j.queue for j in jobs if j.state in ACTIVE_STATES}
    schedule: dict[str, dict[str, tuple[int | None, float | None]]] = {}
    if wanted_queues:
        active = session.scalars(
            select(Job).where(Job.state.in_(ACTIVE_STATES), Job.queue.in_(wanted_queues))
            .order_by(Job.created_at, Job.id)
        ).all()
        workers = workers_by_queue()
        for queue in wanted_queues:
            schedule[queue] = _schedule([j for j in active if j.queue == queue], max(1, workers.get(queue, 0)),
                                        fits, now)
    records = []
    for job in jobs:
        record = job.to_record()
        record.update(job_timing(job, now))
        record["estimated_s"] = estimated_run_s(job, fits)
        position, eta = schedule.get(job.queue, {}).get(job.id, (None, None))
        record["queue_position"], record["eta_s"] = position, eta
        records.append(record)
    return records


def _schedule(active: list[Job], workers: int, fits: dict[str, Fit],
              now: datetime) -> dict[str, tuple[int | None, float | None]]:
    """(position, eta) of each active job of one queue: running jobs occupy workers for their remaining time, then
    queued jobs, oldest first, go to the first worker free (unknown durations make every later ETA unknown)."""
    out: dict[str, tuple[int | None, float | None]] = {}
    free: list[float] = []
    unknown = False
    for job in active:
        if job.state == "running":
            remaining = _remaining_s(job, estimated_run_s(job, fits), now)
            out[job.id] = (None, remaining)
            if remaining is None:
                unknown = True
            free.append(remaining or 0.0)
    free = sorted(free)[:workers] if len(free) > workers else free + [0.0] * (workers - len(free))
    heapq.heapify(free)
    position = 0
    for job in active:
        if job.state != "queued":
            continue
        position += 1
        own = estimated_run_s(job, fits)
        start = heapq.heappop(free)
        if own is None:
            unknown = True
        finish = start + (own or 0.0)
        heapq.heappush(free, finish)
        out[job.id] = (position, None if unknown else finish)
    return out
