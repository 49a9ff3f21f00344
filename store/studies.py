"""Studies, the persistent part: the study record and its job, through the one job ledger.

A study record (``Study``, table ``studies``) is unique by the hash of its normalized spec
(``toroid.store.study_spec.spec_key``); it remembers its job and the minimum / result id of every finished step
(``outputs``), from which the report is built. ``open_study`` creates (or finds) the record and gives it an active
job through ``toroid.store.ledger.create_job``, published by task name (``toroid.study``) for a worker, or left
unpublished for the CLI, which runs it in its own process. The engine that executes a plan is
``toroid.worker.study``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from toroid.store.db import get_engine, new_session
from toroid.store.ledger import clean_json, create_job, publish_job
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Study, new_id, utcnow
from toroid.store.params import StudyJob, TrainJob
from toroid.store.study_spec import StudySpec, plan, spec_key, train_identity, validate_spec

_tables_ready: set[str] = set()


def ensure_tables() -> None:
    """Bring the schema up to date once per database (the CLI runs studies without the API's startup)."""
    from toroid.store.db import init_db

    url = str(get_engine().url)
    if url not in _tables_ready:
        init_db()
        _tables_ready.add(url)


def open_study(spec: StudySpec, *, preset: str | None = None, publish: bool = True, owner: str | None = None
               ) -> tuple[Study, Job, bool]:
    """The study of ``spec`` (created, or found by its key) with an active or finished job; ``started`` tells
    whether a new job was created (a new study, or a resume of a failed / cancelled one).

    ``publish``: send the job's Celery message (the API); the CLI runs the job in-process instead. ``owner``: who
    asks (a new study and its job are theirs; an existing study keeps its owner).
    """
    ensure_tables()
    validate_spec(spec)
    key = spec_key(spec)
    with new_session() as session:
        study = session.scalar(select(Study).where(Study.key == key))
        if study is None:
            study = Study(id=new_id(), key=key, name=spec.name, preset=preset, spec=spec.model_dump(), outputs={},
                          created_at=utcnow(), owner=owner)
            session.add(study)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                study = session.scalar(select(Study).where(Study.key == key))
        job = session.get(Job, study.job_id) if study.job_id else None
        if job is not None and job.state in (*ACTIVE_STATES, "succeeded"):
            return study, job, False
        job = create_job(session, StudyJob(study_id=study.id, name=spec.name), key=key, publish=False,
                         owner=study.owner)
        study.job_id = job.id
        session.commit()
        if publish and job.task_id is None:
            publish_job(session, job)
        return study, job, True


def get_study(study_id: str) -> tuple[Study, Job | None] | None:
    ensure_tables()
    with new_session() as session:
        study = session.get(Study, study_id)
        if study is None:
            return None
        return study, (session.get(Job, study.job_id) if study.job_id else None)


def list_studies() -> list[tuple[Study, Job | None]]:
    ensure_tables()
    with new_session() as session:
        studies = session.scalars(select(Study).order_by(Study.created_at.desc())).all()
        return [(s, session.get(Job, s.job_id) if s.job_id else None) for s in studies]


def study_record(study: Study, job: Job | None) -> dict[str, Any]:
    try:
        total = len(plan(StudySpec.model_validate(study.spec)))
    except Exception:
        total = None
    record = study.to_record(job, total)
    if job is not None:  # where its job stands: queue position, ETA, durations (store/eta.py)
        from toroid.store.eta import annotate

        with new_session() as session:
            record["job"] = annotate(session, [job])[0]
    return record


def step_output(study_id: str, step_id: str) -> dict[str, str] | None:
    """The recorded output (minimum or result id) of one step, or None when it has not finished."""
    with new_session() as session:
        study = session.get(Study, study_id)
        return (study.outputs or {}).get(step_id) if study is not None else None


def record_step(study_id: str, step_id: str, output: dict[str, str]) -> None:
    """Remember a finished step's output (the resume point and the report's index)."""
    with new_session() as session:
        study = session.get(Study, study_id)
        outputs = dict(study.outputs or {})
        outputs[step_id] = output
        session.execute(update(Study).where(Study.id == study.id).values(outputs=outputs))
        session.commit()


def record_steps(study_id: str, outputs: dict[str, dict[str, str]]) -> None:
    """Remember the outputs of several finished steps at once (one write per round of the study engine)."""
    if not outputs:
        return
    with new_session() as session:
        study = session.get(Study, study_id)
        merged = {**(study.outputs or {}), **outputs}
        session.execute(update(Study).where(Study.id == study.id).values(outputs=merged))
        session.commit()


def find_trained_minimum(session: Session, params: TrainJob) -> Minimum | None:
    """A minimum trained before with exactly these training params (from the API, the demo or a study)."""
    want = train_identity(params)
    rows = session.scalars(
        select(Minimum).where(Minimum.architecture == want["architecture"], Minimum.dataset == want["dataset"],
                              Minimum.sampler == want["sampler"], Minimum.seed == want["seed"])
        .order_by(Minimum.created_at)
    ).all()
    for row in rows:
        prov = row.provenance or {}
        have = clean_json({
            "architecture": row.architecture, "config": row.config or {}, "dataset": row.dataset,
            "dataset_options": row.dataset_options or {}, "sampler": row.sampler,
            "hyperparameters": prov.get("hyperparameters"), "seed": row.seed, "epochs": prov.get("epochs"),
            "target_error": prov.get("target_error"),
        })
        if have == want:
            return row
    return None
