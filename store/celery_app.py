"""The Celery application: broker and result channel on Redis, reliable delivery settings.

Start a worker with ``toroid worker`` (or ``celery -A toroid.store.celery_app worker -Q cpu,gpu``).

Delivery is deliberate (see docs/operations.md): ``acks_late`` + ``reject_on_worker_lost`` so a task whose process
dies goes back to the queue; one task at a time per process (prefetch 1); the Redis visibility timeout is
``TOROID_JOB_TIMEOUT_S``. A worker whose main process is SIGKILLed loses nothing either: job records carry a
heartbeat and a starting worker re-enqueues jobs whose heartbeat went stale (worker/tasks.py).

Time limits (docs/operations.md, "Limits"): every job task has a soft limit, ``TOROID_JOB_SOFT_LIMIT_S`` for
training and studies and ``TOROID_ANALYSIS_SOFT_LIMIT_S`` for analyses (``task_annotations``). At the soft limit
Celery raises ``SoftTimeLimitExceeded`` inside the task and the job is marked failed with ``time_limit_message()``;
``TOROID_JOB_HARD_LIMIT_GRACE_S`` later the hard limit kills the process, and ``_on_hard_time_limit`` marks the job
failed so that it is not re-enqueued as if its worker had died.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.exceptions import TimeLimitExceeded
from kombu import Exchange, Queue

from toroid.store.settings import get_settings

#: The time limit of each job task: the setting that bounds it (ping has none).
TIME_LIMIT_SETTINGS: dict[str, str] = {
    "toroid.train": "job_soft_limit_s",
    "toroid.study": "job_soft_limit_s",
    "toroid.evaluate": "analysis_soft_limit_s",
    "toroid.flatness": "analysis_soft_limit_s",
    "toroid.sharpness": "analysis_soft_limit_s",
    "toroid.path": "analysis_soft_limit_s",
    "toroid.distances": "analysis_soft_limit_s",
    "toroid.section": "analysis_soft_limit_s",
    "toroid.torus": "analysis_soft_limit_s",
}


def soft_limit_s(task_name: str) -> int:
    """The soft time limit of a task in seconds (0: none)."""
    setting = TIME_LIMIT_SETTINGS.get(task_name)
    return int(getattr(get_settings(), setting)) if setting else 0


def time_limits() -> dict[str, dict[str, int]]:
    """``task_annotations``: soft and hard time limits of each job task, from the settings (0 leaves it unlimited)."""
    grace = get_settings().job_hard_limit_grace_s
    return {name: {"soft_time_limit": soft_limit_s(name), "time_limit": soft_limit_s(name) + grace}
            for name in TIME_LIMIT_SETTINGS if soft_limit_s(name) > 0}


def time_limit_message(task_name: str | None = None) -> str:
    """The error of a job stopped by its soft time limit; ``task_name`` defaults to the running Celery task (for a
    study's steps that is the study: its limit is the one that struck)."""
    if task_name is None:
        from celery import current_task

        task_name = getattr(current_task, "name", None) or ""
    setting = TIME_LIMIT_SETTINGS.get(task_name)
    if setting is None:
        return "stopped by a time limit of the worker"
    return (f"stopped after the time limit of {soft_limit_s(task_name)} s (TOROID_{setting.upper()}): "
            "ask for less work, or have the server's administrator raise the limit")


def make_celery() -> Celery:
    settings = get_settings()
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("toroid", broker=broker, backend=None,
                 include=["toroid.worker.tasks", "toroid.worker.study", "toroid.worker.chunks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        # Each queue with its own direct exchange and routing key: with a shared default exchange, kombu's Redis
        # transport would deliver a message for "gpu" to every queue bound to that exchange.
        task_queues=(
            # the analyses a click starts, served by workers of their own (toroid.store.ledger.INTERACTIVE_QUEUE)
            Queue("interactive", Exchange("interactive", type="direct"), routing_key="interactive"),
            Queue("cpu", Exchange("cpu", type="direct"), routing_key="cpu"),
            Queue("gpu", Exchange("gpu", type="direct"), routing_key="gpu"),
        ),
        task_default_exchange="cpu",
        task_default_routing_key="cpu",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.job_timeout_s},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_annotations=time_limits(),
    )
    from toroid.worker.landscape.data import set_allow_downloads, set_cache_limit_mb

    set_cache_limit_mb(settings.dataset_cache_mb)
    set_allow_downloads(settings.allow_downloads)  # TOROID_ALLOW_DOWNLOADS: stored options leave it to the process
    return app


@signals.task_failure.connect
def _on_hard_time_limit(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                        args: Any = None, **_: Any) -> None:
    """A job task killed by its hard time limit: mark its job failed (it would look like a dead worker's job and be
    re-enqueued). Runs in the worker's main process; a job that already finished is left alone."""
    if not isinstance(exception, TimeLimitExceeded) or not args:
        return
    name = getattr(sender, "name", "") or ""
    if name not in TIME_LIMIT_SETTINGS:
        return
    from sqlalchemy import update

    from toroid.store.db import new_session
    from toroid.store.models import Job, utcnow

    grace = get_settings().job_hard_limit_grace_s
    error = (f"{time_limit_message(name)}; killed {grace} s later (TOROID_JOB_HARD_LIMIT_GRACE_S) because it did not "
             "stop by itself")
    with new_session() as session:
        session.execute(update(Job).where(Job.id == str(args[0]), Job.state == "running").values(
            state="failed", error=error, message="failed", finished_at=utcnow()))
        session.commit()


celery_app = make_celery()
app = celery_app
