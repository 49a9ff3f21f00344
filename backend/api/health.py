"""GET /api/health: is each real component alive (Redis ping, a database query, a Celery worker ping)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from toroid.store.db import get_engine, ping_database
from toroid.store.settings import get_settings

router = APIRouter(tags=["health"])


def _check(fn) -> dict:
    started = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:  # a health check reports failures instead of raising them
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out = {"ok": True, "latency_ms": round(1000 * (time.perf_counter() - started), 1)}
    if detail:
        out.update(detail)
    return out


def _redis() -> dict:
    import redis

    url = get_settings().redis_url
    if not url:
        raise RuntimeError("TOROID_REDIS_URL is not set (start everything with `toroid up`)")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"url": url}


def _workers() -> dict:
    from toroid.store.celery_app import celery_app

    replies = celery_app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 1 s (start one with `toroid worker`)")
    return {"count": len(replies), "names": sorted(name for reply in replies for name in reply)}


def _database() -> dict:
    ping_database()
    return {"dialect": get_engine().dialect.name}


@router.get("/health", summary="Status of Redis, the database and the workers")
def health() -> dict:
    checks = {"redis": _check(_redis), "database": _check(_database)}
    checks["workers"] = _check(_workers) if checks["redis"]["ok"] else {"ok": False, "error": "redis is down"}
    return {"ok": all(c["ok"] for c in checks.values()), **checks}
