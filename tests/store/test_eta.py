"""Queue positions and ETAs (store/eta.py, docs/operations.md "Queue position, ETA, duration") on a real SQLite
ledger: the fit of a kind's run time from its finished jobs, its refusal to extrapolate far past what it saw, and
the list schedule of one queue's queued jobs over its workers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from toroid.store import db
from toroid.store.eta import DEFAULT_RATES, EXTRAPOLATION, _cache, _fit_cache, _schedule, annotate, estimated_run_s
from toroid.store.models import Job, new_id, utcnow
from toroid.store.settings import get_settings


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("TOROID_HOME", str(tmp_path))
    monkeypatch.setenv("TOROID_DATABASE_URL", f"sqlite:///{tmp_path / 'toroid.db'}")
    monkeypatch.setenv("TOROID_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens: one worker per queue
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    _cache.clear()
    _fit_cache.clear()
    db.init_db()
    with db.new_session() as opened:
        yield opened
    db.get_engine().dispose()
    for cached in (get_settings, db.get_engine, db._session_factory):
        cached.cache_clear()
    _cache.clear()
    _fit_cache.clear()


def job(session, kind: str, state: str, cost: float | None, *, ran_s: float | None = None, ago_s: float = 0.0,
        progress: float = 0.0, queue: str = "gpu") -> Job:
    now = utcnow()
    created = now - timedelta(seconds=ago_s + (ran_s or 0.0) + 1)  # started a second after, ago_s before now
    started = created + timedelta(seconds=1) if state in ("running", "succeeded") else None
    finished = started + timedelta(seconds=ran_s) if state == "succeeded" and ran_s is not None else None
    row = Job(id=new_id(), kind=kind, state=state, cost=cost, queue=queue, progress=progress, params={},
              created_at=created, started_at=started, finished_at=finished, message="", partial={})
    session.add(row)
    session.commit()
    return row


def test_the_fit_follows_the_large_jobs_and_never_extrapolates_far(session):
    # training that costs 1e9 takes 2 s, 1e10 takes 11 s (1 s to load, then 1e-9 s per unit): a + b x cost
    for cost, ran in ((1e9, 2.0), (1e9, 2.0), (1e10, 11.0), (1e10, 11.0)):
        job(session, "train", "succeeded", cost, ran_s=ran)
    near = job(session, "train", "queued", 5e10)
    far = job(session, "train", "queued", EXTRAPOLATION * 1e10 * 100)
    records = {r["id"]: r for r in annotate(session, [near, far])}
    assert records[near.id]["estimated_s"] == pytest.approx(2.0 + (9 + 9 + 0 + 0) / 2.2e10 * 5e10, rel=1e-6)
    # beyond ten times the largest cost seen, the default rate of store/cost.py stands in
    assert records[far.id]["estimated_s"] == pytest.approx(1.0 + far.cost / DEFAULT_RATES["train"], rel=1e-6)


def test_an_estimate_changes_when_a_job_finishes_and_only_then(session):
    """The fit is kept while the ledger's finished jobs are the same, and redone as soon as one more finishes: a
    job list polled twice with nothing finished in between answers the same (its ETag stays, docs/api.md)."""
    job(session, "path", "succeeded", 1e9, ran_s=2.0)
    queued = job(session, "path", "queued", 1e9)
    first = annotate(session, [queued])[0]["estimated_s"]
    assert first == pytest.approx(2.0)
    assert annotate(session, [queued])[0]["estimated_s"] == first
    job(session, "path", "succeeded", 1e9, ran_s=1.0)  # read at once, not after a cache's lifetime
    assert annotate(session, [queued])[0]["estimated_s"] == pytest.approx(1.5)  # a = 1 s, b = 1 s / 2e9
    job(session, "path", "failed", 1e9)  # a failure is not in the fit: nothing changes
    assert annotate(session, [queued])[0]["estimated_s"] == pytest.approx(1.5)


def test_queued_jobs_wait_for_those_ahead_in_their_queue_only(session):
    for _ in range(3):
        job(session, "path", "succeeded", 1e9, ran_s=3.0, queue="interactive")
    running = job(session, "path", "running", 1e9, progress=0.5, ago_s=4.0, queue="interactive")
    first = job(session, "path", "queued", 1e9, queue="interactive")
    second = job(session, "path", "queued", 1e9, queue="interactive")
    other = job(session, "train", "queued", 1e12, queue="gpu")
    records = {r["id"]: r for r in annotate(session, [running, first, second, other])}
    assert records[running.id]["queue_position"] is None and records[running.id]["eta_s"] > 0
    assert [records[j.id]["queue_position"] for j in (first, second, other)] == [1, 2, 1]
    assert records[second.id]["eta_s"] == pytest.approx(records[first.id]["eta_s"] + 3.0, abs=0.01)
    assert records[first.id]["eta_s"] == pytest.approx(records[running.id]["eta_s"] + 3.0, abs=0.01)
    assert records[first.id]["wait_s"] >= 0 and records[first.id]["duration_s"] is None
    finished = job(session, "path", "succeeded", 1e9, ran_s=4.0, queue="interactive")
    record = annotate(session, [finished])[0]
    assert record["duration_s"] == pytest.approx(4.0) and record["eta_s"] is None


def test_two_workers_share_a_queue_and_unknown_lengths_make_later_etas_unknown(session):
    jobs = [job(session, "torus", "queued", 4e10, queue="interactive") for _ in range(4)]
    fits = {"torus": (1.0, 1e-10, 5.0, 1e11)}  # 1 s + 4 s each
    now = utcnow()
    two = _schedule(jobs, 2, fits, now)
    assert [two[j.id] for j in jobs] == [(1, 5.0), (2, 5.0), (3, 10.0), (4, 10.0)]
    jobs[1].cost = None
    fits["torus"] = (1.0, 1e-10, None, 1e11)  # no median either: the second job's length is unknown
    one = _schedule(jobs, 1, fits, now)
    assert one[jobs[0].id] == (1, 5.0) and [one[j.id] for j in jobs[1:]] == [(2, None), (3, None), (4, None)]
    assert estimated_run_s(jobs[1], fits) is None
