"""POST /api/analyses/*: flatness, sharpness, paths, distances, sections, tori (rules:
``toroid.backend.services.analyses``).

(No ``from __future__ import annotations`` here: FastAPI reads each endpoint's body model from its annotation.)

An identical computation done before answers 200 with ``cached: true``; otherwise 202 with the job (a new one, or
the identical one already in flight).
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from toroid.backend.api.deps import AUTH_RESPONSES, BODY_RESPONSES, SessionDep
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import AnalysisResponse
from toroid.backend.services import analyses as service
from toroid.store.params import (
    DistancesRequest,
    FlatnessRequest,
    PathRequest,
    SectionRequest,
    SharpnessRequest,
    TorusRequest,
)
from toroid.store.users import Principal

router = APIRouter(
    prefix="/analyses", tags=["analyses"], responses={**AUTH_RESPONSES, **BODY_RESPONSES},
)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnalysisResponse, "description": "computed before: the cached result (cached true)"},
    404: {"description": "unknown minimum id"},
    422: {"description": "invalid request"},
    503: {"description": "the message broker is unreachable"},
}


def _register(path: str, model: type[BaseModel], run: Callable[..., service.Submitted],
              summary: str) -> None:
    """POST /api/analyses{path}: validate the body as ``model``, hand it to ``run``, answer 200 (cached) or 202."""

    def endpoint(request: model, response: Response, session: SessionDep,  # type: ignore[valid-type]
                 principal: Principal = Depends(require_write)) -> dict:
        submitted = run(session, request, owner=principal.name)
        response.status_code = 200 if submitted.cached else 202
        return submitted.to_record()

    endpoint.__name__ = path.strip("/")
    router.add_api_route(path, endpoint, methods=["POST"], status_code=202, response_model=AnalysisResponse,
                         responses=RESPONSES, summary=summary)


@router.get("/distances", response_model=AnalysisResponse, dependencies=[Depends(require_read)],
            responses={200: {"model": AnalysisResponse}, 404: {"description": "neither computed nor asked for"}},
            summary="Distances computed before or in flight (never queues: what a page load may ask)")
def lookup_distances(response: Response, session: SessionDep,
                     minimum_ids: list[str] = Query(..., min_length=2, max_length=32)) -> dict:
    submitted = service.lookup_distances(session, DistancesRequest(minimum_ids=minimum_ids))
    response.status_code = 200 if submitted.cached else 202
    return submitted.to_record()


@router.get("/sharpness", response_model=AnalysisResponse, dependencies=[Depends(require_read)],
            responses={200: {"model": AnalysisResponse}, 404: {"description": "neither computed nor asked for"}},
            summary="A minimum's sharpness (the default options) computed before or in flight (never queues)")
def lookup_sharpness(response: Response, session: SessionDep,
                     minimum_id: str = Query(..., min_length=1, max_length=64)) -> dict:
    submitted = service.lookup_sharpness(session, SharpnessRequest(minimum_id=minimum_id))
    response.status_code = 200 if submitted.cached else 202
    return submitted.to_record()


for _path, _model, _run, _summary in (
    ("/flatness", FlatnessRequest, service.flatness, "Local energy of one minimum (docs/method.md §6)"),
    ("/sharpness", SharpnessRequest, service.sharpness,
     "Top Hessian eigenvalue and trace of one minimum's loss, on its normalized network (docs/method.md §6)"),
    ("/path", PathRequest, service.path, "Error along a path between two minima (docs/method.md §7)"),
    ("/distances", DistancesRequest, service.distances,
     "Pairwise distances: geodesic, Euclidean raw/aligned/normalized (docs/method.md §5)"),
    ("/section", SectionRequest, service.section, "Error on the plane through three minima (docs/method.md §7)"),
    ("/torus", TorusRequest, service.torus,
     "Error on a torus slice through two or three normalized, aligned minima"),
):
    _register(_path, _model, _run, _summary)
