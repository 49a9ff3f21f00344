"""GET /api/health: is each real component alive (a Redis ping, a database query, the workers' heartbeats).

200 when Redis, the database and at least one worker are alive, 503 otherwise (the body says which part is down).
Fast even when a part is down: the workers are not pinged over the broker (a ping waits out its whole timeout), each
worker's main process writes a heartbeat key ``toroid:worker:<hostname>`` into Redis with a short time to live
(``toroid.worker.tasks``), and health counts those keys. The answer is public, so it holds no URL, no host and no
error text from a driver (those go to the server's log); a result is reused for ``CACHE_S`` seconds. ``workers.gpus``
maps each worker to the GPU its heartbeat names (its ``CUDA_VISIBLE_DEVICES``; docs/operations.md, "One worker per
GPU").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from toroid.store.db import get_engine, ping_database
from toroid.store.settings import get_settings

router = APIRouter(tags=["health"])
log = logging.getLogger("toroid.health")

#: The keys the workers' heartbeats write (``toroid.worker.tasks.WORKER_KEY_PREFIX``).
WORKER_KEYS = "toroid:worker:*"
#: How long one answer is reused: probes may poll as often as they like without loading Redis or the database.
CACHE_S = 1.0
#: Connect and read timeouts of the Redis check (loopback answers in well under a millisecond).
REDIS_TIMEOUT_S = 0.5

_lock = threading.Lock()
_cached: dict[str, Any] = {}
_clients: dict[str, Any] = {}


class ComponentDown(RuntimeError):
    """A component is down; the message is safe to publish (no URL, no host)."""


def _check(name: str, fn) -> dict:
    started = time.perf_counter()
    try:
        detail = fn()
    except ComponentDown as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a health check reports failures instead of raising them; details go to the log only
        log.warning("health: %s is down: %s: %s", name, type(exc).__name__, exc)
        return {"ok": False, "error": f"{name} is unreachable ({type(exc).__name__}); see the API server's log"}
    out = {"ok": True, "latency_ms": round(1000 * (time.perf_counter() - started), 1)}
    if detail:
        out.update(detail)
    return out


def _client():
    import redis

    url = get_settings().redis_url
    if not url:
        raise ComponentDown("TOROID_REDIS_URL is not set (start everything with `toroid up`)")
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
    return client


def _redis() -> dict:
    _client().ping()
    return {}


def _workers() -> dict:
    client = _client()
    prefix = WORKER_KEYS[:-1]
    keys = sorted(set(client.scan_iter(WORKER_KEYS, count=100)))
    names = [key.decode("utf-8", "replace")[len(prefix):] for key in keys]
    if not names:
        raise ComponentDown("no worker is alive: none wrote its heartbeat lately (start one with `toroid worker`)")
    return {"count": len(names), "names": names, "gpus": _gpus(names, client.mget(keys))}


def _gpus(names: list[str], values: list[bytes | None]) -> dict[str, str | None]:
    """Each worker's GPU, as its heartbeat names it: its CUDA_VISIBLE_DEVICES (``toroid worker --gpus`` gives each
    process one GPU), ``None`` when unset (the worker uses every GPU it sees, or the CPU) or unknown."""
    gpus: dict[str, str | None] = {}
    for name, raw in zip(names, values, strict=True):
        try:
            gpu = json.loads(raw).get("gpu") if raw else None
        except (ValueError, AttributeError):  # a worker of an older version: its value is its pid
            gpu = None
        gpus[name] = gpu if isinstance(gpu, str) else None
    return gpus


def _database() -> dict:
    ping_database()
    return {"dialect": get_engine().dialect.name}


def status() -> dict:
    """The health record (reused for ``CACHE_S`` seconds)."""
    with _lock:
        if _cached and time.monotonic() - _cached["at"] < CACHE_S:
            return _cached["body"]
        checks = {"redis": _check("redis", _redis), "database": _check("database", _database)}
        checks["workers"] = (_check("redis", _workers) if checks["redis"]["ok"]
                             else {"ok": False, "error": "redis is down, so no worker can be reached"})
        body = {"ok": all(c["ok"] for c in checks.values()), **checks}
        if not body["ok"]:
            body["detail"] = "; ".join(f"{name}: {c['error']}" for name, c in checks.items() if not c["ok"])
        _cached.update(at=time.monotonic(), body=body)
        return body


@router.get("/health", summary="Status of Redis, the database and the workers (503 when one is down)",
            responses={503: {"description": "Redis, the database or every worker is down; `detail` says which"}})
def health() -> JSONResponse:
    body = status()
    return JSONResponse(status_code=200 if body["ok"] else 503, content=body)
