"""The study engine: runs the plan of a study (``toroid.store.study_spec.plan``) as one resumable job.

The study's job is claimed like every other job (``toroid.worker.tasks.run_job``: claim, heartbeat, failure
handling) and executes its plan step by step. Each step is an ordinary job of the per-kind computations: the
engine looks for the answer in the caches the API uses (a minimum trained with the same parameters,
``toroid.store.studies.find_trained_minimum``; a result with the same ``toroid.store.ledger.result_key``), and
when it is missing it creates the job through the ledger *without publishing a message* and runs it inline, in the
study's own process. So a study works with ONE worker of concurrency 1 (no task waits for another task of the same
worker), its minima and analyses appear in the dashboard and the API like any other, and a study restarted after a
crash (``recover_jobs`` re-enqueues its job, or the spec is posted again, or ``toroid study run`` is run again)
redoes nothing that finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from toroid.store.db import new_session
from toroid.store.ledger import (
    JobCancelled,
    JobRun,
    JobSuperseded,
    cancel_job,
    create_job,
    find_result,
    record_flatness,
    result_key,
    stale_job_s,
)
from toroid.store.models import Job, Minimum, Result, utcnow
from toroid.store.params import JobParams, StudyJob
from toroid.store.studies import ensure_tables, find_trained_minimum, get_study, record_step, step_output
from toroid.store.study_spec import Step, StudyError, StudySpec, analysis_request, plan, train_key, train_request
from toroid.worker.tasks import job_task, run_job

JobRunner = Callable[[str, str], Any]  # (kind, job id) -> runs the job's computation inline


class StudyRunner:
    """Executes the plan of one study inside the study's ``JobRun`` (see the module docstring)."""

    def __init__(self, study_id: str, run: Any, *, runner: JobRunner = run_job,
                 on_step: Callable[[int, int, Step, str], None] | None = None, poll_s: float = 0.5):
        ensure_tables()
        found = get_study(study_id)
        if found is None:
            raise StudyError(f"study {study_id} does not exist")
        self.study = found[0]
        self.spec = StudySpec.model_validate(self.study.spec)
        self.steps = plan(self.spec)
        self.run = run
        self.runner = runner
        self.on_step = on_step
        self.poll_s = poll_s
        self.total_weight = sum(s.weight for s in self.steps) or 1.0
        self.done_weight = 0.0
        self.minima: dict[str, dict[tuple[str, int], Minimum]] = {}

    # -- progress --------------------------------------------------------------------------------------------
    def _report(self, index: int, step: Step, within: float) -> None:
        fraction = (self.done_weight + step.weight * max(0.0, min(1.0, within))) / self.total_weight
        in_phase = [s for s in self.steps if s.phase == step.phase and s.variant == step.variant]
        position = in_phase.index(step) + 1
        self.run.say(f"{step.label} ({position}/{len(in_phase)})")
        self.run.progress(min(fraction, 0.999), {"step": step.id, "steps": f"{index + 1}/{len(self.steps)}"})

    # -- driving one job -------------------------------------------------------------------------------------
    def _drive(self, index: int, step: Step, job_id: str) -> Job:
        """Run or follow ``job_id`` until it finishes; returns the finished row (StudyError if it did not succeed).

        queued: run it inline (its task claims it). running elsewhere with a live heartbeat: wait, following its
        progress. running with a stale heartbeat (its worker died): take it over, then run it.
        """
        while True:
            with new_session() as session:
                job = session.get(Job, job_id)
            if job is None:
                raise StudyError(f"{step.label}: job {job_id} disappeared")
            if job.state == "succeeded":
                return job
            if job.state in ("failed", "cancelled"):
                raise StudyError(f"{step.label}: job {job.id} {job.state}: {job.error or job.message}")
            if job.state == "queued":
                self._run_inline(index, step, job)
                continue
            cutoff = utcnow() - timedelta(seconds=stale_job_s())
            if job.heartbeat_at is None or job.heartbeat_at < cutoff:
                with new_session() as session:
                    session.execute(update(Job).where(
                        Job.id == job.id, Job.state == "running", Job.attempts == job.attempts,
                    ).values(state="queued", message="re-queued by a study: its worker stopped responding"))
                    session.commit()
                continue
            self._report(index, step, float(job.progress or 0.0))
            time.sleep(self.poll_s)

    def _run_inline(self, index: int, step: Step, job: Job) -> None:
        """Run the job's task in this process; a monitor thread mirrors its progress into the study's job and
        cancels it when the study is cancelled."""
        stop = threading.Event()
        lost: list[BaseException] = []

        def monitor() -> None:
            while not stop.wait(self.poll_s):
                try:
                    with new_session() as session:
                        progress = session.scalar(select(Job.progress).where(Job.id == job.id)) or 0.0
                    self._report(index, step, float(progress))
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

    def _obtain(self, params: JobParams, key: str) -> str:
        """The job computing ``key``: one already in flight, or a new unpublished one this process will run."""
        with new_session() as session:
            return create_job(session, params, key=key, message=f"queued by study {self.study.name}",
                              publish=False, owner=self.study.owner).id

    # -- steps -----------------------------------------------------------------------------------------------
    def _minimum_for(self, index: int, step: Step) -> Minimum:
        params = train_request(self.spec, step)
        with new_session() as session:
            found = find_trained_minimum(session, params)
        if found is not None:
            return found
        job = self._drive(index, step, self._obtain(params, train_key(params)))
        with new_session() as session:
            minimum = session.get(Minimum, job.minimum_id) if job.minimum_id else None
        if minimum is None:
            raise StudyError(f"{step.label}: training job {job.id} succeeded without a minimum")
        return minimum

    def _result_for(self, index: int, step: Step, minima: dict[tuple[str, int], Minimum]) -> Result:
        inputs, params, key_params = analysis_request(self.spec, step, minima)
        key = result_key(params.job_kind, inputs, key_params)
        with new_session() as session:
            result = find_result(session, key)
        if result is None:
            self._drive(index, step, self._obtain(params, key))
            with new_session() as session:
                result = find_result(session, key)
            if result is None:
                raise StudyError(f"{step.label}: the job succeeded but stored no result")
        if params.job_kind == "flatness":  # the API's cache hit records the minimum's local energy the same way
            with new_session() as session:
                record_flatness(session, inputs[0].id, result)
                session.commit()
        return result

    def execute(self) -> dict[str, Any]:
        """Run every step not finished yet; returns {"steps", "reused", "computed"}."""
        reused = computed = 0
        for index, step in enumerate(self.steps):
            self.run.check()
            self._report(index, step, 0.0)
            before = time.monotonic()
            minima = self.minima.setdefault(step.variant, {})
            if step.kind == "train":
                had = step_output(self.study.id, step.id)
                minimum = self._minimum_for(index, step)
                minima[(step.args["label"], step.args["seed"])] = minimum
                output = {"minimum_id": minimum.id}
                fresh = had != output
            else:
                had = step_output(self.study.id, step.id)
                result = self._result_for(index, step, minima)
                output = {"result_id": result.id}
                fresh = had != output
            record_step(self.study.id, step.id, output)
            computed += int(fresh)
            reused += int(not fresh)
            self.done_weight += step.weight
            if self.on_step is not None:
                self.on_step(index, len(self.steps), step, f"{time.monotonic() - before:.1f} s")
        self.run.progress(0.999, {"step": "report", "steps": f"{len(self.steps)}/{len(self.steps)}"})
        return {"steps": len(self.steps), "reused": reused, "computed": computed}


def run_study_job(run: Any, *, runner: JobRunner = run_job,
                  on_step: Callable[[int, int, Step, str], None] | None = None) -> dict[str, Any]:
    """The body of a study job (``run`` is its ``toroid.store.ledger.JobRun``): execute the plan, then succeed the job.

    The study's job stores no ``Result`` row (its outputs live in the study record); ``finish_minimum`` and
    ``finish_result`` do not apply, so completion uses the same ownership-guarded write (``JobRun.finish``).
    """
    params: StudyJob = run.request
    study_id = params.study_id
    runner_ = StudyRunner(study_id, run, runner=runner, on_step=on_step)
    summary = runner_.execute()
    run.partial["summary"] = summary
    run.finish(lambda _session: study_id)
    return summary


@job_task("study")
def study(run: JobRun) -> None:
    """Run a study job (docs/method.md §§5-8 as one protocol): train, local energy, distances, paths, one-bend."""
    run_study_job(run)


def run_study(job_id: str, worker: str) -> str:
    """Claim a study's job and run its plan in this process (``toroid study run``); returns the outcome."""
    return run_job("study", job_id, worker)
