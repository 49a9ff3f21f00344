"""The Celery task of a study (backend/studies.py): one job that runs the paper's whole protocol.

The task claims the study's job like every other task (``toroid.worker.tasks._execute``: claim, heartbeat, failure
handling) and executes the study's plan inline: each step's job runs through its own task's code in this process,
so a single worker of concurrency 1 completes a study without waiting on itself. A study whose worker died is
re-enqueued by ``toroid.store.ledger.recover_jobs`` and resumes after the last finished step.
"""

from __future__ import annotations

from toroid.store.celery_app import celery_app
from toroid.worker.tasks import _execute


def _compute(run) -> None:
    """Execute the study's plan (toroid.backend.studies.run_study_job), skipping every step finished before."""
    from toroid.backend.studies import run_study_job

    run_study_job(run)


@celery_app.task(name="toroid.study", bind=True)
def study(self, job_id: str) -> str:
    """Run a study job (docs/method.md §5-8 as one protocol): train, local energy, distances, paths, one-bend."""
    return _execute(self, job_id, _compute)
