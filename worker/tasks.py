"""Celery tasks: thin glue between job records, the artifact store and the science core."""

from __future__ import annotations

from worker.celery_app import celery_app


@celery_app.task(name="toroid.ping")
def ping() -> dict:
    """Answer with the device this worker computes on (used by /api/health)."""
    from worker.landscape.device import default_device

    return {"device": str(default_device())}
