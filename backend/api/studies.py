"""Studies: POST /api/studies, GET /api/studies[/{id}], the report as HTML / CSV / zip, GET /api/studies/presets.

A study runs the paper's whole protocol as one job (store/study_spec.py, worker/study.py). Posting a spec that
equals an existing study's returns that study: while its job runs (202), once finished (200), or resumed with a
new job after a failure or cancellation (202), redoing nothing that finished.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from toroid.backend.api.deps import AUTH_RESPONSES, BODY_RESPONSES, SessionDep
from toroid.backend.auth import require_read, require_write
from toroid.backend.paging import LIST_RESPONSES, Conditional, after_query, limit_query
from toroid.backend.services import report
from toroid.backend.services import studies as service
from toroid.backend.services.pages import record_fingerprint
from toroid.store.users import Principal

router = APIRouter(prefix="/studies", tags=["studies"], responses=AUTH_RESPONSES)

NOT_FOUND = {404: {"description": "unknown study"}}


@router.get("/presets", dependencies=[Depends(require_read)], summary="The study presets and their specs")
def presets() -> list[dict[str, Any]]:
    return service.presets()


@router.post("", status_code=202,
             responses={**BODY_RESPONSES, 200: {"description": "the identical study finished before"},
                        503: {"description": "the message broker is unreachable"}},
             summary="Start (or resume) a study: a spec, or {'preset': name, ...overrides}")
def create_study(response: Response, body: dict[str, Any] = Body(..., examples=[{"preset": "digits-mlp"}]),
                 principal: Principal = Depends(require_write)) -> dict[str, Any]:
    record, finished = service.start(body, owner=principal.name)
    response.status_code = 200 if finished else 202
    return record


@router.get("", responses=LIST_RESPONSES,
            summary="Studies, newest first: all of them, or pages with limit/after; ETag and If-None-Match for cheap "
                    "polls")
def list_all(request: Request, response: Response, session: SessionDep, limit: int | None = limit_query(),
             after: str | None = after_query(), principal: Principal = Depends(require_read)) -> Any:
    page, records = service.studies_page(session, limit=limit, after=after)
    # the records, not the rows: a running study's job carries durations computed at read time (store/eta.py)
    answer = Conditional.of(request, principal, page, record_fingerprint(records, page.total, page.next_cursor))
    if answer.not_modified:
        return answer.unchanged()
    answer.decorate(response)
    return records


@router.get("/{study_id}", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="One study: spec, state, progress, minima and result ids")
def read(study_id: str) -> dict[str, Any]:
    return service.record(study_id)


async def _data(study_id: str):
    service.record(study_id)
    return await run_in_threadpool(report.collect, study_id)


@router.get("/{study_id}/report.html", dependencies=[Depends(require_read)], response_class=HTMLResponse,
            responses=NOT_FOUND, summary="The report as one static HTML page (plotly.js inline, works offline)")
async def report_html(study_id: str) -> HTMLResponse:
    data = await _data(study_id)
    page, _ = await run_in_threadpool(report.render_html, data)
    return HTMLResponse(page)


@router.get("/{study_id}/report.csv", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="Every number of the report in one CSV (first column: the table)")
async def report_csv(study_id: str) -> Response:
    data = await _data(study_id)
    return Response(report.combined_csv(data), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="study-{study_id}.csv"'})


@router.get("/{study_id}/report.zip", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="report.html and every CSV table, zipped")
async def report_zip(study_id: str) -> Response:
    data = await _data(study_id)
    return Response(await run_in_threadpool(report.report_zip, data), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="study-{study_id}.zip"'})
