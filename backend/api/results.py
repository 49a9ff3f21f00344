"""GET /api/results (summaries, paged), GET /api/results/{id} (JSON) and GET /api/results/{id}.csv (the result's
arrays, one row per point or cell)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_read
from toroid.backend.paging import LIST_RESPONSES, Conditional, after_query, limit_query
from toroid.backend.schemas import ResultRecord, ResultSummary
from toroid.backend.services import jobs as service
from toroid.backend.services.pages import record_fingerprint
from toroid.backend.services.tables import CSV_MEDIA_TYPE, attachment, csv_text
from toroid.store.params import JobKind
from toroid.store.users import Principal

router = APIRouter(
    prefix="/results", tags=["results"], dependencies=[Depends(require_read)], responses=AUTH_RESPONSES
)

@router.get("", response_model=list[ResultSummary], responses=LIST_RESPONSES,
            summary="Results, newest first, without their data (GET /api/results/{id} has it), in pages of limit "
                    "(default 100) with after; ETag and If-None-Match for cheap polls")
def list_results(
    request: Request, response: Response, session: SessionDep,
    kind: JobKind | None = Query(None, description="Only results of this kind (that of the job that made them)."),
    limit: int = limit_query(100), after: str | None = after_query(),
    principal: Principal = Depends(require_read),
) -> Any:
    page = service.results_page(session, kind=kind, limit=limit, after=after)
    records = service.result_summaries(page)  # a few small columns: hashing the records costs little
    answer = Conditional.of(request, principal, page, record_fingerprint(records, page.total, page.next_cursor))
    if answer.not_modified:
        return answer.unchanged()
    answer.decorate(response)
    return records


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
