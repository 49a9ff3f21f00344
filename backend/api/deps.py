"""Shared pieces of the route modules: the session dependency, the documented error answers, and the streamed
multipart reader of the upload routes (checkpoints, datasets).

Routes only translate HTTP; the rules live in ``toroid.backend.services`` and raise typed errors
(``toroid.store.errors``) that one exception handler (``toroid.backend.main``) turns into 4xx/503 answers whose
``detail`` says what is wrong and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from toroid.store.db import get_session
from toroid.store.errors import Malformed, TooLarge, Unsupported

#: One database session per request.
SessionDep = Annotated[Session, Depends(get_session)]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong API token (only when the server sets TOROID_API_TOKEN)."}
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body cannot be parsed (not UTF-8 JSON)."},
    422: {"description": "The request is invalid; `detail` says what is wrong."},
}


# ============================================================================================= streamed uploads
MiB = 2**20
#: Room for the form fields (and a sidecar) on top of an upload's size limit.
FIELD_SLACK = 1 * MiB


def multipart_openapi(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a multipart upload route (read by hand from the stream, so FastAPI cannot
    derive it): its fields and the required ones, for /docs and the schema tests."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}}


def field_too_large(what: str = "a form field", large: str = "the checkpoint, the field 'file',",
                    setting: str = "TOROID_MAX_UPLOAD_MB") -> TooLarge:
    return TooLarge(
        f"{what} exceeds the limit of 1 MiB for a form field or the sidecar (only {large} may be larger: up to "
        f"{setting})",
    )


def upload_too_large(limit_mb: int, setting: str = "TOROID_MAX_UPLOAD_MB",
                     smaller: str = "a smaller checkpoint") -> TooLarge:
    return TooLarge(
        f"the upload exceeds the limit of {limit_mb} MiB ({setting}); raise the limit on the server or upload "
        f"{smaller}",
    )


@dataclass(frozen=True)
class UploadLimits:
    """What one multipart route accepts: the size limit of its files (MiB, and the setting that sets it), how many
    file parts and fields, and the words of its 413/415 answers."""

    limit_mb: int
    setting: str = "TOROID_MAX_UPLOAD_MB"
    smaller: str = "a smaller checkpoint"
    large: str = "the checkpoint, the field 'file',"
    max_files: int = 2
    max_fields: int = 8
    example: str = "curl -F file=@model.safetensors -F architecture=mlp -F dataset=digits .../api/minima"
    what: str = "the checkpoint"

    def too_large(self) -> TooLarge:
        return upload_too_large(self.limit_mb, self.setting, self.smaller)


async def read_multipart(request: Request, limits: UploadLimits) -> FormData:
    """Parse a multipart body, counting bytes as they stream in and stopping at the limit (413); 415 for another
    media type, 400 for a malformed body, 413 for a form field above 1 MiB. The caller closes the form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise Unsupported(f"send {limits.what} as multipart/form-data (got content-type "
                          f"{content_type or 'none'!r}), e.g. {limits.example}")
    limit = limits.limit_mb * MiB + FIELD_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise limits.too_large()

    async def limited():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise limits.too_large()
            yield chunk

    parser = MultiPartParser(request.headers, limited(), max_files=limits.max_files, max_fields=limits.max_fields,
                             max_part_size=MiB)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        if "exceeded maximum size" in exc.message:  # starlette's words for a field above max_part_size
            raise field_too_large(large=limits.large, setting=limits.setting) from exc
        raise Malformed(f"malformed multipart body: {exc.message}") from exc
