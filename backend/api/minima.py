"""Minima: list, upload, train (a job), delete, download checkpoints (rules: ``toroid.backend.services.minima``).

This module translates HTTP only: it streams the multipart upload in under the size limit (413 while it arrives,
415 for another media type, 400 for a malformed body) and hands the parts to the service, which checks them
completely before anything is stored.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from toroid.backend.api.deps import (
    AUTH_RESPONSES,
    BODY_RESPONSES,
    MiB,
    SessionDep,
    UploadLimits,
    field_too_large,
    multipart_openapi,
    read_multipart,
)
from toroid.backend.auth import require_read, require_write
from toroid.backend.paging import LIST_RESPONSES, Conditional, after_query, limit_query
from toroid.backend.schemas import JobRecord, MinimumRecord
from toroid.backend.services import minima as service
from toroid.backend.services.tables import CSV_MEDIA_TYPE, FORMAT_DOC, TableFormat, attachment, csv_text
from toroid.store.errors import Invalid
from toroid.store.params import TrainRequest
from toroid.store.settings import get_settings
from toroid.store.users import Principal

router = APIRouter(tags=["minima"], responses=AUTH_RESPONSES)

FORM_FIELDS = ("architecture", "config", "dataset", "dataset_options", "name", "key_map")

UPLOAD_OPENAPI: dict[str, Any] = multipart_openapi(["file"], {
    "file": {"type": "string", "format": "binary",
             "description": ".safetensors, or a .pt torch state_dict (read with weights_only)"},
    "sidecar": {"type": "string", "format": "binary",
                "description": "JSON written by `toroid train`: architecture, config, dataset, "
                "dataset_options, name, sampler, seed, provenance"},
    "architecture": {"type": "string", "description": "GET /api/architectures"},
    "config": {"type": "string", "default": "{}", "description": "JSON object"},
    "dataset": {"type": "string", "description": "GET /api/datasets"},
    "dataset_options": {"type": "string", "default": "{}", "description": "JSON object"},
    "name": {"type": "string", "maxLength": 200},
})


@router.get("/minima", response_model=list[MinimumRecord],
            summary="Minima, newest first: all of them, or pages with limit/after (format=csv: the minima table as "
                    "CSV); ETag and If-None-Match for cheap polls",
            responses={200: {"content": {"text/csv": {}}, "description": "JSON records, or the CSV table"},
                       **LIST_RESPONSES})
def list_minima(
    request: Request, response: Response, session: SessionDep,
    format: TableFormat = Query("json", description=FORMAT_DOC),
    limit: int | None = limit_query(), after: str | None = after_query(),
    principal: Principal = Depends(require_read),
) -> Any:
    page = service.minima_page(session, limit=limit, after=after)
    answer = Conditional.of(request, principal, page, service.minima_fingerprint(session, page, csv=format == "csv"))
    if answer.not_modified:
        return answer.unchanged()
    records = service.minimum_records(session, page.rows)
    if format == "csv":
        return answer.decorate(Response(csv_text(*service.minima_table(session, records)),
                                        media_type=CSV_MEDIA_TYPE, headers=attachment("toroid-minima.csv")))
    answer.decorate(response)
    return records


@router.post(
    "/minima", status_code=201, response_model=MinimumRecord,
    summary="Upload a checkpoint (multipart: file + architecture/config/dataset/name, or file + sidecar); its "
            "train/test errors follow from an evaluation job (evaluation: pending)",
    openapi_extra=UPLOAD_OPENAPI,
    responses={400: {"description": "malformed multipart body"}, 413: {"description": "upload too large"},
               415: {"description": "not multipart/form-data"}, 422: {"description": "invalid checkpoint"},
               503: {"description": "the message broker is unreachable (nothing was stored)"}},
)
async def upload_minimum(request: Request, principal: Principal = Depends(require_write)) -> dict:
    limits = UploadLimits(get_settings().max_upload_mb, max_files=2, max_fields=len(FORM_FIELDS) + 1)
    form = await read_multipart(request, limits)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise Invalid("the multipart field 'file' must be the checkpoint file "
                          "(curl -F file=@model.safetensors ...)")
        if file.size is not None and file.size > limits.limit_mb * MiB:
            raise limits.too_large()
        sidecar_part = form.get("sidecar")
        if sidecar_part is not None and not isinstance(sidecar_part, UploadFile):
            sidecar = str(sidecar_part).encode()
        elif sidecar_part is not None and (sidecar_part.size or 0) > MiB:
            raise field_too_large("the sidecar")
        else:
            sidecar = await sidecar_part.read() if sidecar_part is not None else None
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and k in FORM_FIELDS}
        data = await file.read()
        filename = file.filename
    finally:
        await form.close()
    return await run_in_threadpool(service.create_from_upload, fields, data, sidecar, filename, principal.name)


@router.post("/minima/train", status_code=202, response_model=JobRecord,
             responses={**BODY_RESPONSES, 503: {"description": "the message broker is unreachable"}},
             summary="Train a minimum with a sampler (a job; job.minimum_id is set on success)")
def train_minimum(request: TrainRequest, session: SessionDep, principal: Principal = Depends(require_write)) -> dict:
    return service.train(session, request, owner=principal.name).to_record()


@router.get("/minima/{minimum_id}", response_model=MinimumRecord, dependencies=[Depends(require_read)],
            responses={404: {"description": "unknown minimum"}})
def read_minimum(minimum_id: str, session: SessionDep) -> dict:
    return service.minimum_record(session, service.get_minimum(session, minimum_id))


@router.delete("/minima/{minimum_id}", status_code=204,
               responses={403: {"description": "someone else's minimum"}, 404: {"description": "unknown minimum"},
                          409: {"description": "queued or running jobs use the minimum (force=true cancels them)"}})
def delete_minimum(
    minimum_id: str, session: SessionDep,
    force: bool = Query(False, description="Cancel the queued or running jobs that use the minimum, then delete it."),
    principal: Principal = Depends(require_write),
) -> Response:
    service.delete(session, minimum_id, force=force, principal=principal)
    return Response(status_code=204)


@router.get(
    "/minima/{minimum_id}/checkpoint",
    summary="The checkpoint as safetensors; form=canonical gives the normalized network (docs/method.md §2)",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "safetensors bytes"},
               404: {"description": "unknown minimum or missing file"}},
)
def download_checkpoint(
    minimum_id: str, session: SessionDep, form: Literal["original", "canonical"] = Query("original"),
    principal: Principal = Depends(require_read),
) -> Response:
    minimum = service.get_minimum(session, minimum_id)
    filename = service.download_name(minimum, form)  # before the bytes: computing them may commit (and expire it)
    data = service.checkpoint_bytes(session, minimum, form, principal)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(content=data, media_type="application/octet-stream", headers=headers)
