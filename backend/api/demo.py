"""POST /api/demo: seed the demo (digits MLP minima, samplers sgd, rsgd, adv x seeds 0, 1) on an empty system."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from toroid.backend.api.deps import AUTH_RESPONSES
from toroid.backend.api.minima import queue_job, validate_train
from toroid.backend.auth import require_write
from toroid.backend.demo import DEMO_SAMPLERS, DEMO_SEEDS
from toroid.backend.schemas import DemoResponse, TrainRequest
from toroid.store.db import get_session
from toroid.store.models import Job, Minimum
from toroid.store.settings import get_settings

router = APIRouter(tags=["demo"], responses=AUTH_RESPONSES)


@router.post("/demo", response_model=DemoResponse, dependencies=[Depends(require_write)],
             summary="Queue the demo minima when there are no minima and no jobs yet")
def seed_demo(session: Session = Depends(get_session)) -> dict:
    if session.scalar(select(Minimum.id).limit(1)) is not None or session.scalar(select(Job.id).limit(1)):
        return {"queued": 0}
    epochs = get_settings().demo_epochs
    queued = 0
    for sampler in DEMO_SAMPLERS:
        for seed in DEMO_SEEDS:
            request = TrainRequest(architecture="mlp", dataset="digits", sampler=sampler, seed=seed, epochs=epochs,
                                   name=f"{sampler}-{seed}")
            queue_job(session, "train", validate_train(request, source="demo"))
            queued += 1
    return {"queued": queued}
