"""The Celery application: broker and result channel on Redis, reliable delivery settings.

Start a worker with ``toroid worker`` (or ``celery -A toroid.store.celery_app worker -Q cpu,gpu``).

Delivery is deliberate (see docs/operations.md): ``acks_late`` + ``reject_on_worker_lost`` so a task whose process
dies goes back to the queue; one task at a time per process (prefetch 1); the Redis visibility timeout is
``TOROID_JOB_TIMEOUT_S``. A worker whose main process is SIGKILLed loses nothing either: job records carry a
heartbeat and a starting worker re-enqueues jobs whose heartbeat went stale (worker/tasks.py).
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from toroid.store.settings import get_settings


def make_celery() -> Celery:
    settings = get_settings()
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("toroid", broker=broker, backend=None, include=["toroid.worker.tasks", "toroid.worker.study"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        # Each queue with its own direct exchange and routing key: with a shared default exchange, kombu's Redis
        # transport would deliver a message for "gpu" to every queue bound to that exchange.
        task_queues=(
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
    )
    return app


celery_app = make_celery()
app = celery_app
