"""GET /api/results/{id} (JSON) and GET /api/results/{id}.csv (the result's arrays, one row per point or cell)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_read
from toroid.backend.schemas import ResultRecord
from toroid.backend.services import jobs as service
from toroid.backend.services.tables import CSV_MEDIA_TYPE, attachment, csv_text

router = APIRouter(
    prefix="/results", tags=["results"], dependencies=[Depends(require_read)], responses=AUTH_RESPONSES
)

@router.get("/{result_id}.csv", summary="The result's arrays as CSV",
            responses={200: {"content": {"text/csv": {}}, "description": "CSV"}, 404: {"description": "unknown"}})
def read_result_csv(result_id: str, session: SessionDep) -> Response:
    result = service.get_result(session, result_id)
    header, rows = service.result_table(result)  # minimum names pass the formula guard of csv_text
    return Response(csv_text(header, rows), media_type=CSV_MEDIA_TYPE,
                    headers=attachment(f"{result.kind}-{result.id}.csv"))


@router.get("/{result_id}", response_model=ResultRecord, responses={404: {"description": "unknown result"}})
def read_result(result_id: str, session: SessionDep) -> dict:
    return service.get_result(session, result_id).to_record()
