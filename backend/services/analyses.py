"""Analyses (flatness, sharpness, paths, distances, sections, tori): validation, the results cache, and queuing.

Each request is validated (ids exist, the minima share one parameter space, options fit the networks), then
answered from the results cache when the identical computation exists (``cached``), joined to an identical job
already in flight, or queued as a new job; a new job must fit the server's cost limit (``toroid.store.cost``,
``TOROID_MAX_JOB_COST``). The rules of which path kinds fit which networks live in the core
(``toroid.worker.landscape.kinds``); this module only applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.services.minima import get_minima, get_minimum, require_same_family
from toroid.store.cost import check_minima_cost
from toroid.store.errors import Conflict, Invalid, NotFound
from toroid.store.ledger import create_job, find_active_job, find_result, record_flatness, result_key
from toroid.store.models import Job, Minimum, Result
from toroid.store.params import (
    MAX_PAIRWISE_MINIMA,
    DistancesRequest,
    FlatnessRequest,
    PathRequest,
    SectionRequest,
    SharpnessRequest,
    TorusRequest,
    analysis_job,
    key_params,
)


@dataclass
class Submitted:
    """The answer to an analysis request: a cached result (with the job that computed it) or an active job."""

    job: Job
    result: Result | None

    @property
    def cached(self) -> bool:
        return self.result is not None

    def to_record(self) -> dict:
        return {"cached": self.cached, "job": self.job.to_record(),
                "result": self.result.to_record() if self.result is not None else None}


def _binary(minimum: Minimum) -> bool:
    from toroid.worker.landscape.nets import is_binary_architecture

    return is_binary_architecture(minimum.architecture)


def _check_kinds(request: PathRequest, binary: bool) -> None:
    from toroid.worker.landscape.kinds import check_bend_kind, check_path_kind

    try:
        check_path_kind(request.kind, binary)
        if request.kind == "one_bend":
            check_bend_kind(request.bend_kind, binary)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc


def submit(session: Session, kind: str, minima: list[Minimum], request: BaseModel, owner: str | None = None
           ) -> Submitted:
    """The cached result, the identical job in flight, or a new job for this request on these minima."""
    key = result_key(kind, minima, key_params(request))
    result = find_result(session, key)
    if result is not None:
        job = session.get(Job, result.job_id) if result.job_id else None
        if job is None or job.state != "succeeded":
            job = session.scalar(select(Job).where(Job.result_id == result.id, Job.state == "succeeded").limit(1))
        if job is not None:
            if kind == "flatness":
                record_flatness(session, minima[0].id, result)
                session.commit()
            return Submitted(job, result)
    active = find_active_job(session, key)
    if active is not None:
        return Submitted(active, None)
    cost = check_minima_cost(kind, request, minima)  # TooCostly (422) above TOROID_MAX_JOB_COST
    job = create_job(session, analysis_job(kind, request, [m.id for m in minima]), key=key, owner=owner, cost=cost)
    return Submitted(job, None)


def flatness(session: Session, request: FlatnessRequest, owner: str | None = None) -> Submitted:
    minimum = get_minimum(session, request.minimum_id)
    if request.sigmas is not None and _binary(minimum):
        too_big = [s for s in request.sigmas if s > 1]
        if too_big:
            raise Invalid(f"{minimum.name!r} is binary: sigmas are flip fractions in [0, 1]; got {too_big}")
    return submit(session, "flatness", [minimum], request, owner)


def sharpness(session: Session, request: SharpnessRequest, owner: str | None = None) -> Submitted:
    minimum = get_minimum(session, request.minimum_id)
    if _binary(minimum):
        raise Invalid(f"{minimum.name!r} is a binary network: the signs of its weights have no Hessian; measure its "
                      "flatness with POST /api/analyses/flatness (flip fractions, docs/method.md §6)")
    return submit(session, "sharpness", [minimum], request, owner)


def path(session: Session, request: PathRequest, owner: str | None = None) -> Submitted:
    a, b = get_minimum(session, request.a), get_minimum(session, request.b)
    require_same_family([a, b], "a path")
    _check_kinds(request, _binary(a))
    if a.program_sha256 and request.kind == "one_bend":
        raise Invalid("one-bend paths retrain the bend, which an exported program cannot do (its train/eval mode "
                      "is fixed at export): use kind 'geodesic' or 'linear_aligned' (docs/models.md)")
    if a.program_sha256:  # an exported program's BatchNorm statistics are fixed at export (docs/models.md)
        if "bn" in request.model_fields_set and request.bn == "recompute":
            raise Invalid("bn='recompute' re-estimates BatchNorm statistics along the path, but an exported "
                          "program's statistics are fixed at export: use bn='interpolate' (the default for programs)")
        request = request.model_copy(update={"bn": "interpolate"})
    return submit(session, "path", [a, b], request, owner)


def distances(session: Session, request: DistancesRequest, owner: str | None = None) -> Submitted:
    count = len(request.minimum_ids)
    if request.alignment == "pairwise" and count > MAX_PAIRWISE_MINIMA:
        raise Invalid(f"{count} minima aligned pair by pair are {count * (count - 1) // 2:,} alignments; "
                      f"alignment 'pairwise' takes at most {MAX_PAIRWISE_MINIMA} minima: ask alignment 'reference' "
                      "(one alignment per minimum, docs/method.md §5 'Many minima') or fewer minima")
    minima = get_minima(session, request.minimum_ids, what="distances")
    require_same_family(minima, "distances")
    return submit(session, "distances", minima, request, owner)


def section(session: Session, request: SectionRequest, owner: str | None = None) -> Submitted:
    minima = get_minima(session, request.minimum_ids, what="a section")
    require_same_family(minima, "a section")
    return submit(session, "section", minima, request, owner)


def torus(session: Session, request: TorusRequest, owner: str | None = None) -> Submitted:
    minima = get_minima(session, request.minimum_ids, what="a torus slice")
    require_same_family(minima, "a torus slice")
    if _binary(minima[0]):
        raise Invalid("torus slices need continuous networks (binary weights cannot be normalized)")
    return submit(session, "torus", minima, request, owner)


def _lookup(session: Session, kind: str, minima: list[Minimum], request: BaseModel, what: str) -> Submitted:
    """The result of this request computed before, or its job in flight, never queued (GET: what a page load may
    ask); NotFound when neither."""
    key = result_key(kind, minima, key_params(request))
    result = find_result(session, key)
    if result is not None:
        job = session.get(Job, result.job_id) if result.job_id else None
        job = job if job is not None and job.state == "succeeded" else session.scalar(
            select(Job).where(Job.result_id == result.id, Job.state == "succeeded").limit(1))
        if job is not None:
            return Submitted(job, result)
    active = find_active_job(session, key)
    if active is not None:
        return Submitted(active, None)
    raise NotFound(f"{what} were neither computed nor asked for; POST /api/analyses/{kind} asks")


def lookup_distances(session: Session, request: DistancesRequest) -> Submitted:
    """The distances of these minima computed before or in flight, never queued; NotFound when neither."""
    minima = get_minima(session, request.minimum_ids, what="distances")
    return _lookup(session, "distances", minima, request, "these distances")


#: The columns of the flatness table (``GET /api/analyses/flatness?format=csv``): one row per minimum and sigma.
FLATNESS_CSV_COLUMNS = ("minimum_id", "name", "sampler", "seed", "family", "train_error", "test_error", "result_id",
                        "sigma", "local_energy", "stderr", "samples")


def flatness_records(session: Session) -> list[dict[str, Any]]:
    """Every minimum with a flatness result: its errors, its ``local_energy`` (at the largest sigma) and the curve of
    the result that set it (the latest, ``toroid.store.ledger.record_flatness``), newest minimum first; what the
    Flatness view plots against the test error (docs/method.md §6)."""
    minima = list(session.scalars(select(Minimum).where(Minimum.flatness_result_id.is_not(None))
                                  .order_by(Minimum.created_at.desc(), Minimum.id)))
    ids = [m.flatness_result_id for m in minima]
    results = {r.id: r for r in session.scalars(select(Result).where(Result.id.in_(ids)))} if ids else {}
    records = []
    for m in minima:
        result = results.get(m.flatness_result_id or "")
        if result is None:
            continue
        data = result.data or {}
        records.append({
            "minimum_id": m.id, "name": m.name, "sampler": m.sampler, "seed": m.seed, "family": m.family(),
            "train_error": m.train_error, "test_error": m.test_error, "local_energy": m.local_energy,
            "result_id": result.id, "sigmas": list(data.get("sigmas") or []), "mean": list(data.get("mean") or []),
            "stderr": list(data.get("stderr") or []), "samples": list(data.get("samples") or []),
        })
    return records


def _at(values: list, i: int) -> Any:
    return values[i] if i < len(values) else None


def flatness_table(records: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple]]:
    """Header and rows of the flatness table: the local energy (mean over noise samples), its standard error and the
    sample count of each minimum at each sigma, beside the minimum's errors."""
    rows = [
        (r["minimum_id"], r["name"], r["sampler"], r["seed"], r["family"], r["train_error"], r["test_error"],
         r["result_id"], sigma, _at(r["mean"], i), _at(r["stderr"], i), _at(r["samples"], i))
        for r in records for i, sigma in enumerate(r["sigmas"])
    ]
    return FLATNESS_CSV_COLUMNS, rows


#: The columns of a distances table (``GET /api/analyses/distances?format=csv``): one row per pair and metric.
DISTANCES_CSV_COLUMNS = ("minimum_a", "name_a", "minimum_b", "name_b", "metric", "distance")


def distances_table(submitted: Submitted) -> tuple[tuple[str, ...], list[tuple]]:
    """Header and rows (long format) of a distances lookup's result: each pair once (a before b in the request's
    order), each metric of the result; Conflict while the job computing it is still in flight."""
    if submitted.result is None:
        raise Conflict(f"these distances are still being computed (job {submitted.job.id}, {submitted.job.state}); "
                       "ask again when it has finished, or drop format=csv to follow the job")
    data = submitted.result.data or {}
    ids, names, matrices = data.get("ids") or [], data.get("names") or [], data.get("matrices") or {}
    rows = [
        (ids[i], _at(names, i), ids[j], _at(names, j), metric, _at(_at(matrices[metric], i) or [], j))
        for i in range(len(ids)) for j in range(i + 1, len(ids)) for metric in sorted(matrices)
    ]
    return DISTANCES_CSV_COLUMNS, rows


def lookup_sharpness(session: Session, request: SharpnessRequest) -> Submitted:
    """The sharpness of one minimum (these options) computed before or in flight, never queued; NotFound when
    neither (the dashboard's Flatness view shows what exists without asking for more)."""
    return _lookup(session, "sharpness", [get_minimum(session, request.minimum_id)], request,
                   "this minimum's sharpness")
