"""The minima map of one family (``GET /api/map``): the same embedding the dashboard draws, as numbers and CSV.

A family is the set of minima that share one parameter space (``Minimum.family``, ``toroid.store.families``); its
map is the MDS embedding (``toroid.mds.embed``: classical MDS, refined by metric SMACOF when that lowers stress-1) of
one distance matrix of docs/method.md §5. The matrix is the family's own distances result when it exists; while it
is missing (a minimum joined and its job runs) the largest subset computed before is used and the other minima are
``pending``; with no distances at all the map falls back to train vs test error in percent (``method: "error"``),
as the dashboard does. Lookups never queue anything (``POST /api/analyses/distances`` asks).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.services.tables import csv_text
from toroid.mds import embed
from toroid.store.errors import Invalid, NotFound
from toroid.store.families import MAX_MAP_MINIMA, family_request
from toroid.store.ledger import result_key
from toroid.store.models import Minimum, Result
from toroid.store.params import key_params

#: The distances a map can be drawn from: the matrices of a distances result (docs/method.md §5)
METRICS = ("geodesic", "raw", "aligned", "normalized", "normalized_aligned", "hamming", "hamming_raw")
#: Other names the API takes: ``euclidean`` is the raw per-parameter Euclidean distance (the map's other choice)
ALIASES = {"euclidean": "raw"}
#: The columns of the CSV form
CSV_COLUMNS = ("id", "name", "sampler", "x", "y", "train_error", "test_error")
#: How many recent distances results are searched for the largest subset of a family
SCAN_RESULTS = 500


def family_minima(session: Session, family: str) -> list[Minimum]:
    """The minima of one family, in id order (the order of the family's distances request); NotFound when none."""
    members = sorted((m for m in session.scalars(select(Minimum)) if m.family() == family), key=lambda m: m.id)
    if not members:
        raise NotFound(f"no minimum belongs to the family {family!r}; every minimum's record (GET /api/minima) "
                       "carries its 'family' key")
    return members


def _distances(session: Session, members: list[Minimum]) -> str | None:
    """The family's distances result (the request of ``family_request``: pairwise or reference alignment by the
    family's size), else the recent one covering the most of its minima (at least two). The scan reads ids only:
    a family of hundreds has matrices of megabytes, read for the one result used."""
    if 2 <= len(members) <= MAX_MAP_MINIMA:
        key = result_key("distances", members, key_params(family_request(members)))
        exact = session.scalar(select(Result.id).where(Result.key == key).limit(1))
        if exact is not None:
            return exact
    ids = {m.id for m in members}
    best, covered = None, 1
    query = (select(Result.id, Result.minimum_ids).where(Result.kind == "distances")
             .order_by(Result.created_at.desc()).limit(SCAN_RESULTS))
    for result_id, minimum_ids in session.execute(query):
        count = len(ids.intersection(minimum_ids or []))
        if count > covered:
            best, covered = result_id, count
    return best


#: Embeddings of the last few (result, metric, minima) asked: a result never changes, so a poll of a family of
#: hundreds reads and lays out its matrix once (docs/performance.md, "Map of hundreds")
_PLACED: dict[tuple, dict[str, Any]] = {}
_PLACED_SIZE = 16


def _placed(session: Session, result_id: str, members: list[Minimum], metric: str) -> dict[str, Any]:
    """The MDS of the ``metric`` matrix of one distances result over the members it covers: xy per placed id, the
    embedding's numbers and how the distances were aligned."""
    cache_key = (result_id, metric, tuple(m.id for m in members))
    if cache_key in _PLACED:
        return _PLACED[cache_key]
    result = session.get(Result, result_id)
    data = result.data or {}
    matrices = data.get("matrices") or {}
    if metric not in matrices:
        raise Invalid(f"the distances of this family have no {metric!r} matrix (binary networks have Hamming "
                      f"distances instead of geodesic ones); available: {', '.join(sorted(matrices))}")
    index = {mid: i for i, mid in enumerate(data.get("ids") or result.minimum_ids or [])}
    full = matrices[metric]
    placed: list[str] = []
    for mid in (m.id for m in members if m.id in index):  # incomparable pairs (non-finite) stay pending
        row = full[index[mid]]
        if all(_finite(row[index[other]]) for other in placed):
            placed.append(mid)
    rows = [index[mid] for mid in placed]
    matrix = [[float(full[a][b]) for b in rows] for a in rows]
    found = embed(matrix)
    alignment = data.get("alignment", "pairwise")
    answer = {"xy": {mid: (float(x), float(y)) for mid, (x, y) in zip(placed, found.coords, strict=True)},
              "method": found.method, "stress": found.stress, "classical_stress": found.classical_stress,
              "variance_2d": found.variance_2d, "alignment": alignment,
              "reference": data.get("reference") if alignment == "reference" else None}
    if len(_PLACED) >= _PLACED_SIZE:
        _PLACED.pop(next(iter(_PLACED)))
    _PLACED[cache_key] = answer
    return answer


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def family_map(session: Session, family: str, metric: str = "geodesic") -> dict[str, Any]:
    """The map of ``family`` by ``metric``: ids, names, x, y of the placed minima, the method (``smacof``,
    ``classical`` or ``error``), stress-1 and the classical share of variance in two dimensions, the pending ids,
    the distances result it was drawn from and how that result aligned the minima (``pairwise``, or
    ``reference`` with the reference minimum: docs/method.md §5, "Many minima")."""
    metric = ALIASES.get(metric, metric)
    if metric not in METRICS:
        raise Invalid(f"unknown metric {metric!r}; one of {', '.join((*METRICS, *ALIASES))}")
    members = family_minima(session, family)
    by_id = {m.id: m for m in members}
    result = _distances(session, members)
    answer: dict[str, Any] = {"family": family, "metric": metric, "result_id": None, "stress": None,
                              "classical_stress": None, "variance_2d": None, "alignment": None, "reference": None}
    if result is not None:
        found = _placed(session, result, members, metric)
        xy = found["xy"]
        answer.update({k: v for k, v in found.items() if k != "xy"}, result_id=result)
    else:
        xy = {m.id: (100.0 * m.train_error, 100.0 * m.test_error) for m in members
              if m.train_error is not None and m.test_error is not None}
        answer["method"] = "error"
    placed = [m.id for m in members if m.id in xy]
    answer.update(
        ids=placed, names=[by_id[mid].name for mid in placed],
        samplers=[by_id[mid].sampler for mid in placed],
        x=[xy[mid][0] for mid in placed], y=[xy[mid][1] for mid in placed],
        pending=[m.id for m in members if m.id not in xy],
    )
    return answer


def map_csv(session: Session, family: str, metric: str = "geodesic") -> str:
    """The map as CSV, one row per minimum of the family (pending ones with empty x and y); names pass the formula
    guard of the API's table writer (``toroid.backend.services.tables``)."""
    answer = family_map(session, family, metric)
    xy = dict(zip(answer["ids"], zip(answer["x"], answer["y"], strict=True), strict=True))
    rows = [[m.id, m.name, m.sampler, *xy.get(m.id, (None, None)), m.train_error, m.test_error]
            for m in family_minima(session, family)]
    return csv_text(CSV_COLUMNS, rows)
