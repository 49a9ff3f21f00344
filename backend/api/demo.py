"""POST /api/demo: queue the demo minima on first start (``toroid up`` calls it; see docs/dashboard.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_write
from toroid.backend.schemas import DemoResponse
from toroid.backend.services import minima as service

router = APIRouter(tags=["demo"], responses=AUTH_RESPONSES)


@router.post("/demo", response_model=DemoResponse, dependencies=[Depends(require_write)],
             summary="Queue the demo minima when there are no minima and no jobs yet")
def seed_demo(session: SessionDep) -> dict:
    return {"queued": service.seed_demo(session)}
