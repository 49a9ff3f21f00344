"""Minima: list, upload (validated synchronously), train (a job), delete, download checkpoints.

An upload is checked completely before anything is stored: the body size while it streams in (413), the file
format (safetensors, or a torch state_dict read with ``weights_only=True``, which refuses code-executing pickles
without running them), the exact keys and shapes of the declared architecture for the declared dataset, and one
evaluation (train/test error). Any failure answers 4xx and leaves the database and the artifact store unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from toroid.backend.api.deps import (
    AUTH_RESPONSES,
    BODY_RESPONSES,
    get_minimum,
    resolve_architecture,
    resolve_dataset,
    unprocessable,
)
from toroid.backend.auth import require_read, require_write
from toroid.backend.schemas import JobRecord, MinimumRecord, TrainRequest
from toroid.store.artifacts import CheckpointError, check_state_dict, get_store, load_model, read_checkpoint
from toroid.store.db import get_session, new_session
from toroid.store.ledger import BrokerUnavailable, clean_json, create_job
from toroid.store.models import Minimum, new_id, utcnow
from toroid.store.settings import get_settings

router = APIRouter(tags=["minima"], responses=AUTH_RESPONSES)

MiB = 2**20
#: Room for the form fields and the sidecar on top of the checkpoint size limit.
FIELD_SLACK = 1 * MiB
FORM_FIELDS = ("architecture", "config", "dataset", "dataset_options", "name")

UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
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
                    },
                }
            }
        },
    }
}


def _too_large(limit_mb: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the upload exceeds the limit of {limit_mb} MiB (TOROID_MAX_UPLOAD_MB); raise the limit on the server or "
        "upload a smaller checkpoint",
    )


async def _read_form(request: Request, limit_mb: int):
    """Parse the multipart body, counting bytes as they stream in and stopping at the limit (413)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the checkpoint as multipart/form-data (got content-type {content_type or 'none'!r}), e.g. "
            "curl -F file=@model.safetensors -F architecture=mlp -F dataset=digits .../api/minima",
        )
    limit = limit_mb * MiB + FIELD_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit_mb)

    async def limited():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit_mb)
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=2, max_fields=len(FORM_FIELDS) + 1,
                             max_part_size=MiB)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc.message}") from exc


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise unprocessable(f"{field} is not valid JSON ({exc}); send a JSON object such as {{}}") from exc
    if not isinstance(value, dict):
        raise unprocessable(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def _upload_spec(fields: dict[str, str], sidecar: bytes | None, filename: str | None) -> dict[str, Any]:
    """What the upload claims to be: from the form fields, or from the sidecar of `toroid train`."""
    name = fields.get("name", "").strip()
    if sidecar is not None:
        from toroid.worker.landscape.io import parse_sidecar

        try:
            meta = parse_sidecar(sidecar)
        except ValueError as exc:
            raise unprocessable(f"{exc}; upload the .json file `toroid train` wrote next to the checkpoint") from exc
        for field in ("architecture", "dataset"):
            given = fields.get(field, "").strip()
            if given and given != meta[field]:
                raise unprocessable(f"the form says {field}={given!r} but the sidecar says {meta[field]!r}; send one")
        provenance = dict(meta.get("provenance") or {})
        seed, sampler = provenance.get("seed"), provenance.get("sampler")
        spec = {
            "architecture": meta["architecture"], "config": dict(meta.get("config") or {}),
            "dataset": meta["dataset"], "dataset_options": dict(meta.get("dataset_options") or {}),
            "name": name or meta["name"], "sampler": sampler if isinstance(sampler, str) else None,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "provenance": provenance,
        }
    else:
        missing = [f for f in ("architecture", "dataset") if not fields.get(f, "").strip()]
        if missing:
            raise unprocessable(
                f"missing form field(s) {missing}: give architecture and dataset (GET /api/architectures, "
                "GET /api/datasets), or upload the sidecar JSON of `toroid train` as the field 'sidecar'"
            )
        spec = {
            "architecture": fields["architecture"].strip(), "config": _json_object(fields.get("config", ""), "config"),
            "dataset": fields["dataset"].strip(),
            "dataset_options": _json_object(fields.get("dataset_options", ""), "dataset_options"),
            "name": name, "sampler": None, "seed": None, "provenance": {},
        }
    if not spec["name"]:
        stem = PurePath(filename or "").stem  # a display name only; never used as a path
        spec["name"] = stem or "upload"
    if len(spec["name"]) > 200:
        raise unprocessable("name is longer than 200 characters")
    return spec


def _evaluate(spec: dict[str, Any], config: dict, input_shape: tuple[int, ...], num_classes: int, state: dict
              ) -> tuple[float, float]:
    from toroid.worker.landscape.data import load_dataset
    from toroid.worker.landscape.evaluate import Evaluator

    try:
        dataset = load_dataset(spec["dataset"], **spec["dataset_options"])
        model = load_model(spec["architecture"], config, input_shape, num_classes, state)
        errors = Evaluator(model, dataset).evaluate_state(model, "both")
    except Exception as exc:
        raise unprocessable(f"the model could not be evaluated on dataset {spec['dataset']!r}: {exc}") from exc
    return float(errors["train_error"]), float(errors["test_error"])


def _referenced(session: Session, sha256: str) -> bool:
    return session.scalar(
        select(Minimum.id).where(or_(Minimum.checkpoint_sha256 == sha256, Minimum.canonical_sha256 == sha256))
        .limit(1)
    ) is not None


def _create_from_upload(fields: dict[str, str], data: bytes, sidecar: bytes | None, filename: str | None) -> dict:
    spec = _upload_spec(fields, sidecar, filename)
    options, input_shape, num_classes = resolve_dataset(spec["dataset"], spec["dataset_options"])
    spec["dataset_options"] = options
    template, config = resolve_architecture(spec["architecture"], spec["config"], input_shape, num_classes)
    what = (f"architecture {spec['architecture']!r} (config {config}) on dataset {spec['dataset']!r} "
            f"(inputs {input_shape}, {num_classes} classes)")
    try:
        state = check_state_dict(read_checkpoint(data), template, what)
    except CheckpointError as exc:
        raise unprocessable(str(exc)) from exc
    train_error, test_error = _evaluate(spec, config, input_shape, num_classes, state)

    store = get_store()
    sha = store.put_state_dict(state)
    minimum = Minimum(
        id=new_id(), name=spec["name"], architecture=spec["architecture"], config=clean_json(config),
        dataset=spec["dataset"], dataset_options=clean_json(options), sampler=spec["sampler"], seed=spec["seed"],
        train_error=train_error, test_error=test_error, provenance=clean_json(spec["provenance"]),
        checkpoint_sha256=sha, source="upload", created_at=utcnow(),
    )
    with new_session() as session:
        try:
            session.add(minimum)
            session.commit()
        except BaseException:
            session.rollback()
            if not _referenced(session, sha):
                store.delete(sha)
            raise
        return minimum.to_record()


@router.get("/minima", response_model=list[MinimumRecord], dependencies=[Depends(require_read)],
            summary="All minima, newest first")
def list_minima(session: Session = Depends(get_session)) -> list[dict]:
    rows = session.scalars(select(Minimum).order_by(Minimum.created_at.desc(), Minimum.id)).all()
    return [m.to_record() for m in rows]


@router.post(
    "/minima", status_code=201, response_model=MinimumRecord, dependencies=[Depends(require_write)],
    summary="Upload a checkpoint (multipart: file + architecture/config/dataset/name, or file + sidecar)",
    openapi_extra=UPLOAD_OPENAPI,
    responses={400: {"description": "malformed multipart body"}, 413: {"description": "upload too large"},
               415: {"description": "not multipart/form-data"}, 422: {"description": "invalid checkpoint"}},
)
async def upload_minimum(request: Request) -> dict:
    settings = get_settings()
    form = await _read_form(request, settings.max_upload_mb)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise unprocessable("the multipart field 'file' must be the checkpoint file "
                                "(curl -F file=@model.safetensors ...)")
        if file.size is not None and file.size > settings.max_upload_mb * MiB:
            raise _too_large(settings.max_upload_mb)
        sidecar_part = form.get("sidecar")
        if sidecar_part is not None and not isinstance(sidecar_part, UploadFile):
            sidecar = str(sidecar_part).encode()
        else:
            sidecar = await sidecar_part.read() if sidecar_part is not None else None
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and k in FORM_FIELDS}
        data = await file.read()
        filename = file.filename
    finally:
        await form.close()
    return await run_in_threadpool(_create_from_upload, fields, data, sidecar, filename)


def validate_train(request: TrainRequest, source: str = "train") -> dict[str, Any]:
    """Check a training request synchronously; returns the job params with every default filled in."""
    from toroid.worker.landscape.nets import ARCHITECTURES
    from toroid.worker.landscape.samplers import SAMPLERS, resolve_hparams

    options, input_shape, num_classes = resolve_dataset(request.dataset, request.dataset_options)
    _template, config = resolve_architecture(request.architecture, request.config, input_shape, num_classes)
    if request.sampler not in SAMPLERS:
        raise unprocessable(f"unknown sampler {request.sampler!r}; valid samplers: {sorted(SAMPLERS)}")
    spec = SAMPLERS[request.sampler]
    binary = ARCHITECTURES[request.architecture].binary
    if binary and not spec.binary_ok:
        ok = sorted(n for n, s in SAMPLERS.items() if s.binary_ok)
        raise unprocessable(f"sampler {request.sampler!r} trains continuous networks only and architecture "
                            f"{request.architecture!r} is binary: use one of {ok}")
    if not binary and spec.binary_only:
        raise unprocessable(f"sampler {request.sampler!r} trains binary networks only and architecture "
                            f"{request.architecture!r} is continuous")
    try:
        hyperparameters = resolve_hparams(request.sampler, request.hyperparameters)
    except Exception as exc:
        raise unprocessable(str(exc)) from exc
    if request.epochs is not None:
        given = request.hyperparameters.get("epochs")
        if given is not None and given != request.epochs:
            raise unprocessable(f"epochs={request.epochs} and hyperparameters.epochs={given} disagree; give it once")
        hyperparameters["epochs"] = request.epochs
    epochs = hyperparameters.get("epochs")
    if not isinstance(epochs, int) or not 1 <= epochs <= 10_000:
        raise unprocessable(f"the epoch budget must be an integer in [1, 10000], got {epochs!r}")
    return clean_json({
        "architecture": request.architecture, "config": config, "dataset": request.dataset,
        "dataset_options": options, "sampler": request.sampler, "hyperparameters": hyperparameters,
        "seed": request.seed, "epochs": epochs, "target_error": request.target_error,
        "name": request.name or f"{request.sampler}-{request.seed}", "source": source,
    })


def queue_job(session: Session, kind: str, params: dict[str, Any], key: str | None = None):
    try:
        return create_job(session, kind, params, key=key)
    except BrokerUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


@router.post("/minima/train", status_code=202, response_model=JobRecord, dependencies=[Depends(require_write)],
             responses={**BODY_RESPONSES, 503: {"description": "the message broker is unreachable"}},
             summary="Train a minimum with a sampler (a job; job.minimum_id is set on success)")
def train_minimum(request: TrainRequest, session: Session = Depends(get_session)) -> dict:
    params = validate_train(request)
    return queue_job(session, "train", params).to_record()


@router.get("/minima/{minimum_id}", response_model=MinimumRecord, dependencies=[Depends(require_read)],
            responses={404: {"description": "unknown minimum"}})
def read_minimum(minimum_id: str, session: Session = Depends(get_session)) -> dict:
    return get_minimum(session, minimum_id).to_record()


@router.delete("/minima/{minimum_id}", status_code=204, dependencies=[Depends(require_write)],
               responses={404: {"description": "unknown minimum"}})
def delete_minimum(minimum_id: str, session: Session = Depends(get_session)) -> Response:
    minimum = get_minimum(session, minimum_id)
    artifacts = [h for h in (minimum.checkpoint_sha256, minimum.canonical_sha256) if h]
    session.delete(minimum)
    session.commit()
    store = get_store()
    for sha in artifacts:
        if not _referenced(session, sha):
            store.delete(sha)
    return Response(status_code=204)


def _download_name(minimum: Minimum, form: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", minimum.name).strip("._")[:80] or minimum.id
    return f"{safe}-{form}.safetensors"


@router.get(
    "/minima/{minimum_id}/checkpoint", dependencies=[Depends(require_read)],
    summary="The checkpoint as safetensors; form=canonical gives the normalized network (docs/method.md §2)",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "safetensors bytes"},
               404: {"description": "unknown minimum or missing file"}},
)
def download_checkpoint(
    minimum_id: str,
    form: Literal["original", "canonical"] = Query("original"),
    session: Session = Depends(get_session),
) -> Response:
    minimum = get_minimum(session, minimum_id)
    store = get_store()
    try:
        if form == "original":
            data = store.get_bytes(minimum.checkpoint_sha256)
        elif minimum.canonical_sha256 and store.exists(minimum.canonical_sha256):
            data = store.get_bytes(minimum.canonical_sha256)
        else:
            data = _canonical_bytes(minimum)
            minimum.canonical_sha256 = store.put_bytes(data)
            session.commit()
    except FileNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the checkpoint file of minimum {minimum.id} is missing "
                            "from the artifact store; upload it again") from exc
    headers = {"Content-Disposition": f'attachment; filename="{_download_name(minimum, form)}"'}
    return Response(content=data, media_type="application/octet-stream", headers=headers)


def _canonical_bytes(minimum: Minimum) -> bytes:
    """The normalized network (scale symmetry removed; docs/method.md §2) as safetensors bytes."""
    from toroid.store.artifacts import state_dict_bytes
    from toroid.worker.landscape.data import dataset_info
    from toroid.worker.landscape.symmetry import normalize

    input_shape, num_classes = dataset_info(minimum.dataset, **(minimum.dataset_options or {}))
    state = get_store().get_state_dict(minimum.checkpoint_sha256)
    model = load_model(minimum.architecture, minimum.config or {}, input_shape, num_classes, state)
    return state_dict_bytes(normalize(model).state_dict())
