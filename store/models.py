"""Database tables (SQLAlchemy 2): minima, jobs, results, studies, users and uploaded datasets.

* ``Minimum``: a trained network (a checkpoint in the artifact store plus what it is: architecture, config,
  dataset, sampler provenance, its train/test error and, once measured, its local energy).
* ``Job``: one unit of background work and its live state (progress, partial results, heartbeat).
* ``Study``: a study (the paper's protocol as one job, docs/studies.md): its spec, its job, and the minimum /
  result id of every finished step.
* ``UploadedDataset``: a dataset a user uploaded (``POST /api/datasets``): its id is the sha256 of its content
  (``toroid.worker.landscape.data.DatasetArrays.sha256``), its arrays a canonical ``.npz`` under the data root
  (``uploaded_path``); the row holds its name, owner and summary (shapes, class counts).
* ``Result``: the outcome of an analysis, unique by ``key`` = sha256 of (kind, input checkpoint hashes and
  descriptions, parameters normalized with their defaults, ``toroid.worker.landscape.CODE_VERSION``), so the same
  question is answered once (see ``toroid.store.ledger.result_key``).

Large arrays never live here: checkpoints are files in the artifact store (``toroid.store.artifacts``), rows hold their
sha256; results hold the small JSON dicts of ``toroid.worker.landscape.results``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from toroid.store.db import Base

JOB_KINDS = ("train", "evaluate", "flatness", "sharpness", "path", "distances", "section", "torus", "study")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
MINIMUM_SOURCES = ("upload", "train", "demo")


def new_id() -> str:
    """A short random identifier (16 hex digits of a uuid4)."""
    return uuid.uuid4().hex[:16]


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (how SQLite and PostgreSQL ``timestamp`` columns both store it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset, or None."""
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat()


class Minimum(Base):
    __tablename__ = "minima"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sampler: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # None until an upload's evaluation job (``evaluation_job_id``) succeeds; a trained minimum has both at once.
    train_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    local_energy: Mapped[float | None] = mapped_column(Float, nullable=True)
    flatness_result_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    canonical_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16))
    # The training job that produced this minimum; unique so that a job delivered twice creates one minimum.
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    # The user who uploaded or trained it (None: made by a server without users, or by the demo).
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The job that evaluates an upload (migration 0004); its state says whether the errors are pending or failed.
    evaluation_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The program artifact of a minimum uploaded as a torch.export archive (architecture "export"; migration 0004).
    program_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # sha256 of the network's structure (``toroid.store.programs.structure_hash``): one family across sources.
    structure: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    def family(self) -> str:
        """The family key: minima with equal keys share one parameter space (``toroid.store.families``). The
        structure hash when known (any source: built-in, library, plugin, exported program), else architecture and
        config; with the dataset and its options."""
        space = {"structure": self.structure} if self.structure else {"architecture": self.architecture,
                                                                       "config": self.config or {}}
        text = json.dumps({**space, "dataset": self.dataset, "options": self.dataset_options or {}}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def to_record(self, evaluation_job: Job | None = None) -> dict[str, Any]:
        """The API's record; ``evaluation_job``: the job of ``evaluation_job_id`` when the errors are not known yet
        (its state tells a pending evaluation from a failed one)."""
        if self.train_error is not None and self.test_error is not None:
            evaluation, evaluation_error = "done", None
        elif evaluation_job is not None and evaluation_job.state in ("failed", "cancelled"):
            evaluation = "failed"
            evaluation_error = evaluation_job.error or f"the evaluation job was {evaluation_job.state}"
        else:
            evaluation, evaluation_error = "pending", None
        return {
            "id": self.id,
            "name": self.name,
            "architecture": self.architecture,
            "config": self.config or {},
            "dataset": self.dataset,
            "dataset_options": self.dataset_options or {},
            "sampler": self.sampler,
            "seed": self.seed,
            "train_error": self.train_error,
            "test_error": self.test_error,
            "evaluation": evaluation,
            "evaluation_job_id": self.evaluation_job_id,
            "evaluation_error": evaluation_error,
            "local_energy": self.local_energy,
            "flatness_result_id": self.flatness_result_id,
            "provenance": self.provenance or {},
            "checkpoint_sha256": self.checkpoint_sha256,
            "program_sha256": self.program_sha256,
            "symmetries": (self.provenance or {}).get("symmetries") if self.program_sha256 else None,
            "structure": self.structure,
            "family": self.family(),
            "created_at": iso(self.created_at),
            "source": self.source,
            "job_id": self.job_id,
            "owner": self.owner,
        }


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_heartbeat", "state", "heartbeat_at"),
        # At most one active job per result key: two identical requests arriving together share one computation.
        Index(
            "uq_jobs_active_key", "key", unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    partial: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Result key of analyses (None for training); an identical request while this job is active reuses it.
    key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    # indexed: the API finds the jobs of a result / a minimum by these (migration 0002)
    result_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    minimum_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Reliability: each claim by a worker increments ``attempts``; progress writes carry the attempt number, so
    # a worker whose job was re-enqueued after its heartbeat went stale can no longer write (see toroid.store.ledger).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The estimate of store/cost.py when the job was created (migration 0006): routes it and feeds its ETA.
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": float(self.progress or 0.0),
            "message": self.message or "",
            "partial": self.partial or {},
            "params": self.params or {},
            "result_id": self.result_id,
            "minimum_id": self.minimum_id,
            "error": self.error,
            "attempts": int(self.attempts or 0),
            "worker": self.worker,
            "queue": self.queue,
            "cost": self.cost,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "owner": self.owner,
        }


class Result(Base):
    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    minimum_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    code_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params or {},
            "minimum_ids": list(self.minimum_ids or []),
            "data": self.data or {},
            "created_at": iso(self.created_at),
            "key": self.key,
        }


class Study(Base):
    """One study: its spec, the job that runs it, and the minimum / result id of every finished step."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    def to_record(self, job: Job | None, total_steps: int | None = None) -> dict[str, Any]:
        outputs = self.outputs or {}
        return {
            "id": self.id, "name": self.name, "preset": self.preset, "key": self.key, "spec": self.spec or {},
            "job_id": self.job_id, "job": job.to_record() if job is not None else None,
            "state": job.state if job is not None else "queued",
            "progress": float(job.progress or 0.0) if job is not None else 0.0,
            "message": (job.message or "") if job is not None else "",
            "error": job.error if job is not None else None,
            "minimum_ids": [v["minimum_id"] for v in outputs.values() if v.get("minimum_id")],
            "result_ids": [v["result_id"] for v in outputs.values() if v.get("result_id")],
            "steps_done": len(outputs), "steps_total": total_steps,
            "outputs": outputs, "created_at": iso(self.created_at), "owner": self.owner,
        }


class User(Base):
    """A person with an API token (``toroid users add NAME``). Only the token's sha256 is stored: the token is
    shown once, when it is made. ``role``: ``user`` (may delete and cancel only what they own) or ``admin``."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": iso(self.created_at)}


class UploadedDataset(Base):
    """A dataset uploaded through ``POST /api/datasets`` (migration 0005). ``id`` is the sha256 of its content, so
    the same data is stored once; ``name`` is how requests name it (``dataset: "<name>"`` resolves to
    ``("upload", {"sha256": id})``, ``toroid.store.params.resolve_dataset``). The arrays live in
    ``<data root>/uploads/<id>.npz``; nothing large is stored here."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    train: Mapped[int] = mapped_column(Integer)
    test: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    num_classes: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    class_counts: Mapped[dict[str, list[int]]] = mapped_column(JSON)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    file_name: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id, "sha256": self.id, "name": self.name, "kind": "upload", "owner": self.owner,
            "created_at": iso(self.created_at), "train": self.train, "test": self.test,
            "input_shape": list(self.input_shape or []), "num_classes": self.num_classes,
            "class_names": self.class_names, "class_counts": self.class_counts or {}, "nbytes": self.nbytes,
            "file_name": self.file_name, "file_size": self.file_size,
            "dataset": "upload", "dataset_options": {"sha256": self.id},
        }
