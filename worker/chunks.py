"""Long analyses split by point ranges into chunks that any worker takes, merged in order (docs/operations.md,
"Chunks").

A path (``linear``, ``linear_aligned``, ``geodesic``), section or torus job on a batch queue whose estimated cost
(store/cost.py) is above ``TOROID_CHUNK_COST`` does not compute its points itself. Its worker:

1. prepares the inputs once (normalizes and aligns them, as the computation would) and keeps the prepared networks
   in the artifact folder ``chunks/<job id>/``, so that every chunk computes in one frame whichever host runs it;
2. computes what every chunk shares (a path's length, the errors at the minima of a grid, the alignments) by calling
   the core with no points;
3. creates one job per range of points (``ChunkSpec``: a path's points ``start..stop-1``; a grid's cells at those
   positions of their coarse-to-fine visit order) on the same kind of batch queue, and *parks* (``JobRun.park``, as a
   study does: still ``running``, no worker).

Each chunk is an ordinary job of the same kind with the same parameters plus ``chunk``; it records its points in
its own ``partial`` and stores no result. When one ends, the process that ran it continues the parent (the
``AFTER_JOB`` hook of ``toroid.worker.tasks.run_job``): it merges the chunks done so far, in order, into the
parent's ``partial`` in the form a running job of that kind reports (path points; the grid so far), so the
dashboard fills in as chunks arrive, and parks again, or, with every chunk done, stores the one result under the
parent's key and removes the prepared networks. A failed or cancelled chunk fails the parent with its message;
cancelling the parent cancels its chunks; ``recover_jobs`` continues a parent whose continuation a dying process
missed, and a restarted parent merges the chunks it has instead of splitting again (``KEPT_PARTIAL``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from toroid.store.db import new_session
from toroid.store.ledger import (
    INTERACTIVE_QUEUE,
    JobCancelled,
    JobRun,
    JobSuperseded,
    cancel_waited,
    canonical_hash,
    create_job,
    parked_waiting_for,
    publish_job,
)
from toroid.store.models import ACTIVE_STATES, Job, utcnow
from toroid.store.params import job_params
from toroid.store.settings import get_settings
from toroid.worker.tasks import AFTER_JOB, _inputs, continue_parked, error_message

log = logging.getLogger("toroid.chunks")

__all__ = ["CHUNKED_KINDS", "MAX_CHUNKS", "chunk_ranges", "continue_chunked", "run_chunk", "split_or_merge"]

#: The kinds that split, and for paths the path kinds (a flip path averages random flip orders over the whole path;
#: a one-bend path retrains its bend first).
CHUNKED_KINDS = ("path", "section", "torus")
PATH_KINDS = ("linear", "linear_aligned", "geodesic")
#: At most this many chunks per job, however large: each costs a job row and a load of the data.
MAX_CHUNKS = 64
_SERIES = ("train_error", "test_error", "train_loss", "test_loss")


def units(kind: str, p: Any) -> int:
    """The points of a job: a path's points, a grid's cells."""
    return int(p.points) if kind == "path" else int(p.resolution) ** 2


def chunk_ranges(kind: str, p: Any, cost: float | None, queue: str | None, chunk_cost: float | None = None
                 ) -> list[tuple[int, int]]:
    """The point ranges ``[(start, stop), ...]`` a job of ``kind`` splits into: ceil(cost / ``chunk_cost``)
    (default ``TOROID_CHUNK_COST``) equal ranges, at most ``MAX_CHUNKS`` and one point each; empty when it runs whole
    (cheap enough, on the interactive queue, a chunk itself, or a kind that cannot split)."""
    chunk_cost = float(get_settings().chunk_cost if chunk_cost is None else chunk_cost)
    if kind not in CHUNKED_KINDS or chunk_cost <= 0 or not cost or queue == INTERACTIVE_QUEUE:
        return []
    if getattr(p, "chunk", None) is not None or (kind == "path" and p.kind not in PATH_KINDS):
        return []
    n = units(kind, p)
    count = min(math.ceil(float(cost) / chunk_cost), n, MAX_CHUNKS)
    if count < 2:
        return []
    edges = [round(k * n / count) for k in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _folder(parent: str) -> Path:
    return get_settings().artifacts_dir / "chunks" / parent


# --------------------------------------------------------------------------------------------- the core, per kind
def _prepare(kind: str, p: Any, models: list) -> tuple[list, dict[str, Any] | None, bool]:
    """The networks every chunk computes on, their alignment record, and whether they differ from the inputs."""
    if kind == "path":
        from toroid.worker.landscape.paths import aligned_endpoints

        pa, pb, alignment = aligned_endpoints(models[0], models[1], p.kind)
        return [pa, pb], alignment, p.kind != "linear"
    if kind == "torus":
        from toroid.worker.landscape.torus import prepare_torus

        a, b, c, alignment = prepare_torus(*models[:2], models[2] if len(models) == 3 else None)
        return [m for m in (a, b, c) if m is not None], alignment, True
    if p.space == "normalized":
        from toroid.worker.landscape.paths import prepare_section

        w1, w2, w3, alignment = prepare_section(*models)
        return [w1, w2, w3], alignment, True
    return list(models), None, False


def _compute(kind: str, p: Any, models: list, dataset: Any, positions: Any, progress: Any = None) -> dict[str, Any]:
    """The core on prepared networks, only the points at ``positions`` (empty: what every chunk shares)."""
    if kind == "path":
        from toroid.worker.landscape import path_profile

        return path_profile(models[0], models[1], dataset, kind=p.kind, points=p.points, bn=p.bn, prepared=True,
                            indices=positions, progress=progress).to_dict()
    if kind == "torus":
        from toroid.worker.landscape import torus_slice

        c = models[2] if len(models) == 3 else None
        return torus_slice(models[0], models[1], dataset, c=c, resolution=p.resolution, prepared=True,
                           cells=positions, progress=progress).to_dict()
    from toroid.worker.landscape import section_2d

    return section_2d(*models, dataset, space=p.space, resolution=p.resolution, margin=p.margin, prepared=True,
                      cells=positions, progress=progress).to_dict()


def _grid_progress(run: JobRun):
    """A chunk of a grid keeps its cells as series (``i``, ``j``, errors), not the grid so far."""

    def report(fraction: float, info: dict[str, Any]) -> None:
        cell = info.get("cell") or {}
        run.progress(fraction, {k: cell.get(k) for k in ("i", "j", "train_error", "test_error")} if cell else {})

    return report


# --------------------------------------------------------------------------------------------- a chunk
def run_chunk(run: JobRun, kind: str) -> None:
    """The body of a chunk job: its points on the parent's prepared networks, into its own ``partial``."""
    p = run.request
    spec = p.chunk
    minima, dataset, models = _inputs(run, p.minimum_ids)
    if spec.prepared:
        from toroid.store.artifacts import load_state_dict_bytes

        for k, model in enumerate(models):
            try:
                state = load_state_dict_bytes((_folder(spec.parent) / f"{k}.safetensors").read_bytes())
            except FileNotFoundError:
                raise ValueError(f"the prepared networks of {kind} job {spec.parent} are gone (it ended or was "
                                 "cancelled): nothing to compute") from None
            model.load_state_dict(state)
    run.say(f"chunk {spec.index + 1}/{spec.count} of {kind} job {spec.parent}: points {spec.start}-{spec.stop - 1}")
    run.progress(0.0, {})
    progress = run.progress if kind == "path" else _grid_progress(run)
    _compute(kind, p, models, dataset, range(spec.start, spec.stop), progress)
    run.finish(lambda session: run.job_id)


# --------------------------------------------------------------------------------------------- the parent
def split_or_merge(run: JobRun, kind: str) -> bool:
    """First thing the path, section and torus tasks do: True when this job is chunked and this call handled it
    (split it, or, restarted, merged the chunks it has); False when it computes whole."""
    if run.request.chunk is not None:
        run_chunk(run, kind)
        return True
    ranges = chunk_ranges(kind, run.request, run.cost, run.queue) if run.published else []
    if not ranges and not run.partial.get("chunks"):
        return False
    try:
        if not run.partial.get("chunks"):
            _split(run, kind, ranges)
        elif _round(run, kind) == "again":  # restarted: merge what its chunks have done
            continue_chunked(run.job_id)
    except (JobCancelled, JobSuperseded):
        raise
    except Exception as exc:
        _abandon(run, error_message(exc))
        raise
    return True


def _split(run: JobRun, kind: str, ranges: list[tuple[int, int]]) -> None:
    from toroid.store.artifacts import state_dict_bytes, write_atomically

    p = run.request
    minima, dataset, models = _inputs(run, p.minimum_ids)
    run.say(f"preparing {len(ranges)} chunks")
    run.progress(0.0, {})
    prepared, alignment, stored = _prepare(kind, p, models)
    folder = _folder(run.job_id)
    if stored:
        for k, model in enumerate(prepared):
            write_atomically(folder / f"{k}.safetensors", state_dict_bytes(model.state_dict()), folder / "tmp")
    base = _compute(kind, p, prepared, dataset, [])
    if alignment:
        base.setdefault("extra", {})["alignment"] = alignment
    for name in ("train_error", "test_error", "train_loss", "test_loss"):
        base.pop(name, None)  # rebuilt from the chunks' points
    ids = []
    params = dict(run.params)
    with new_session() as session:
        for index, (start, stop) in enumerate(ranges):
            spec = {"parent": run.job_id, "index": index, "count": len(ranges), "start": start, "stop": stop,
                    "prepared": stored}
            chunk = job_params(kind, {**params, "chunk": spec})
            key = canonical_hash({"chunk_of": run.key or run.job_id, "start": start, "stop": stop})
            share = (run.cost or 0.0) * (stop - start) / units(kind, p)
            job = create_job(session, chunk, key=key, owner=run.owner, cost=share, batch=True, publish=False,
                             message=f"queued: chunk {index + 1}/{len(ranges)} of {kind} job {run.job_id}")
            ids.append(job.id)
    run.partial.update(chunks=ids, created=ids, chunked={"ranges": [list(r) for r in ranges], "base": base})
    _show(run, kind, _merged(kind, p, base, []), 0, units(kind, p))
    run.say(f"0 of {len(ids)} chunks done (0 of {units(kind, p)} points)")
    # parked before any chunk is published, so no chunk ends before the parent lists it; a chunk whose message is
    # lost (this process dies in between) is published by recover_jobs like any queued job without one
    parked = run.park(ids)
    with new_session() as session:
        for job in session.scalars(select(Job).where(Job.id.in_(ids), Job.state == "queued",
                                                     Job.task_id.is_(None))).all():
            if parked:
                publish_job(session, job)
            else:  # cancelled while it split: its chunks go with it
                job.state, job.finished_at = "cancelled", utcnow()
                job.message = f"cancelled with {kind} job {run.job_id}"
        session.commit()


def _chunk_points(kind: str, partial: dict[str, Any]) -> list[dict[str, Any]]:
    """A chunk's points from its ``partial``: path rows (``index``, errors, losses) or grid cells (``i``, ``j``)."""
    keys = ("index", *_SERIES) if kind == "path" else ("i", "j", "train_error", "test_error")
    columns = [partial.get(k) or [] for k in keys]
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=False)]


def _merged(kind: str, p: Any, base: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    """The result so far: ``base`` with the points of the chunks done (the others ``NaN``, ``null`` in JSON)."""
    from toroid.worker.landscape.paths import barrier_of

    data = dict(base)
    if kind == "path":
        series = {name: [math.nan] * int(p.points) for name in _SERIES}
        for row in points:
            for name in _SERIES:
                series[name][int(row["index"])] = row[name] if row[name] is not None else math.nan
        data.update(series, barrier=barrier_of(series["train_error"]), test_barrier=barrier_of(series["test_error"]))
        return data
    r = int(p.resolution)
    train = [[math.nan] * r for _ in range(r)]
    test = [[math.nan] * r for _ in range(r)]
    for cell in points:
        i, j = int(cell["i"]), int(cell["j"])
        train[j][i] = cell["train_error"] if cell["train_error"] is not None else math.nan
        test[j][i] = cell["test_error"] if cell["test_error"] is not None else math.nan
    data.update(train_error=train, test_error=test)
    return data


def _show(run: JobRun, kind: str, data: dict[str, Any], done: int, total: int) -> None:
    """The merged points in the form a running job of ``kind`` reports them (what the dashboard draws live)."""
    from toroid.store.ledger import clean_json

    keep = {k: run.partial[k] for k in ("chunks", "created", "chunked") if k in run.partial}
    if kind == "path":
        shown = [i for i, v in enumerate(data["train_error"]) if not math.isnan(v)]
        live = {"index": shown, "x": [data["x"][i] for i in shown], "distance": [data["distance"][i] for i in shown]}
        live.update({name: [data[name][i] for i in shown] for name in _SERIES})
    else:
        live = {"grid": clean_json({**data, "cells": done, "total": total, "stride": None})}
    run.partial = {**keep, **live}
    run.fraction = min(1.0, done / max(total, 1))


def _round(run: JobRun, kind: str) -> str:
    """Merge what the chunks computed: finish the parent, or park it until a chunk ends. Returns succeeded,
    waiting, or again (a chunk ended while it parked and nobody continued it); raises ``ValueError`` naming a chunk
    that failed or was cancelled."""
    p = run.request
    ids = [str(i) for i in run.partial["chunks"]]
    chunked = run.partial.get("chunked") or {}
    with new_session() as session:
        rows = {job.id: (job.state, job.error, dict(job.partial or {}))
                for job in session.scalars(select(Job).where(Job.id.in_(ids))).all()}
    for index, job_id in enumerate(ids):
        state, error, _ = rows.get(job_id, ("deleted", None, None))
        if state not in (*ACTIVE_STATES, "succeeded"):
            raise ValueError(f"chunk {index + 1}/{len(ids)} (job {job_id}) {state}" + (f": {error}" if error else ""))
    points = [point for job_id in ids if rows[job_id][0] == "succeeded"
              for point in _chunk_points(kind, rows[job_id][2])]
    data = _merged(kind, p, chunked["base"], points)
    done = sum(1 for job_id in ids if rows[job_id][0] == "succeeded")
    if done == len(ids):
        run.say(f"merged {len(ids)} chunks")
        run.finish_result(data, p.minimum_ids, run.key)
        shutil.rmtree(_folder(run.job_id), ignore_errors=True)
        return "succeeded"
    _show(run, kind, data, len(points), units(kind, p))
    run.say(f"{done} of {len(ids)} chunks done ({len(points)} of {units(kind, p)} points)")
    waiting = [job_id for job_id in ids if rows[job_id][0] in ACTIVE_STATES]
    if not run.park(waiting):
        return "waiting"
    with new_session() as session:  # a chunk that ended between the look and the park found the parent held
        ended = session.scalar(select(Job.id).where(Job.id.in_(waiting), Job.state.not_in(ACTIVE_STATES)).limit(1))
    return "again" if ended else "waiting"


def _abandon(run: JobRun, error: str) -> None:
    """Fail the parent with ``error`` (when it is still ours), cancel its chunks that have not ended and remove
    its prepared networks."""
    run.fail(error)
    with new_session() as session:
        job = session.get(Job, run.job_id)
        if job is not None and job.state == "failed":
            job.partial = {**(job.partial or {}), "waiting_on": list(run.partial.get("chunks") or [])}
            cancel_waited(session, job)
    shutil.rmtree(_folder(run.job_id), ignore_errors=True)


def continue_chunked(job_id: str, worker: str | None = None) -> str:
    """Take a parked chunked job and merge its chunks here until it finishes or parks again (``continue_parked``)."""
    return continue_parked(job_id, worker or f"chunk merge pid {os.getpid()}",
                           lambda run: _round(run, run.kind), _abandon)


def _continue_waiting(job_id: str) -> None:
    """``AFTER_JOB`` hook: the chunked jobs parked on ``job_id`` merge it in this process; a chunk whose parent
    ended without it (cancelled) takes the parent's prepared networks away."""
    with new_session() as session:
        parked = parked_waiting_for(session, job_id, kinds=CHUNKED_KINDS)
        job = session.get(Job, job_id)
        parent = ((job.params or {}).get("chunk") or {}).get("parent") if job is not None else None
        ended = parent is not None and session.scalar(select(Job.state).where(Job.id == parent)) not in ACTIVE_STATES
        worker = job.worker if job is not None else None  # this process, as the job records it
    for waiting in parked:
        continue_chunked(waiting, worker)
    if ended:
        shutil.rmtree(_folder(str(parent)), ignore_errors=True)


AFTER_JOB.append(_continue_waiting)
