"""POST /api/analyses/*: flatness, paths, distances, sections, tori.

Each request is validated synchronously (ids exist, the minima share one parameter space, options fit the
networks), then answered from the results cache when the identical computation exists (200, ``cached: true``),
joined to an identical job already in flight (202, that job), or queued as a new job (202).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from toroid.backend.api.deps import (
    AUTH_RESPONSES,
    BODY_RESPONSES,
    get_minima,
    get_minimum,
    is_binary_architecture,
    require_same_family,
    unprocessable,
)
from toroid.backend.api.minima import queue_job
from toroid.backend.auth import require_write
from toroid.backend.schemas import (
    AnalysisResponse,
    DistancesRequest,
    FlatnessRequest,
    PathRequest,
    SectionRequest,
    TorusRequest,
)
from toroid.store.db import get_session
from toroid.store.ledger import find_active_job, find_result, result_key
from toroid.store.models import Job, Minimum, Result

router = APIRouter(
    prefix="/analyses", tags=["analyses"], dependencies=[Depends(require_write)],
    responses={**AUTH_RESPONSES, **BODY_RESPONSES},
)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnalysisResponse, "description": "computed before: the cached result (cached true)"},
    404: {"description": "unknown minimum id"},
    422: {"description": "invalid request"},
    503: {"description": "the message broker is unreachable"},
}


def local_energy_at_largest_sigma(data: dict[str, Any]) -> float | None:
    """The local energy at the largest sigma of a LocalEnergy dict (what the paper compares with test error)."""
    sigmas, means = data.get("sigmas") or [], data.get("mean") or []
    if not sigmas or len(sigmas) != len(means):
        return None
    value = means[max(range(len(sigmas)), key=lambda i: sigmas[i])]
    return float(value) if isinstance(value, int | float) else None


def _submit(
    session: Session, response: Response, kind: str, minima: list[Minimum], request_params: dict[str, Any],
    key_params: dict[str, Any],
) -> dict[str, Any]:
    key = result_key(kind, minima, key_params)
    result = find_result(session, key)
    if result is not None:
        job = session.get(Job, result.job_id) if result.job_id else None
        if job is None or job.state != "succeeded":
            job = session.query(Job).filter(Job.result_id == result.id, Job.state == "succeeded").first()
        if job is not None:
            if kind == "flatness":
                _record_flatness(session, minima[0], result)
            response.status_code = 200
            return {"cached": True, "job": job.to_record(), "result": result.to_record()}
    active = find_active_job(session, key)
    if active is not None:
        response.status_code = 202
        return {"cached": False, "job": active.to_record(), "result": None}
    job = queue_job(session, kind, {**request_params, "minimum_ids": [m.id for m in minima]}, key=key)
    response.status_code = 202
    return {"cached": False, "job": job.to_record(), "result": None}


def _record_flatness(session: Session, minimum: Minimum, result: Result) -> None:
    if minimum.flatness_result_id != result.id:
        minimum.flatness_result_id = result.id
        minimum.local_energy = local_energy_at_largest_sigma(result.data or {})
        session.commit()


@router.post("/flatness", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Local energy of one minimum (docs/method.md §6)")
def flatness(request: FlatnessRequest, response: Response, session: Session = Depends(get_session)) -> dict:
    minimum = get_minimum(session, request.minimum_id)
    if request.sigmas is not None and is_binary_architecture(minimum.architecture):
        too_big = [s for s in request.sigmas if s > 1]
        if too_big:
            raise unprocessable(f"{minimum.name!r} is binary: sigmas are flip fractions in [0, 1]; got {too_big}")
    params = request.model_dump()
    key_params = {k: v for k, v in params.items() if k != "minimum_id"}
    return _submit(session, response, "flatness", [minimum], params, key_params)


@router.post("/path", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error along a path between two minima (docs/method.md §7)")
def path(request: PathRequest, response: Response, session: Session = Depends(get_session)) -> dict:
    a, b = get_minimum(session, request.a), get_minimum(session, request.b)
    require_same_family([a, b], "a path")
    binary = is_binary_architecture(a.architecture)
    if binary and request.kind == "geodesic":
        raise unprocessable("geodesic paths need continuous networks (binary weights cannot be normalized); "
                            "use kind 'flip', 'linear' or 'linear_aligned'")
    if not binary and request.kind == "flip":
        raise unprocessable("kind 'flip' is for binary networks; use 'linear', 'linear_aligned' or 'geodesic'")
    params = request.model_dump()
    key_params = {k: v for k, v in params.items() if k not in ("a", "b")}
    return _submit(session, response, "path", [a, b], params, key_params)


@router.post("/distances", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Pairwise distances: geodesic, Euclidean raw/aligned/normalized (docs/method.md §5)")
def distances(request: DistancesRequest, response: Response, session: Session = Depends(get_session)) -> dict:
    minima = get_minima(session, request.minimum_ids, what="distances")
    require_same_family(minima, "distances")
    return _submit(session, response, "distances", minima, request.model_dump(), {})


@router.post("/section", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error on the plane through three minima (docs/method.md §7)")
def section(request: SectionRequest, response: Response, session: Session = Depends(get_session)) -> dict:
    minima = get_minima(session, request.minimum_ids, what="a section")
    require_same_family(minima, "a section")
    params = request.model_dump()
    key_params = {k: v for k, v in params.items() if k != "minimum_ids"}
    return _submit(session, response, "section", minima, params, key_params)


@router.post("/torus", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error on a torus slice through two or three normalized, aligned minima")
def torus(request: TorusRequest, response: Response, session: Session = Depends(get_session)) -> dict:
    minima = get_minima(session, request.minimum_ids, what="a torus slice")
    require_same_family(minima, "a torus slice")
    if is_binary_architecture(minima[0].architecture):
        raise unprocessable("torus slices need continuous networks (binary weights cannot be normalized)")
    params = request.model_dump()
    key_params = {k: v for k, v in params.items() if k != "minimum_ids"}
    return _submit(session, response, "torus", minima, params, key_params)
