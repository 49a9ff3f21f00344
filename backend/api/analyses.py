"""POST /api/analyses/*: flatness, paths, distances, sections, tori (rules: ``toroid.backend.services.analyses``).

An identical computation done before answers 200 with ``cached: true``; otherwise 202 with the job (a new one, or
the identical one already in flight).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from toroid.backend.api.deps import AUTH_RESPONSES, BODY_RESPONSES, SessionDep
from toroid.backend.auth import require_write
from toroid.backend.schemas import AnalysisResponse
from toroid.backend.services import analyses as service
from toroid.store.params import DistancesRequest, FlatnessRequest, PathRequest, SectionRequest, TorusRequest

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


def _answer(submitted: service.Submitted, response: Response) -> dict:
    response.status_code = 200 if submitted.cached else 202
    return submitted.to_record()


@router.post("/flatness", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Local energy of one minimum (docs/method.md §6)")
def flatness(request: FlatnessRequest, response: Response, session: SessionDep) -> dict:
    return _answer(service.flatness(session, request), response)


@router.post("/path", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error along a path between two minima (docs/method.md §7)")
def path(request: PathRequest, response: Response, session: SessionDep) -> dict:
    return _answer(service.path(session, request), response)


@router.post("/distances", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Pairwise distances: geodesic, Euclidean raw/aligned/normalized (docs/method.md §5)")
def distances(request: DistancesRequest, response: Response, session: SessionDep) -> dict:
    return _answer(service.distances(session, request), response)


@router.post("/section", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error on the plane through three minima (docs/method.md §7)")
def section(request: SectionRequest, response: Response, session: SessionDep) -> dict:
    return _answer(service.section(session, request), response)


@router.post("/torus", status_code=202, response_model=AnalysisResponse, responses=RESPONSES,
             summary="Error on a torus slice through two or three normalized, aligned minima")
def torus(request: TorusRequest, response: Response, session: SessionDep) -> dict:
    return _answer(service.torus(session, request), response)
