"""Job records: creation, result keys, queue routing, and the reliable lifecycle a worker drives.

Lifecycle (docs/operations.md has the full design)::

    queued --claim--> running --finish--> succeeded
       ^                 |  \\--error--> failed
       |                 |   \\-cancel-> cancelled (the task stops at its next progress report)
       +--- recover -----+   (heartbeat older than TOROID_STALE_JOB_S: the worker died)

* The API creates the row, commits, then publishes a Celery message carrying only the job id.
* A worker *claims* a job with one atomic ``UPDATE ... WHERE state='queued'`` that also increments ``attempts``.
  Every later write of that worker (progress, heartbeat, completion) is conditional on ``attempts`` still being its
  own and the state still ``running``, so a worker that lost the job (cancelled, or re-enqueued after its
  heartbeat went stale) cannot write anymore and stops at its next progress report.
* A heartbeat (each progress report, plus a timer thread) shows the worker is alive. ``recover_jobs`` (run when a
  worker starts and periodically in every worker) re-enqueues running jobs whose heartbeat is stale, and queued
  jobs whose Celery message is gone from Redis; after ``TOROID_MAX_JOB_ATTEMPTS`` lost workers a job fails.
* Completion writes the result row (unique ``key``) and the job state in one transaction; a second completion
  of the same work finds the existing row and creates no other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from toroid.store.db import new_session
from toroid.store.errors import BrokerUnavailable
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Result, new_id, utcnow
from toroid.store.params import JobParams, job_params
from toroid.store.parked import KEPT_PARTIAL, cancel_waited, missed_continuations, parked_waiting_for, take_parked
from toroid.store.settings import get_settings
from toroid.worker.landscape.results import to_json

__all__ = ["BrokerUnavailable", "JobCancelled", "JobRun", "JobSuperseded", "cancel_job", "cancel_waited", "claim",
           "create_job", "find_active_job", "find_result", "parked_waiting_for", "publish_job", "record_flatness",
           "recover_jobs", "result_key", "take_parked"]

log = logging.getLogger("toroid.jobs")

TASK_NAMES: dict[str, str] = {
    "train": "toroid.train",
    "evaluate": "toroid.evaluate",
    "flatness": "toroid.flatness",
    "sharpness": "toroid.sharpness",
    "path": "toroid.path",
    "distances": "toroid.distances",
    "section": "toroid.section",
    "torus": "toroid.torus",
    "study": "toroid.study",
}
#: Kinds cheap enough to run anywhere: outside the interactive queue they go to the ``cpu`` queue. Everything else
#: is "heavy".
LIGHT_KINDS = frozenset({"distances"})
#: The queue of the analyses a click starts, served by worker processes of its own so that a click never waits
#: behind training (docs/operations.md, "Queues").
INTERACTIVE_QUEUE = "interactive"
#: What may run on the interactive queue: the kinds a click starts, each up to the size a click asks for (paths up
#: to 65 points but no one-bend path, which retrains; flatness in its sequential or fast mode; grids up to 33x33)
#: and up to ``TOROID_INTERACTIVE_MAX_COST``. Training, studies and anything larger go to the batch queues.
INTERACTIVE_LIMITS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "evaluate": lambda p: True,
    "distances": lambda p: True,
    "sharpness": lambda p: True,
    "flatness": lambda p: p.get("mode", "sequential") in ("sequential", "fast"),
    "path": lambda p: int(p.get("points") or 33) <= 65 and p.get("kind") != "one_bend",
    "section": lambda p: int(p.get("resolution") or 0) <= 33,
    "torus": lambda p: int(p.get("resolution") or 0) <= 33,
}


# --------------------------------------------------------------------------------------------- configuration
def heavy_queue() -> str:
    """Queue of training and heavy analyses (``TOROID_HEAVY_QUEUE``; ``cpu`` where only CPU workers consume)."""
    return get_settings().heavy_queue.strip() or "gpu"


def interactive(kind: str, params: dict[str, Any] | None = None, cost: float | None = None) -> bool:
    """Whether a job belongs on the interactive queue: its kind and size are what a click asks for and its
    estimated cost (``store/cost.py``; unknown counts as too large) is within ``TOROID_INTERACTIVE_MAX_COST``."""
    check = INTERACTIVE_LIMITS.get(kind)
    if check is None or cost is None or not check(params or {}):
        return False
    return cost <= float(get_settings().interactive_max_cost)


def queue_for(kind: str, params: dict[str, Any] | None = None, cost: float | None = None, batch: bool = False) -> str:
    """The Celery queue a job of ``kind`` (with these parameters and estimated cost) is published to; ``batch``: never
    the interactive one (a study's steps, which would otherwise queue in front of a user's clicks)."""
    if not batch and interactive(kind, params, cost):
        return INTERACTIVE_QUEUE
    return "cpu" if kind in LIGHT_KINDS else heavy_queue()


def stale_job_s() -> float:
    """Seconds without a heartbeat after which a running job counts as lost (``TOROID_STALE_JOB_S``)."""
    return max(1.0, float(get_settings().stale_job_s))


def heartbeat_s() -> float:
    """Interval of the heartbeat timer of a running job: a third of the stale threshold."""
    return max(0.2, stale_job_s() / 3.0)


def max_job_attempts() -> int:
    """How many workers may die on one job before it is marked failed (``TOROID_MAX_JOB_ATTEMPTS``)."""
    return max(1, int(get_settings().max_job_attempts))


# --------------------------------------------------------------------------------------------- JSON and keys
#: JSON that any encoder and every database's JSON column accept (non-finite floats become null): the core's one
#: converter, used for job parameters, partial results, results and keys alike.
clean_json = to_json


def input_descriptor(minimum: Minimum) -> dict[str, Any]:
    """What identifies a minimum as the input of a computation: its weights and how to read and evaluate them."""
    return {
        "checkpoint": minimum.checkpoint_sha256,
        "architecture": minimum.architecture,
        "config": minimum.config or {},
        "dataset": minimum.dataset,
        "dataset_options": minimum.dataset_options or {},
    }


def canonical_hash(value: Any) -> str:
    """sha256 of the one serialization that keys hash: sorted keys, no spaces, non-finite floats as null."""
    text = json.dumps(clean_json(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def result_key(kind: str, minima: Sequence[Minimum], params: dict[str, Any]) -> str:
    """sha256 of (kind, input checkpoint hashes and descriptions, normalized params, CODE_VERSION)."""
    from toroid.worker.landscape import CODE_VERSION

    return canonical_hash({
        "kind": kind,
        "inputs": [input_descriptor(m) for m in minima],
        "params": params,
        "code_version": CODE_VERSION,
    })


# --------------------------------------------------------------------------------------------- API side
def create_job(
    session: Session, params: JobParams, *, key: str | None = None, message: str = "queued", publish: bool = True,
    owner: str | None = None, cost: float | None = None, batch: bool = False,
) -> Job:
    """The one way a job is born: insert it queued and (``publish``) send its Celery message by task name.

    With a ``key``, an identical computation already queued or running is returned instead (also when it won the
    race to the unique partial index a moment ago). ``publish=False`` leaves the message out: a study runs such
    jobs inline in its own process. ``owner``: the user asking (what the job makes, a minimum, is theirs too).
    ``cost``: its estimate (``store/cost.py``), which chooses the queue (``queue_for``; ``batch``: a batch queue
    whatever the cost) and feeds the ETAs. Raises ``BrokerUnavailable`` when Redis is unreachable (the job is then
    failed).
    """
    kind = params.job_kind
    if key:
        active = find_active_job(session, key)
        if active is not None:
            return active
    fields = clean_json(params.model_dump(exclude={"chunk"} if getattr(params, "chunk", 1) is None else None))
    cost = params._estimated_cost if cost is None else cost
    job = Job(
        id=new_id(), kind=kind, state="queued", progress=0.0, message=message, partial={}, params=fields, key=key,
        queue=queue_for(kind, fields, cost, batch), cost=cost, attempts=0, created_at=utcnow(), owner=owner,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:  # an identical request created its job a moment ago: share it
        session.rollback()
        active = find_active_job(session, key) if key else None
        if active is None:
            raise
        return active
    if publish:
        publish_job(session, job)
    return job


def publish_job(session: Session, job: Job) -> None:
    """Send the job's Celery message by task name (after the row is committed, so the worker finds it)."""
    from toroid.store.celery_app import celery_app

    task_id = f"{job.id}-{new_id()[:8]}"
    try:
        celery_app.send_task(TASK_NAMES[job.kind], args=[job.id], queue=job.queue, task_id=task_id)
    except Exception as exc:  # kombu raises OperationalError and friends after its retries
        job.state, job.error, job.finished_at = "failed", f"could not reach the message broker: {exc}", utcnow()
        job.message = "failed to queue"
        session.commit()
        raise BrokerUnavailable(
            f"the {job.kind} job could not be queued because the message broker (Redis) is unreachable: {exc}"
        ) from exc
    job.task_id, job.enqueued_at = task_id, utcnow()
    session.commit()


def record_flatness(session: Session, minimum_id: str, result: Result | None = None, *,
                    result_id: str | None = None, data: dict[str, Any] | None = None) -> None:
    """The one place a minimum learns its flatness: the local energy at the largest sigma of a flatness result
    (what the paper compares with the test error, docs/method.md §6) and the result's id. The caller commits."""
    from toroid.worker.landscape.results import local_energy_at_largest_sigma

    row = session.get(Minimum, minimum_id)
    result_id = result.id if result is not None else result_id
    data = (result.data or {}) if result is not None else (data or {})
    if row is not None and row.flatness_result_id != result_id:
        row.flatness_result_id = result_id
        row.local_energy = local_energy_at_largest_sigma(data)


def find_result(session: Session, key: str) -> Result | None:
    return session.scalar(select(Result).where(Result.key == key))


def find_active_job(session: Session, key: str) -> Job | None:
    """A queued or running job computing this key (an identical request already in flight)."""
    return session.scalar(
        select(Job).where(Job.key == key, Job.state.in_(ACTIVE_STATES)).order_by(Job.created_at.desc()).limit(1)
    )


def cancel_job(session: Session, job: Job) -> Job:
    """Mark an active job cancelled; its task stops at its next progress report. Finished jobs stay as they are.

    A parked job (``JobRun.park``: a study between its rounds) takes the jobs it waits for along: those still queued,
    and those it created itself that are running (``partial.waiting_on`` / ``partial.created``); a running job it
    found in flight (another request's) is left to finish."""
    if job.state in ACTIVE_STATES:
        cancelled = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state.in_(ACTIVE_STATES))
            .values(state="cancelled", message="cancelled by request", finished_at=utcnow())
        )
        session.commit()
        session.refresh(job)
        if cancelled.rowcount == 1:
            cancel_waited(session, job)
    return job


# --------------------------------------------------------------------------------------------- worker side
class JobCancelled(Exception):
    """Raised inside a progress callback when the job was cancelled: the computation stops."""


class JobSuperseded(Exception):
    """Raised when another worker took the job over (this worker's heartbeat went stale): stop quietly."""


class JobRun:
    """One worker's ownership of one job: progress reports, heartbeats, and the final write.

    Use as a context manager around the computation (it runs the heartbeat timer). ``progress`` is the callback
    handed to the science core (``progress(fraction, info)``): it merges ``info`` into the job's ``partial`` dict
    (numbers are appended to per-key lists, so path points and training curves grow live; an ``info["stage"]``
    groups the values under ``partial[stage]`` and names the current stage in ``partial["stage"]``), writes at
    most every ``min_interval`` seconds, and raises ``JobCancelled`` / ``JobSuperseded`` when the job is no longer ours.
    """

    def __init__(self, job: Job, *, min_interval: float = 0.25, published: bool = False):
        self.job_id = job.id
        self.kind = job.kind
        self.key = job.key
        self.params = dict(job.params or {})
        #: The job's typed parameters (``toroid.store.params``): what the task computes.
        self.request = job_params(job.kind, self.params)
        self.attempt = int(job.attempts)
        self.owner = job.owner
        #: Where the job was routed and its estimated cost (``queue_for``, store/cost.py); ``published``: a worker
        #: took it from its queue (``run_job(queued=True)``; not the jobs ``toroid study run`` runs inline; the
        #: row's task id can lag the message). A long analysis on a batch queue splits into chunks by them
        #: (toroid.worker.chunks).
        self.queue, self.cost, self.published = job.queue, job.cost, published
        self.partial: dict[str, Any] = {k: v for k, v in (job.partial or {}).items() if k in KEPT_PARTIAL}
        self.fraction = 0.0
        self.message = "running"
        self.min_interval = min_interval
        self._last_write = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set by ``park``: the job gave its worker back without finishing (a study waiting for its steps).
        self.parked = False

    # -- ownership-guarded writes ----------------------------------------------------------------------------
    def _owned(self):
        return (Job.id == self.job_id) & (Job.attempts == self.attempt) & (Job.state == "running")

    def _write(self, session: Session, **values: Any) -> bool:
        result = session.execute(update(Job).where(self._owned()).values(heartbeat_at=utcnow(), **values))
        return result.rowcount == 1

    def _lost(self, session: Session) -> Exception:
        state = session.scalar(select(Job.state).where(Job.id == self.job_id))
        if state == "cancelled":
            return JobCancelled(f"job {self.job_id} was cancelled")
        return JobSuperseded(f"job {self.job_id} is no longer owned by this worker (state {state})")

    def check(self) -> None:
        """Raise ``JobCancelled`` / ``JobSuperseded`` if the job is no longer ours."""
        with new_session() as session:
            ok = self._write(session)
            session.commit()
            if not ok:
                raise self._lost(session)

    def say(self, message: str) -> None:
        """Set the job's human-readable status line (written with the next progress report)."""
        self.message = message

    def progress(self, fraction: float, info: dict[str, Any] | None = None) -> None:
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = self.fraction
        self.fraction = min(1.0, max(self.fraction, fraction if math.isfinite(fraction) else 0.0))
        info = dict(info or {})
        stage = info.pop("stage", None)
        target = self.partial
        if isinstance(stage, str) and stage:  # multi-stage runs (one_bend: retrain, segment) keep apart
            self.partial["stage"] = stage
            target = self.partial.setdefault(stage, {})
        for key, value in info.items():
            # numbers (and None: a value not measured at this step, e.g. adv's test error while it memorizes the
            # confusion set) extend a series aligned with the other series; everything else is a scalar
            if isinstance(value, bool) or isinstance(value, str | dict | list | tuple):
                target[str(key)] = clean_json(value)
            elif value is None or isinstance(value, int | float) or callable(getattr(value, "item", None)):
                series = target.get(str(key))
                if not isinstance(series, list):
                    series = target[str(key)] = []
                series.append(clean_json(value))
        now = time.monotonic()
        if now - self._last_write < self.min_interval and self.fraction < 1.0:
            return
        self._last_write = now
        with new_session() as session:
            ok = self._write(session, progress=self.fraction, partial=clean_json(self.partial), message=self.message)
            session.commit()
            if not ok:
                raise self._lost(session)

    # -- heartbeat timer -------------------------------------------------------------------------------------
    def _beat(self) -> None:
        interval = heartbeat_s()
        while not self._stop.wait(interval):
            try:
                with new_session() as session:
                    alive = self._write(session)
                    session.commit()
                if not alive:
                    return
            except Exception:  # a busy database must not kill the computation; the next beat retries
                log.exception("heartbeat of job %s failed", self.job_id)

    def __enter__(self) -> JobRun:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- completion ------------------------------------------------------------------------------------------
    def finish_result(
        self, data: dict[str, Any], minimum_ids: Iterable[str], key: str | None,
        also: Callable[[Session, str], None] | None = None,
    ) -> str:
        """Mark the job succeeded and store its result (idempotent by key) in one transaction; returns the result
        id. ``also(session, result_id)`` runs in the same transaction (e.g. to update the minimum's flatness)."""
        from toroid.worker.landscape import CODE_VERSION

        if not key:
            raise ValueError(f"job {self.job_id} has no result key")

        def write(session: Session) -> str:
            row = session.scalar(select(Result).where(Result.key == key))
            if row is None:
                row = Result(
                    id=new_id(), key=key, kind=self.kind, params=self.params, minimum_ids=list(minimum_ids),
                    data=clean_json(data), job_id=self.job_id, code_version=CODE_VERSION, created_at=utcnow(),
                )
                session.add(row)
                session.flush()
            session.execute(update(Job).where(Job.id == self.job_id).values(result_id=row.id))
            if also is not None:
                also(session, row.id)
            return row.id

        return self.finish(write)

    def finish_minimum(self, minimum: Minimum) -> str:
        """Mark the job succeeded and store its trained minimum (one per job: ``job_id`` is unique)."""

        def write(session: Session) -> str:
            row = session.scalar(select(Minimum).where(Minimum.job_id == self.job_id))
            if row is None:
                minimum.job_id = self.job_id
                session.add(minimum)
                session.flush()
                row = minimum
            session.execute(update(Job).where(Job.id == self.job_id).values(minimum_id=row.id))
            return row.id

        return self.finish(write)

    def finish(self, write: Callable[[Session], str]) -> str:
        """Succeed the job (only while this worker owns it) and run ``write`` in the same transaction.

        Ownership comes first: a job cancelled or taken over meanwhile gets no result from this worker
        (``JobCancelled`` / ``JobSuperseded``). A unique-key collision with a concurrent writer is retried and then
        finds that writer's row.
        """
        for _ in range(3):
            with new_session() as session:
                try:
                    owned = session.execute(
                        update(Job).where(self._owned()).values(
                            state="succeeded", progress=1.0, partial=clean_json(self.partial), message="done",
                            finished_at=utcnow(), heartbeat_at=utcnow(), error=None,
                        )
                    )
                    if owned.rowcount != 1:
                        session.rollback()
                        raise self._lost(session)
                    written = write(session)
                    session.commit()
                    return written
                except IntegrityError:
                    session.rollback()
        raise RuntimeError(f"could not store the outcome of job {self.job_id} (unique key conflicts)")

    def park(self, waiting_on: Sequence[str]) -> bool:
        """Give the worker back without finishing: the job stays ``running`` with no worker (``worker`` NULL) and
        ``partial.waiting_on`` naming the jobs it waits for. Whoever ends one of those jobs continues it
        (``take_parked``; a study's next round, docs/studies.md), and ``recover_jobs`` does when that was missed.
        False when the job is no longer ours (cancelled or taken over)."""
        self.partial["waiting_on"] = [str(i) for i in waiting_on]
        with new_session() as session:
            ok = session.execute(update(Job).where(self._owned()).values(
                worker=None, heartbeat_at=utcnow(), progress=self.fraction, message=self.message,
                partial=clean_json(self.partial)))
            session.commit()
        self.parked = ok.rowcount == 1
        self._stop.set()  # nothing of this worker writes to the job anymore
        return self.parked

    def fail(self, error: str) -> None:
        with new_session() as session:
            session.execute(
                update(Job)
                .where(self._owned())
                .values(state="failed", error=error[:4000], message="failed", finished_at=utcnow(),
                        partial=clean_json(self.partial))
            )
            session.commit()


def claim(job_id: str, worker: str) -> Job | None:
    """Atomically move a queued job to running for this worker; None if it is not queued (already taken, done,
    cancelled, or unknown), in which case the message is a duplicate and the task does nothing. The new attempt's
    ``partial`` starts empty but for ``KEPT_PARTIAL``."""
    with new_session() as session:
        now = utcnow()
        before = session.scalar(select(Job.partial).where(Job.id == job_id, Job.state == "queued")) or {}
        kept = {k: before[k] for k in KEPT_PARTIAL if isinstance(before, dict) and k in before}
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued")
            .values(
                state="running", attempts=Job.attempts + 1, worker=worker[:200], started_at=now, heartbeat_at=now,
                progress=0.0, partial=kept, message="started", error=None,
            )
        )
        session.commit()
        if claimed.rowcount != 1:
            return None
        return session.get(Job, job_id, populate_existing=True)


# --------------------------------------------------------------------------------------------- recovery
def _broker_task_ids_present(task_ids: Iterable[str], queues: Iterable[str]) -> set[str]:
    """Which of ``task_ids`` still have a message in Redis (waiting in a queue, or delivered and not acked)."""
    import redis

    from toroid.store.celery_app import celery_app

    wanted = set(task_ids)
    if not wanted:
        return set()
    client = redis.Redis.from_url(celery_app.conf.broker_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        raw: list[bytes] = []
        for queue in set(queues):
            for suffix in ("", "\x06\x163", "\x06\x166", "\x06\x169"):  # kombu's priority sub-queues
                raw.extend(client.lrange(f"{queue}{suffix}", 0, -1))
        raw.extend(client.hvals("unacked"))
    finally:
        client.close()
    blob = b"\n".join(raw)
    return {task_id for task_id in wanted if task_id.encode() in blob}


def recover_jobs(now: datetime | None = None) -> list[str]:
    """Re-enqueue jobs a dead worker or a lost message left behind; returns the ids re-enqueued.

    * running jobs whose heartbeat is older than ``stale_job_s()`` (the worker died, e.g. SIGKILL or OOM);
    * queued jobs published more than ``stale_job_s()`` ago whose message is no longer in Redis (or was never
      published because the API died between the commit and the publish);
    * parked jobs (``JobRun.park``, a study between rounds) that nobody continued although a job they wait for
      ended more than ``stale_job_s()`` ago: queued again, so that a worker runs their next round.
    A job that already lost ``max_job_attempts()`` workers is marked failed instead of re-enqueued.
    Safe to run concurrently in several workers: each move is a conditional UPDATE, only its winner publishes.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale_job_s())
    recovered: list[str] = []
    with new_session() as session:
        stale = session.scalars(
            select(Job).where(Job.state == "running", Job.worker.is_not(None),
                              or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))
        ).all()
        missed = missed_continuations(session, cutoff)
        queued = session.scalars(
            select(Job).where(Job.state == "queued", or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff),
                              Job.created_at < cutoff)
        ).all()
        present = _broker_task_ids_present([j.task_id for j in queued if j.task_id], [j.queue for j in queued])
        lost_messages = [j for j in queued if not j.task_id or j.task_id not in present]

        for job in stale:
            if job.attempts >= max_job_attempts():
                moved = session.execute(
                    update(Job).where(Job.id == job.id, Job.state == "running", Job.attempts == job.attempts).values(
                        state="failed", finished_at=now, message="failed",
                        error=f"the worker running this job stopped responding {job.attempts} times "
                        "(killed, out of memory, or the machine went down); not retrying",
                    )
                )
                session.commit()
                continue
            moved = session.execute(
                update(Job).where(Job.id == job.id, Job.state == "running", Job.attempts == job.attempts).values(
                    state="queued", message=f"re-queued: its worker stopped responding (attempt {job.attempts})",
                    enqueued_at=None,
                )
            )
            session.commit()
            if moved.rowcount == 1:
                recovered.append(job.id)
        for job in missed:  # parked, and what it waits for ended long ago: continue it through a new message
            moved = session.execute(
                update(Job).where(Job.id == job.id, Job.state == "running", Job.worker.is_(None)).values(
                    state="queued", message="re-queued: the steps it waited for have ended", enqueued_at=None)
            )
            session.commit()
            if moved.rowcount == 1:
                recovered.append(job.id)
        for job in lost_messages:
            moved = session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.state == "queued",
                    Job.task_id.is_(None) if job.task_id is None else Job.task_id == job.task_id,
                )
                .values(enqueued_at=now)
            )
            session.commit()
            if moved.rowcount == 1:
                recovered.append(job.id)
        for job_id in recovered:
            job = session.get(Job, job_id, populate_existing=True)
            if job is not None and job.state == "queued":
                try:
                    publish_job(session, job)
                    log.warning("re-enqueued job %s (%s)", job.id, job.kind)
                except BrokerUnavailable:
                    log.exception("could not re-enqueue job %s", job_id)
    return recovered
