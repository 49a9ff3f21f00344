"""Shared pieces of the route modules: the session dependency and the documented error answers.

Routes only translate HTTP; the rules live in ``toroid.backend.services`` and raise typed errors
(``toroid.store.errors``) that one exception handler (``toroid.backend.main``) turns into 4xx/503 answers whose
``detail`` says what is wrong and how to fix it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.orm import Session

from toroid.store.db import get_session

#: One database session per request.
SessionDep = Annotated[Session, Depends(get_session)]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong API token (only when the server sets TOROID_API_TOKEN)."}
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body cannot be parsed (not UTF-8 JSON)."},
    422: {"description": "The request is invalid; `detail` says what is wrong."},
}
