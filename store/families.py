"""Families: minima that share one parameter space (the same network structure, or without a recorded structure the
same architecture and config; the same dataset and options), the only ones that can be compared, aligned and drawn
on one map (``Minimum.family``).

When a minimum joins a family (an upload, a finished training), ``queue_family_distances`` asks for the family's
distance matrix right away, through the ledger like any request, so the map is laid out by distance without a
browser ever having to ask for it: opening the dashboard changes nothing (docs/operations.md, "Running a shared
server"). The request is the one the dashboard looks up (``GET /api/analyses/distances``): the family's minimum ids
in sorted order, at most ``MAX_MAP_MINIMA`` of them, aligned pair by pair up to ``TOROID_MAP_PAIRWISE_MAX`` minima
and to one common reference beyond (:func:`family_alignment`, docs/method.md §5, "Many minima"). The family's job
is the server's own: it does not go through the limits of a user's request (``MAX_PAIRWISE_MINIMA``).
"""

from __future__ import annotations

import math

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.store.cost import estimate, minimum_inputs
from toroid.store.db import new_session
from toroid.store.errors import Unavailable
from toroid.store.ledger import create_job, result_key
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Result
from toroid.store.params import MAX_DISTANCES_MINIMA, DistancesJob, key_params
from toroid.store.settings import get_settings

#: The largest family whose whole distance matrix is one job (and one map: toroid/mds.py lays out up to 2,000)
MAX_MAP_MINIMA = MAX_DISTANCES_MINIMA


def family_alignment(count: int) -> str:
    """How the map of a family of ``count`` minima aligns them: ``pairwise`` (every pair, the paper's way) up to
    ``TOROID_MAP_PAIRWISE_MAX`` minima, ``reference`` (each minimum once, to the family's oldest) beyond."""
    return "pairwise" if count <= get_settings().map_pairwise_max else "reference"


def family_request(family: list[Minimum]) -> DistancesJob:
    """The distances job of a family's map: its minimum ids in sorted order, aligned as :func:`family_alignment`
    says (the request ``GET /api/map`` and the dashboard look up)."""
    ids = sorted(m.id for m in family)
    return DistancesJob(minimum_ids=ids, alignment=family_alignment(len(ids)))


def reference_of(minima: list[Minimum]) -> Minimum:
    """The reference of a family's common frame: its oldest minimum (then the smallest id), so the reference, and
    with it every minimum's alignment computed before, stays as minima join (docs/method.md §5, "Many minima")."""
    return min(minima, key=lambda m: (m.created_at, m.id))


def family_of(session: Session, minimum: Minimum) -> list[Minimum]:
    """Every minimum in ``minimum``'s parameter space, in id order (the order the map's distance request uses)."""
    rows = session.scalars(select(Minimum).where(Minimum.dataset == minimum.dataset)).all()
    key = minimum.family()
    return sorted((m for m in rows if m.family() == key), key=lambda m: m.id)


def queue_family_distances(session: Session, minimum: Minimum) -> Job | None:
    """Ask for the distance matrix of ``minimum``'s family (2 to ``MAX_MAP_MINIMA`` minima) unless it is known or
    a distances job of the family is in flight; returns the new job, or None.

    One job at a time per family: minima that arrive meanwhile (a demo or a study trains several in a row) are
    caught up by the distances task itself, which calls this again when it finishes. So a family of n minima costs
    a few matrices, not n. A broker outage is not the caller's failure: the map waits for the next minimum.
    """
    family = family_of(session, minimum)
    if not 2 <= len(family) <= MAX_MAP_MINIMA:
        return None
    params = family_request(family)
    key = result_key("distances", family, key_params(params))
    if session.scalar(select(Result.id).where(Result.key == key).limit(1)) is not None:  # not its megabytes
        return None
    ids = {m.id for m in family}
    for job in session.scalars(select(Job).where(Job.kind == "distances", Job.state.in_(ACTIVE_STATES))):
        if ids & set((job.params or {}).get("minimum_ids") or []):
            return None
    cost = None
    if params.alignment == "pairwise":
        try:  # its estimate puts it on the interactive queue, beside the clicks (store/ledger.py)
            sizes = minimum_inputs(family)
            cost = estimate("distances", params, sizes["parameter_count"], sizes["n_train"], sizes["n_test"],
                            assignment=sizes["assignment"])
        except ValueError:
            cost = None
    # a large family's map (reference alignment) is background work: without an estimate it goes to the batch
    # ``cpu`` queue, so it neither waits behind a flood of upload evaluations on the interactive queue nor holds
    # the clicks up (docs/operations.md, "Queues"; docs/performance.md, "Map of hundreds")
    try:
        return create_job(session, params, key=key, message="queued: the map's distances", owner=minimum.owner,
                          cost=cost)
    except Unavailable:
        return None


def _matrix(rows: list) -> np.ndarray:
    """A stored matrix as float64, NaN where a value is missing or not a number."""
    try:
        return np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray([[v if isinstance(v, int | float) else math.nan for v in row] for row in rows],
                          dtype=np.float64)


def known_distances(minimum_ids: list[str], metrics: tuple[str, ...], alignment: str = "pairwise",
                    reference: str | None = None, limit: int = 50) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What earlier distances results of this code version already hold of the matrix of ``minimum_ids``: per
    metric an ``n x n`` float64 matrix and the boolean matrix of the known pairs ``(i, j)``, ``i < j``.

    Pairs keep their order (``alignment: "pairwise"``: the alignment of ``i`` onto ``j`` is not exactly that of
    ``j`` onto ``i``); with ``"reference"`` only results of the same reference checkpoint (``reference``, its
    sha256) count, in either order (a distance between two frames is symmetric). Results are read by how many of
    the minima they cover, most first, and only until every pair is known (usually the family's previous matrix
    alone): a minimum that joins a family costs its own row, not a new matrix (docs/operations.md, "Queues")."""
    from toroid.worker.landscape import CODE_VERSION

    n = len(minimum_ids)
    position = {mid: k for k, mid in enumerate(minimum_ids)}
    values = {m: np.zeros((n, n), dtype=np.float64) for m in metrics}
    known = np.zeros((n, n), dtype=bool)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    with new_session() as session:
        covers = session.execute(  # ids only: the matrices are read for the few results that are used
            select(Result.id, Result.minimum_ids).where(Result.kind == "distances", Result.code_version == CODE_VERSION)
            .order_by(Result.created_at.desc()).limit(limit)).all()
        ranked = sorted(((sum(mid in position for mid in (ids or [])), rid) for rid, ids in covers), reverse=True)
        for count, rid in ranked:
            if count < 2 or known[upper].all():
                break
            data = session.get(Result, rid).data or {}
            ids, matrices = data.get("ids") or [], data.get("matrices") or {}
            if data.get("alignment", "pairwise") != alignment or not all(m in matrices for m in metrics):
                continue
            if alignment == "reference" and (data.get("reference") or {}).get("sha256") != reference:
                continue
            old = np.asarray([a for a, mid in enumerate(ids) if mid in position], dtype=np.int64)
            new = np.asarray([position[ids[a]] for a in old], dtype=np.int64)
            if len(old) < 2:
                continue
            taken = {m: _matrix(matrices[m])[np.ix_(old, old)] for m in metrics}
            usable = np.isfinite(np.stack(list(taken.values()))).all(axis=0)
            if alignment == "pairwise":  # the old result's (a < b) pairs that keep their order here
                usable &= np.triu(np.ones_like(usable), 1) & (new[:, None] < new[None, :])
            else:
                usable &= new[:, None] != new[None, :]
            rows, cols = np.nonzero(usable)
            i, j = np.minimum(new[rows], new[cols]), np.maximum(new[rows], new[cols])
            fresh = ~known[i, j]
            rows, cols, i, j = rows[fresh], cols[fresh], i[fresh], j[fresh]
            for m in metrics:
                values[m][i, j] = values[m][j, i] = taken[m][rows, cols]
            known[i, j] = True
    return values, known
