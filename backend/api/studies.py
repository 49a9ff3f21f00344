"""Studies: POST /api/studies, GET /api/studies[/{id}], the report as HTML / CSV / zip, GET /api/studies/presets.

A study runs the paper's whole protocol as one job (backend/studies.py). Posting a spec that equals an existing
study's returns that study: while its job runs (202), once finished (200), or resumed with a new job after a
failure or cancellation (202), redoing nothing that finished.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from toroid.backend.api.deps import AUTH_RESPONSES, BODY_RESPONSES, unprocessable
from toroid.backend.auth import require_read, require_write
from toroid.store.ledger import BrokerUnavailable

router = APIRouter(prefix="/studies", tags=["studies"], responses=AUTH_RESPONSES)

NOT_FOUND = {404: {"description": "unknown study"}}


def _record(study_id: str) -> dict[str, Any]:
    from toroid.backend.studies import get_study, study_record

    found = get_study(study_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study with id {study_id!r}; GET /api/studies lists them")
    return study_record(*found)


@router.get("/presets", dependencies=[Depends(require_read)], summary="The study presets and their specs")
def presets() -> list[dict[str, Any]]:
    from toroid.backend.studies import PRESETS, preset_spec

    return [{"name": name, "description": raw.get("description", ""), "spec": preset_spec(name).model_dump()}
            for name, raw in PRESETS.items()]


@router.post("", status_code=202, dependencies=[Depends(require_write)],
             responses={**BODY_RESPONSES, 200: {"description": "the identical study finished before"},
                        503: {"description": "the message broker is unreachable"}},
             summary="Start (or resume) a study: a spec, or {'preset': name, ...overrides}")
def create_study(response: Response, body: dict[str, Any] = Body(..., examples=[{"preset": "digits-mlp"}])
                 ) -> dict[str, Any]:
    from toroid.backend.studies import StudyError, open_study, resolve_spec

    preset = body.get("preset") if isinstance(body.get("preset"), str) else None
    try:
        spec = resolve_spec(body)
        study, job, started = open_study(spec, preset=preset)
    except StudyError as exc:
        raise unprocessable(str(exc)) from exc
    except BrokerUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    response.status_code = 202 if started or job.state != "succeeded" else 200
    return _record(study.id)


@router.get("", dependencies=[Depends(require_read)], summary="Studies, newest first")
def list_all() -> list[dict[str, Any]]:
    from toroid.backend.studies import list_studies, study_record

    return [study_record(s, j) for s, j in list_studies()]


@router.get("/{study_id}", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="One study: spec, state, progress, minima and result ids")
def read(study_id: str) -> dict[str, Any]:
    return _record(study_id)


async def _data(study_id: str):
    from toroid.backend.report import collect

    _record(study_id)
    return await run_in_threadpool(collect, study_id)


@router.get("/{study_id}/report.html", dependencies=[Depends(require_read)], response_class=HTMLResponse,
            responses=NOT_FOUND, summary="The report as one static HTML page (plotly.js inline, works offline)")
async def report_html(study_id: str) -> HTMLResponse:
    from toroid.backend.report import render_html

    data = await _data(study_id)
    page, _ = await run_in_threadpool(render_html, data)
    return HTMLResponse(page)


@router.get("/{study_id}/report.csv", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="Every number of the report in one CSV (first column: the table)")
async def report_csv(study_id: str) -> Response:
    from toroid.backend.report import combined_csv

    data = await _data(study_id)
    return Response(combined_csv(data), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="study-{study_id}.csv"'})


@router.get("/{study_id}/report.zip", dependencies=[Depends(require_read)], responses=NOT_FOUND,
            summary="report.html and every CSV table, zipped")
async def report_zip(study_id: str) -> Response:
    from toroid.backend.report import report_zip as build

    data = await _data(study_id)
    return Response(await run_in_threadpool(build, data), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="study-{study_id}.zip"'})
