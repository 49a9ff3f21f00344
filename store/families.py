"""Families: minima that share one parameter space (the same network structure, or without a recorded structure the
same architecture and config; the same dataset and options), the only ones that can be compared, aligned and drawn
on one map (``Minimum.family``).

When a minimum joins a family (an upload, a finished training), ``queue_family_distances`` asks for the family's
distance matrix right away, through the ledger like any request, so the map is laid out by distance without a
browser ever having to ask for it: opening the dashboard changes nothing (docs/operations.md, "Running a shared
server"). The request is the one the dashboard looks up (``GET /api/analyses/distances``): the family's minimum ids
in sorted order, at most ``MAX_MAP_MINIMA`` of them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.store.cost import estimate, minimum_inputs
from toroid.store.db import new_session
from toroid.store.errors import Unavailable
from toroid.store.ledger import create_job, find_result, result_key
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Result
from toroid.store.params import DistancesJob, DistancesRequest

#: The largest family whose whole distance matrix is one request (``DistancesRequest.minimum_ids``).
MAX_MAP_MINIMA = DistancesRequest.model_fields["minimum_ids"].metadata[-1].max_length


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
    key = result_key("distances", family, {})
    if find_result(session, key) is not None:
        return None
    ids = {m.id for m in family}
    for job in session.scalars(select(Job).where(Job.kind == "distances", Job.state.in_(ACTIVE_STATES))):
        if ids & set((job.params or {}).get("minimum_ids") or []):
            return None
    params = DistancesJob(minimum_ids=[m.id for m in family])
    try:  # its estimate puts it on the interactive queue, beside the clicks (store/ledger.py)
        sizes = minimum_inputs(family)
        cost = estimate("distances", params, sizes["parameter_count"], sizes["n_train"], sizes["n_test"],
                        assignment=sizes["assignment"])
    except ValueError:
        cost = None
    try:
        return create_job(session, params, key=key, message="queued: the map's distances", owner=minimum.owner,
                          cost=cost)
    except Unavailable:
        return None


def known_pairs(minimum_ids: list[str], metrics: tuple[str, ...], limit: int = 50) -> dict[tuple[int, int], dict]:
    """Pairs of ``minimum_ids`` (as index pairs ``i < j``) whose distances an earlier distances result of this code
    version holds, in the same order (the alignment of ``i`` onto ``j`` is not exactly that of ``j`` onto ``i``):
    their values per metric. A family's distances job computes only the rest, so a minimum that joins a family
    costs its own row, not a new matrix (docs/operations.md, "Queues")."""
    from toroid.worker.landscape import CODE_VERSION

    position = {mid: k for k, mid in enumerate(minimum_ids)}
    known: dict[tuple[int, int], dict] = {}
    wanted = len(minimum_ids) * (len(minimum_ids) - 1) // 2
    with new_session() as session:
        results = session.scalars(
            select(Result).where(Result.kind == "distances", Result.code_version == CODE_VERSION)
            .order_by(Result.created_at.desc()).limit(limit))
        for result in results:
            data = result.data or {}
            ids, matrices = data.get("ids") or [], data.get("matrices") or {}
            if not all(m in matrices for m in metrics):
                continue
            for a in range(len(ids)):
                for b in range(a + 1, len(ids)):
                    i, j = position.get(ids[a]), position.get(ids[b])
                    if i is None or j is None or i >= j or (i, j) in known:
                        continue
                    values = {m: matrices[m][a][b] for m in metrics}
                    if all(isinstance(v, (int, float)) for v in values.values()):
                        known[(i, j)] = {m: float(v) for m, v in values.items()}
            if len(known) == wanted:
                break
    return known
