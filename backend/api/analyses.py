"""POST /api/analyses/*: flatness, sharpness, paths, distances, sections, tori (rules:
``toroid.backend.services.analyses``); GET lookups that never queue (distances, sharpness) and the flatness table
(JSON or CSV, docs/api.md, "Exports").

(No ``from __future__ import annotations`` here: FastAPI reads each endpoint's body model from its annotation.)

An identical computation done before answers 200 with ``cached: true``; otherwise 202 with the job (a new one, or
the identical one already in flight).
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from toroid.backend.api.deps import AUTH_RESPONSES, BODY_RESPONSES, SessionDep
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import AnalysisResponse
from toroid.backend.services import analyses as service
from toroid.backend.services.tables import CSV_MEDIA_TYPE, FORMAT_DOC, TableFormat, attachment, csv_text
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
            responses={200: {"model": AnalysisResponse, "content": {"text/csv": {}}},
                       404: {"description": "neither computed nor asked for"},
                       409: {"description": "format=csv while the distances are still being computed"}},
            summary="Distances computed before or in flight (never queues: what a page load may ask; format=csv: "
                    "the pairs and metrics of the result as a table)")
def lookup_distances(response: Response, session: SessionDep,
                     minimum_ids: list[str] = Query(..., min_length=2, max_length=32),
                     format: TableFormat = Query("json", description=FORMAT_DOC)) -> Any:
    submitted = service.lookup_distances(session, DistancesRequest(minimum_ids=minimum_ids))
    if format == "csv":
        return Response(csv_text(*service.distances_table(submitted)), media_type=CSV_MEDIA_TYPE,
                        headers=attachment("toroid-distances.csv"))
    response.status_code = 200 if submitted.cached else 202
    return submitted.to_record()


class FlatnessRecord(BaseModel):
    """A minimum with a flatness result: its errors and the local-energy curve of that result (docs/method.md §6)."""

    minimum_id: str
    name: str
    sampler: str | None
    seed: int | None
    family: str
    train_error: float | None
    test_error: float | None
    local_energy: float | None = Field(description="The local energy at the largest sigma (the minimum's).")
    result_id: str
    sigmas: list[float | None]
    mean: list[float | None] = Field(description="The local energy at each sigma (mean over noise samples).")
    stderr: list[float | None]
    samples: list[int | None]


@router.get("/flatness", response_model=list[FlatnessRecord], dependencies=[Depends(require_read)],
            responses={200: {"content": {"text/csv": {}}, "description": "JSON records, or the CSV table"}},
            summary="Every minimum's flatness computed before, beside its test error (never queues; format=csv: "
                    "one row per minimum and sigma)")
def flatness_table(session: SessionDep, format: TableFormat = Query("json", description=FORMAT_DOC)) -> Any:
    records = service.flatness_records(session)
    if format == "csv":
        return Response(csv_text(*service.flatness_table(records)), media_type=CSV_MEDIA_TYPE,
                        headers=attachment("toroid-flatness.csv"))
    return records


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
