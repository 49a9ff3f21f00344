"""Response schemas of the HTTP API (the contract the dashboard relies on; see docs/api.md).

The request bodies are the typed job requests of ``toroid.store.params`` (re-exported here): strict, so a typo
gives a 422 that names it instead of being ignored; a job's parameters are the same models, read by the worker.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from toroid.store.params import (  # noqa: F401  (the request bodies, re-exported for the routes and docs)
    DistancesRequest,
    FlatnessRequest,
    JobKind,
    JobState,
    PathRequest,
    SectionRequest,
    TorusRequest,
    TrainRequest,
)


# ----------------------------------------------------------------------------------------------- registries
class ArchitectureInfo(BaseModel):
    name: str
    description: str
    defaults: dict[str, Any]
    binary: bool
    path_kinds: list[str] = Field(description="Path kinds that fit this network (docs/method.md §7), one_bend last.")
    bend_kinds: list[str] = Field(description="Segment kinds of its one-bend paths, the default first.")
    source: Literal["builtin", "plugin", "torchvision", "timm"] = Field(
        "builtin", description="Toroid's own, or a package's `toroid.architectures` entry point (docs/models.md).")
    open_config: bool = Field(False, description="Any config keys are passed to the builder (which checks them).")


class TensorInfo(BaseModel):
    key: str
    shape: list[int]
    dtype: str


class ArchitectureLayout(BaseModel):
    architecture: str
    config: dict[str, Any] = Field(description="The config with every default filled in.")
    dataset: str
    dataset_options: dict[str, Any]
    input_shape: list[int]
    num_classes: int
    parameters: int = Field(description="Parameters and buffers (elements).")
    tensors: list[TensorInfo] = Field(description="The state_dict an upload must hold, in layer order.")


class DatasetInfo(BaseModel):
    """A dataset a request may name: a registry kind (``kind`` = ``name``) or an uploaded dataset (``kind``
    ``upload``; the fields from ``id`` on describe it). ``dataset`` and ``dataset_options`` are what a minimum or
    job naming it stores; a request may send ``name`` as its ``dataset`` instead."""

    name: str
    description: str
    options: dict[str, Any] = Field(description="The options a request may set, with their defaults.")
    available: bool
    kind: str = Field(description="The registry kind: the name itself, or 'upload' for an uploaded dataset.")
    dataset: str = Field(description="The dataset a minimum stores (the kind).")
    dataset_options: dict[str, Any] = Field(description="The options that pick it out: {} for a registry kind, "
                                                        "{'sha256': id} for an uploaded dataset.")
    id: str | None = Field(None, description="An uploaded dataset's sha256 (its content address).")
    sha256: str | None = None
    owner: str | None = None
    created_at: str | None = None
    train: int | None = Field(None, description="Training samples.")
    test: int | None = Field(None, description="Test samples.")
    input_shape: list[int] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    class_counts: dict[str, list[int]] | None = Field(None, description="Samples per class: {'train': [...], "
                                                                         "'test': [...]}.")
    nbytes: int | None = Field(None, description="Bytes of the decoded arrays.")
    file_name: str | None = Field(None, description="The uploaded file name(s), as sent.")
    file_size: int | None = Field(None, description="Bytes uploaded.")


class SamplerInfo(BaseModel):
    name: str
    description: str
    defaults: dict[str, Any]
    binary_ok: bool
    binary_only: bool = False
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Per hyperparameter: default, doc, type, choices, minimum, paper value."
    )
    reference: str = ""


# ----------------------------------------------------------------------------------------------- records
class MinimumRecord(BaseModel):
    id: str
    name: str
    architecture: str
    config: dict[str, Any]
    dataset: str
    dataset_options: dict[str, Any]
    sampler: str | None
    seed: int | None
    train_error: float | None = Field(description="Fraction of training samples misclassified, in [0, 1]; null until "
                                                "an upload's evaluation job has run (see `evaluation`).")
    test_error: float | None = Field(description="Fraction of test samples misclassified, in [0, 1]; null until "
                                               "an upload's evaluation job has run.")
    evaluation: Literal["done", "pending", "failed"] = Field(
        "done", description="`pending` while an upload's evaluation job (`evaluation_job_id`) is queued or running, "
                            "`failed` when it failed or was cancelled (`evaluation_error` says why).")
    evaluation_job_id: str | None = Field(None, description="The job that evaluates an uploaded minimum.")
    evaluation_error: str | None = Field(None, description="Why the evaluation failed (when `evaluation` is failed).")
    local_energy: float | None = Field(description="Local energy at the largest sigma of the latest flatness run.")
    flatness_result_id: str | None
    provenance: dict[str, Any]
    checkpoint_sha256: str
    program_sha256: str | None = Field(None, description="The program of a minimum uploaded as a torch.export "
                                                         "archive (architecture `export`).")
    structure: str | None = Field(None, description="sha256 of the network's structure (state_dict layout and unit "
                                                  "graph): equal structures are comparable whatever their source.")
    family: str = Field("", description="Minima with the same family key share one parameter space: they can be "
                                        "aligned, compared and drawn on one map (docs/models.md).")
    symmetries: dict[str, Any] | None = Field(None, description="For an exported program: which symmetries are "
                                              "removed, unit group by unit group, and the ops that stop them.")
    created_at: str
    source: Literal["upload", "train", "demo"]
    job_id: str | None
    owner: str | None = Field(None, description="Who uploaded or trained it (null: no users on this server).")


class JobRecord(BaseModel):
    id: str
    kind: JobKind
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    message: str
    partial: dict[str, Any] = Field(description="Partial results so far (path points, training curves).")
    params: dict[str, Any]
    result_id: str | None
    minimum_id: str | None
    error: str | None
    attempts: int = Field(description="How many times a worker started this job (more than 1 after a worker loss).")
    worker: str | None = Field(None, description="The worker process that holds it or ran it last ('<Celery "
                               "node name> pid <pid>'; several hosts: docs/operations.md); null until a worker takes "
                               "it and while a parked job waits (a study between its rounds, a split analysis between "
                               "its chunks).")
    queue: str | None = Field(None, description="Its Celery queue: 'interactive' (what a click starts, served by "
                              "workers of its own), 'cpu' or 'gpu' (training, studies, large analyses).")
    cost: float | None = Field(None, description="Its estimated cost in sample-parameter operations (docs/api.md).")
    created_at: str
    started_at: str | None
    finished_at: str | None
    owner: str | None = Field(None, description="Who started it (null: no users on this server).")
    queue_position: int | None = Field(None, description="While queued: 1 for the next job of its queue to start.")
    eta_s: float | None = Field(None, description="While queued or running: estimated seconds until it finishes "
                                "(null when unknown; docs/operations.md, Queues).")
    estimated_s: float | None = Field(None, description="Its own estimated run time in seconds.")
    wait_s: float | None = Field(None, description="Seconds it waited in its queue (so far, while queued).")
    duration_s: float | None = Field(None, description="Seconds it ran (so far, while running).")


class ResultRecord(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    minimum_ids: list[str]
    data: dict[str, Any]
    created_at: str
    key: str


class ResultSummary(BaseModel):
    """A result in ``GET /api/results``: what it is, without its ``data`` (``GET /api/results/{id}`` has it)."""

    id: str
    kind: str
    params: dict[str, Any]
    minimum_ids: list[str]
    created_at: str
    key: str
    job_id: str | None = None


class AnalysisResponse(BaseModel):
    cached: bool = Field(description="True when the identical request was computed before (HTTP 200).")
    job: JobRecord
    result: ResultRecord | None = None


class DemoResponse(BaseModel):
    queued: int
