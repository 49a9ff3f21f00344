"""POST /api/analyses/*: flatness, paths, distances, sections, tori (rules: ``toroid.backend.services.analyses``).

(No ``from __future__ import annotations`` here: FastAPI reads each endpoint's body model from its annotation.)

An identical computation done before answers 200 with ``cached: true``; otherwise 202 with the job (a new one, or
the identical one already in flight).
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

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


def _register(path: str, model: type[BaseModel], run: Callable[[Session, Any], service.Submitted],
              summary: str) -> None:
    """POST /api/analyses{path}: validate the body as ``model``, hand it to ``run``, answer 200 (cached) or 202."""

    def endpoint(request: model, response: Response, session: SessionDep) -> dict:  # type: ignore[valid-type]
        submitted = run(session, request)
        response.status_code = 200 if submitted.cached else 202
        return submitted.to_record()

    endpoint.__name__ = path.strip("/")
    router.add_api_route(path, endpoint, methods=["POST"], status_code=202, response_model=AnalysisResponse,
                         responses=RESPONSES, summary=summary)


for _path, _model, _run, _summary in (
    ("/flatness", FlatnessRequest, service.flatness, "Local energy of one minimum (docs/method.md §6)"),
    ("/path", PathRequest, service.path, "Error along a path between two minima (docs/method.md §7)"),
    ("/distances", DistancesRequest, service.distances,
     "Pairwise distances: geodesic, Euclidean raw/aligned/normalized (docs/method.md §5)"),
    ("/section", SectionRequest, service.section, "Error on the plane through three minima (docs/method.md §7)"),
    ("/torus", TorusRequest, service.torus,
     "Error on a torus slice through two or three normalized, aligned minima"),
):
    _register(_path, _model, _run, _summary)
