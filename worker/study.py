"""The study engine: runs the plan of a study (``toroid.store.study_spec.plan``) in rounds, its steps fanned out
over every worker (docs/studies.md, "How it runs").

Each step is an ordinary job of the per-kind computations, with the same parameters and keys as the API. A *round*
walks the plan once: a step whose answer is in the caches the API uses (a minimum trained with the same parameters,
``toroid.store.studies.find_trained_minimum``; a result with the same ``toroid.store.ledger.result_key``) is done;
a step whose inputs exist and whose job is not in flight gets one (``create_job`` with its key, so a job in flight
for the same key is shared, never repeated); a step whose job failed or was cancelled fails the study with that
job's message. Rounds are idempotent: running one twice publishes nothing twice.

Two modes:

* **fan-out** (the ``toroid.study`` task, i.e. a study posted to the API): the round *publishes* the steps' jobs on
  their queues (``queue_for``), so N workers run N steps at once, then *parks* the study job (``JobRun.park``:
  still ``running``, no worker, ``partial.waiting_on`` naming its jobs) and gives its worker slot back. When one of
  those jobs ends, the process that ran it continues the study (the ``AFTER_JOB`` hook of
  ``toroid.worker.tasks.run_job``): it takes the parked job (``take_parked``) and runs the next round right there.
  No task ever waits for another, so ONE worker of concurrency 1 completes a study; a continuation a dying process
  missed is caught by ``recover_jobs``.
* **inline** (``toroid study run``, ``run_study``): the same rounds, but the jobs are created unpublished and run in
  this process one after the other (a step already running elsewhere is followed; one whose worker died is taken
  over). No worker is needed.

A study restarted after a crash (``recover_jobs`` re-enqueues its job, or the spec is posted again, or
``toroid study run`` is run again) redoes nothing that finished.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from toroid.store.db import new_session
from toroid.store.ledger import (
    JobCancelled,
    JobRun,
    JobSuperseded,
    cancel_job,
    cancel_waited,
    claim,
    create_job,
    find_active_job,
    find_result,
    parked_waiting_for,
    publish_job,
    record_flatness,
    result_key,
    stale_job_s,
    take_parked,
)
from toroid.store.models import Job, Minimum, Result, utcnow
from toroid.store.params import JobParams
from toroid.store.studies import ensure_tables, find_trained_minimum, get_study, record_steps
from toroid.store.study_spec import Step, StudyError, StudySpec, analysis_request, plan, train_key, train_request
from toroid.worker.tasks import AFTER_JOB, continue_parked, job_task, run_job

log = logging.getLogger("toroid.study")

JobRunner = Callable[[str, str], Any]  # (kind, job id) -> runs the job's computation inline


@dataclass
class Round:
    """What one round found: the steps done (and their weight), the steps whose jobs are in flight."""

    done: int = 0
    done_weight: float = 0.0
    waiting: list[tuple[Step, Job]] = field(default_factory=list)
    pending: int = 0  # steps whose inputs do not exist yet

    @property
    def finished(self) -> bool:
        return not self.waiting and not self.pending


class StudyRunner:
    """Runs rounds of one study inside the study's ``JobRun`` (see the module docstring). ``publish``: fan-out mode
    (the steps' jobs go to the queues) or inline mode (they are created unpublished and run here by ``runner``)."""

    def __init__(self, study_id: str, run: Any, *, publish: bool = True, runner: JobRunner = run_job,
                 poll_s: float = 0.5):
        ensure_tables()
        found = get_study(study_id)
        if found is None:
            raise StudyError(f"study {study_id} does not exist")
        self.study = found[0]
        self.spec = StudySpec.model_validate(self.study.spec)
        self.steps = plan(self.spec)
        self.run = run
        self.publish = publish
        self.runner = runner
        self.poll_s = poll_s
        self.total_weight = sum(s.weight for s in self.steps) or 1.0
        #: step id -> the job computing it (kept in the study job's partial across rounds)
        self.jobs: dict[str, str] = dict(run.partial.get("jobs") or {})
        #: the jobs this study created (not found in flight): cancelled with it (``toroid.store.ledger.cancel_job``)
        self.created: list[str] = list(run.partial.get("created") or [])

    # -- one round -------------------------------------------------------------------------------------------
    def round(self) -> Round:
        """Walk the plan once: record what is done, start the jobs of the steps whose inputs exist (see the module
        docstring). Raises ``StudyError`` when a step's job failed or was cancelled."""
        self.run.check()
        found = get_study(self.study.id)
        outputs = dict((found[0].outputs if found else None) or {})
        fresh: dict[str, dict[str, str]] = {}
        state = Round()
        minima_of: dict[str, dict[tuple[str, int], Minimum]] = {}
        with new_session() as session:
            for step in self.steps:
                minima = minima_of.setdefault(step.variant, {})
                recorded = outputs.get(step.id) or {}
                if step.kind == "train":
                    minimum = session.get(Minimum, recorded["minimum_id"]) if recorded.get("minimum_id") else None
                    if minimum is None:
                        minimum = self._train(session, step)
                    if minimum is None:
                        state.waiting.append((step, session.get(Job, self.jobs[step.id])))
                        continue
                    minima[(step.args["label"], step.args["seed"])] = minimum
                    output = {"minimum_id": minimum.id}
                else:
                    result = session.get(Result, recorded["result_id"]) if recorded.get("result_id") else None
                    if result is None:
                        if any(tuple(t) not in minima for t in _needs(step)):
                            state.pending += 1
                            continue
                        result = self._analysis(session, step, minima)
                    if result is None:
                        state.waiting.append((step, session.get(Job, self.jobs[step.id])))
                        continue
                    output = {"result_id": result.id}
                if recorded != output:
                    fresh[step.id] = output
                state.done += 1
                state.done_weight += step.weight
            session.expunge_all()
        record_steps(self.study.id, fresh)
        self.run.partial["jobs"] = dict(self.jobs)
        self.run.partial["created"] = list(self.created)
        return state

    def _job(self, session: Session, step: Step, params: JobParams, key: str) -> Job:
        """The job of ``step``: the one this study started before (its failure is the study's), one in flight for
        the same key, or a new one (published in fan-out mode)."""
        job = session.get(Job, self.jobs[step.id], populate_existing=True) if step.id in self.jobs else None
        if job is not None and job.state in ("failed", "cancelled"):
            raise StudyError(f"{step.label}: job {job.id} {job.state}: {job.error or job.message}")
        if job is None:
            job = find_active_job(session, key)
            if job is None:
                job = create_job(session, params, key=key, message=f"queued by study {self.study.name}",
                                 publish=False, owner=self.study.owner, batch=True)
                self.created.append(job.id)
            self.jobs[step.id] = job.id
        if self.publish and job.state == "queued" and job.task_id is None:
            publish_job(session, job)
        return job

    def _train(self, session: Session, step: Step) -> Minimum | None:
        params = train_request(self.spec, step)
        minimum = find_trained_minimum(session, params)
        if minimum is not None:
            return minimum
        job = self._job(session, step, params, train_key(params))
        if job.state != "succeeded":
            return None
        minimum = session.get(Minimum, job.minimum_id) if job.minimum_id else None
        if minimum is None:
            raise StudyError(f"{step.label}: training job {job.id} succeeded without a minimum")
        return minimum

    def _analysis(self, session: Session, step: Step, minima: dict[tuple[str, int], Minimum]) -> Result | None:
        inputs, params, key_params = analysis_request(self.spec, step, minima)
        key = result_key(params.job_kind, inputs, key_params)
        result = find_result(session, key)
        if result is None:
            job = self._job(session, step, params, key)
            if job.state != "succeeded":
                return None
            result = find_result(session, key)
            if result is None:
                raise StudyError(f"{step.label}: job {job.id} succeeded but stored no result")
        if params.job_kind == "flatness":  # the API's cache hit records the minimum's local energy the same way
            record_flatness(session, inputs[0].id, result)
            session.commit()
        return result

    # -- progress --------------------------------------------------------------------------------------------
    def report(self, state: Round) -> None:
        """The study job's progress (step weights, running steps at their own progress) and status line."""
        running = [(s, j) for s, j in state.waiting if j is not None and j.state == "running"]
        within = sum(s.weight * float(j.progress or 0.0) for s, j in running)
        fraction = min((state.done_weight + within) / self.total_weight, 0.999)
        parts = [f"{state.done}/{len(self.steps)} steps done"]
        if running:
            parts.append("running: " + ", ".join(s.label for s, _ in running[:3])
                         + (f" and {len(running) - 3} more" if len(running) > 3 else ""))
        if len(state.waiting) > len(running):
            parts.append(f"{len(state.waiting) - len(running)} queued")
        self.run.say(" · ".join(parts))
        first = (state.waiting[0][0].id if state.waiting else "report")
        self.run.progress(fraction, {"step": first, "steps": f"{state.done}/{len(self.steps)}"})

    def summary(self) -> dict[str, int]:
        created = set(self.created)
        computed = sum(1 for step in self.steps if self.jobs.get(step.id) in created)
        return {"steps": len(self.steps), "reused": len(self.steps) - computed, "computed": computed}

    def finish(self) -> dict[str, Any]:
        summary = self.summary()
        self.run.partial.update(summary=summary, waiting_on=[], step="report",
                                steps=f"{len(self.steps)}/{len(self.steps)}")
        self.run.finish(lambda _session: self.study.id)
        return summary

    # -- inline mode -----------------------------------------------------------------------------------------
    def execute_inline(self) -> dict[str, Any]:
        """Rounds until the study is done, running each missing step's job in this process (``toroid study run``)."""
        while True:
            state = self.round()
            if state.finished:
                return self.finish()
            if not state.waiting:
                raise StudyError(f"{state.pending} step(s) wait for inputs that no step computes")
            self.report(state)
            step = state.waiting[0][0]
            self._drive(step, self.jobs[step.id])

    def _drive(self, step: Step, job_id: str) -> None:
        """Until ``job`` ends: run it here when queued, follow it while another live process runs it, take it over
        when that process stopped responding (stale heartbeat)."""
        while True:
            with new_session() as session:
                row = session.get(Job, job_id)
            if row is None or row.state not in ("queued", "running"):
                return
            if row.state == "queued":
                self._run_inline(step, row)
                continue
            cutoff = utcnow() - timedelta(seconds=stale_job_s())
            if row.heartbeat_at is None or row.heartbeat_at < cutoff:
                with new_session() as session:
                    session.execute(update(Job).where(
                        Job.id == row.id, Job.state == "running", Job.attempts == row.attempts,
                    ).values(state="queued", message="re-queued by a study: its worker stopped responding"))
                    session.commit()
                continue
            self._mirror(step, float(row.progress or 0.0))
            time.sleep(self.poll_s)

    def _mirror(self, step: Step, within: float) -> None:
        """The study's progress while ``step`` runs at ``within`` (inline mode)."""
        outputs = (get_study(self.study.id)[0].outputs or {})
        done = sum(s.weight for s in self.steps if s.id in outputs)
        in_phase = [s for s in self.steps if s.phase == step.phase and s.variant == step.variant]
        self.run.say(f"{step.label} ({in_phase.index(step) + 1}/{len(in_phase)})")
        fraction = (done + step.weight * max(0.0, min(1.0, within))) / self.total_weight
        self.run.progress(min(fraction, 0.999), {"step": step.id, "steps": f"{len(outputs)}/{len(self.steps)}"})

    def _run_inline(self, step: Step, job: Job) -> None:
        """Run the job's task in this process; a monitor thread mirrors its progress into the study's job and
        cancels it when the study is cancelled."""
        stop = threading.Event()
        lost: list[BaseException] = []

        def monitor() -> None:
            while not stop.wait(self.poll_s):
                try:
                    with new_session() as session:
                        progress = session.scalar(select(Job.progress).where(Job.id == job.id)) or 0.0
                    self._mirror(step, float(progress))
                except (JobCancelled, JobSuperseded) as exc:
                    lost.append(exc)
                    if isinstance(exc, JobCancelled):
                        with new_session() as session:
                            row = session.get(Job, job.id)
                            if row is not None:
                                cancel_job(session, row)
                    return
                except Exception:  # a busy database must not stop the study; the next tick retries
                    continue

        thread = threading.Thread(target=monitor, name=f"study-monitor-{job.id}", daemon=True)
        thread.start()
        try:
            self.runner(job.kind, job.id)
        finally:
            stop.set()
            thread.join(timeout=10)
        if lost:
            raise lost[0]


def _needs(step: Step) -> list[tuple[str, int]]:
    """The minima (label, seed) an analysis step reads."""
    if step.kind == "distances":
        return [tuple(t) for t in step.args["tags"]]
    if step.kind == "path":
        return [tuple(step.args["a"]), tuple(step.args["b"])]
    return [(step.args["label"], step.args["seed"])]


# --------------------------------------------------------------------------------------------- fan-out mode
def _fail(run: JobRun, error: str) -> None:
    """Fail the study with ``error`` and cancel its queued steps (their results would be wasted work now)."""
    run.fail(error)
    with new_session() as session:
        job = session.get(Job, run.job_id)
        if job is not None and job.state == "failed":
            cancel_waited(session, job, running=False)


def _rounds(run: JobRun) -> str:
    """Fan-out rounds inside ``run``: finish the study, or park it until one of its jobs ends. Returns succeeded,
    waiting, or again (a job ended while it parked and nobody continued it: the caller takes it again)."""
    runner = StudyRunner(run.request.study_id, run, publish=True)
    state = runner.round()
    if state.finished:
        runner.finish()
        return "succeeded"
    if not state.waiting:
        raise StudyError(f"{state.pending} step(s) wait for inputs that no step computes")
    runner.report(state)
    waited = [runner.jobs[step.id] for step, _ in state.waiting]
    if not run.park(waited):
        return "waiting"
    # a job that ended between the round's look and the park found the study still held: continue it here
    with new_session() as session:
        ended = session.scalar(select(Job.id).where(Job.id.in_(waited), Job.state.not_in(("queued", "running")))
                               .limit(1))
    return "again" if ended else "waiting"


def run_study_job(run: JobRun) -> None:
    """The body of the ``toroid.study`` task: the first round (fan-out mode) in the task's ``run``."""
    try:
        again = _rounds(run) == "again"
    except StudyError as exc:
        _fail(run, str(exc))
        raise  # run_job records the outcome (the job is failed already) and Celery's FAILURE follows it
    if again:
        continue_study(run.job_id)


def continue_study(job_id: str, worker: str | None = None) -> str:
    """Take a parked study and run its rounds here until it finishes or parks again (``continue_parked``); returns
    succeeded, failed, waiting, cancelled, superseded or skipped (not parked: another process continues it)."""
    return continue_parked(job_id, worker or f"study round pid {os.getpid()}", _rounds, _fail)


def _continue_waiting(job_id: str) -> None:
    """``AFTER_JOB`` hook: the studies parked on ``job_id`` run their next round in this process."""
    with new_session() as session:
        parked = parked_waiting_for(session, job_id, kinds=("study",))
        worker = session.scalar(select(Job.worker).where(Job.id == job_id))  # this process, as the job records it
    for study_job in parked:
        continue_study(study_job, worker)


AFTER_JOB.append(_continue_waiting)


@job_task("study")
def study(run: JobRun) -> None:
    """Run a study job (docs/method.md §§5-8 as one protocol): train, local energy, distances, paths, one-bend;
    its steps fan out over the workers (docs/studies.md)."""
    run_study_job(run)


# --------------------------------------------------------------------------------------------- inline mode
def run_study(job_id: str, worker: str, *, runner: JobRunner = run_job) -> str:
    """Run a study's job in this process, every step inline (``toroid study run``): claims it when queued, takes it
    when parked (a worker started it; this process finishes it); returns the outcome like ``run_job``."""
    job = claim(job_id, worker) or take_parked(job_id, worker)
    if job is None:
        return "skipped"
    run = JobRun(job)
    run.partial = dict(job.partial or {})  # taken parked: what its rounds recorded (a claim starts empty)
    with run:
        try:
            StudyRunner(run.request.study_id, run, publish=False, runner=runner).execute_inline()
        except JobCancelled:
            return "cancelled"
        except JobSuperseded:
            return "superseded"
        except Exception as exc:
            log.exception("study job %s failed", job_id)
            message = str(exc) if isinstance(exc, ValueError) and str(exc) else f"{type(exc).__name__}: {exc}"
            run.fail(message)
            return "failed"
    return "succeeded"


__all__ = ["Round", "StudyRunner", "continue_study", "run_study", "run_study_job"]
