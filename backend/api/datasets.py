"""Datasets: list (the registry's kinds and the uploaded ones), upload, read, delete (rules:
``toroid.backend.services.datasets``).

This module translates HTTP only: it streams the multipart upload in under ``TOROID_MAX_DATASET_MB`` (413 while it
arrives, 415 for another media type, 400 for a malformed body) and hands the files to the service, off the event
loop, which decodes and checks them completely before anything is stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from toroid.backend.api.deps import (
    AUTH_RESPONSES,
    MiB,
    SessionDep,
    UploadLimits,
    multipart_openapi,
    read_multipart,
)
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import DatasetInfo
from toroid.backend.services import datasets as service
from toroid.store.errors import Invalid
from toroid.store.settings import get_settings
from toroid.store.users import Principal

router = APIRouter(tags=["datasets"], responses=AUTH_RESPONSES)

#: The multipart parts of an upload: the name, and one .npz ('file') or the four IDX files ('files').
FILE_FIELDS = ("file", "files")
MAX_FILE_PARTS = 8  # more than an upload may hold, so that a fifth file gets the service's message, not a 400
EXAMPLE = "curl -F name=my-data -F file=@data.npz .../api/datasets"

UPLOAD_OPENAPI: dict[str, Any] = multipart_openapi(["name"], {
    "name": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
             "description": "How requests will name the dataset (not a built-in dataset's "
                            "name)."},
    "file": {"type": "string", "format": "binary",
             "description": ".npz with arrays x_train, y_train, x_test, y_test (and optionally "
                            "class_names); no pickled objects"},
    "files": {"type": "array", "items": {"type": "string", "format": "binary"},
              "description": "the four IDX files of an MNIST-style set (train-images, "
                             "train-labels, t10k-images, t10k-labels; gzipped or not)"},
})


@router.get("/datasets", response_model=list[DatasetInfo], dependencies=[Depends(require_read)],
            summary="Datasets: the built-in kinds, then the uploaded datasets (newest first)")
def list_datasets(session: SessionDep) -> list[dict]:
    return service.list_records(session)


@router.post(
    "/datasets", status_code=201, response_model=DatasetInfo, openapi_extra=UPLOAD_OPENAPI,
    summary="Upload a dataset (multipart: name + one .npz, or name + the four IDX files); the same content "
            "uploaded before answers 200 with its record",
    responses={200: {"description": "this content was uploaded before: its record"},
               400: {"description": "malformed multipart body"}, 409: {"description": "the name is taken"},
               413: {"description": "upload too large (TOROID_MAX_DATASET_MB)"},
               415: {"description": "not multipart/form-data"}, 422: {"description": "invalid name or data"}},
)
async def upload_dataset(request: Request, response: Response, principal: Principal = Depends(require_write)) -> dict:
    limits = UploadLimits(
        get_settings().max_dataset_mb, setting="TOROID_MAX_DATASET_MB", smaller="a smaller dataset (or a subset)",
        large="the dataset files, the fields 'file' and 'files',", max_files=MAX_FILE_PARTS, max_fields=4,
        example=EXAMPLE, what="the dataset")
    form = await read_multipart(request, limits)
    try:
        parts = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        stray = sorted({key for key, _ in parts if key not in FILE_FIELDS})
        if stray:
            raise Invalid(f"unexpected file field(s) {stray}: send the .npz as 'file', or the four IDX files as "
                          f"'files', e.g. {EXAMPLE}")
        if not parts:
            raise Invalid(f"no dataset file: send a .npz as the field 'file' (or the four IDX files as 'files'), "
                          f"e.g. {EXAMPLE}")
        if sum(part.size or 0 for _, part in parts) > limits.limit_mb * MiB:
            raise limits.too_large()
        name = form.get("name")
        files = [(part.filename, await part.read()) for _, part in parts]
    finally:
        await form.close()
    record, created = await run_in_threadpool(service.create_from_upload, name if isinstance(name, str) else None,
                                              files, principal.name)
    response.status_code = 201 if created else 200
    return record


@router.get("/datasets/{id_or_name}", response_model=DatasetInfo, dependencies=[Depends(require_read)],
            responses={404: {"description": "unknown dataset"}},
            summary="One dataset, by its name (built-in or uploaded) or an upload's id")
def read_dataset(id_or_name: str, session: SessionDep) -> dict:
    return service.get_record(session, id_or_name)


@router.delete("/datasets/{id_or_name}", status_code=204,
               responses={403: {"description": "someone else's dataset"}, 404: {"description": "unknown dataset"},
                          409: {"description": "minima or active jobs use it"}},
               summary="Delete an uploaded dataset (its owner or an admin), unless minima or active jobs use it")
def delete_dataset(id_or_name: str, session: SessionDep, principal: Principal = Depends(require_write)) -> Response:
    service.delete(session, id_or_name, principal)
    return Response(status_code=204)
