"""Request and response schemas of the HTTP API (the contract the dashboard relies on; see docs/api.md).

Requests are strict (unknown fields are an error, numbers are bounded) so a typo gives a 422 that names it instead
of being ignored. Each analysis request's ``model_dump()`` is its parameter set with every default filled in: that
normalized form is what the result key hashes (toroid.store.ledger.result_key).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

JobKind = Literal["train", "flatness", "path", "distances", "section", "torus", "study"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
PathKind = Literal["linear", "linear_aligned", "geodesic", "one_bend", "flip"]
BendKind = Literal["geodesic", "linear_aligned", "linear", "flip"]

MAX_EPOCHS = 10_000
Id = Field(min_length=1, max_length=64, description="A minimum id (GET /api/minima).")


class Strict(BaseModel):
    """Request bodies: unknown fields are errors and values are not coerced (``"3"`` is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ----------------------------------------------------------------------------------------------- registries
class ArchitectureInfo(BaseModel):
    name: str
    description: str
    defaults: dict[str, Any]
    binary: bool


class DatasetInfo(BaseModel):
    name: str
    description: str
    options: dict[str, Any]
    available: bool


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
    train_error: float = Field(description="Fraction of training samples misclassified, in [0, 1].")
    test_error: float = Field(description="Fraction of test samples misclassified, in [0, 1].")
    local_energy: float | None = Field(description="Local energy at the largest sigma of the latest flatness run.")
    flatness_result_id: str | None
    provenance: dict[str, Any]
    checkpoint_sha256: str
    created_at: str
    source: Literal["upload", "train", "demo"]
    job_id: str | None


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
    created_at: str
    started_at: str | None
    finished_at: str | None


class ResultRecord(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    minimum_ids: list[str]
    data: dict[str, Any]
    created_at: str
    key: str


class AnalysisResponse(BaseModel):
    cached: bool = Field(description="True when the identical request was computed before (HTTP 200).")
    job: JobRecord
    result: ResultRecord | None = None


class DemoResponse(BaseModel):
    queued: int


# ----------------------------------------------------------------------------------------------- requests
class TrainRequest(Strict):
    """Train a minimum with one of the samplers of docs/method.md §8 (GET /api/samplers)."""

    architecture: str = Field("mlp", max_length=64, description="GET /api/architectures")
    config: dict[str, Any] = Field(default_factory=dict, description="Overrides of the architecture's defaults.")
    dataset: str = Field("digits", max_length=64, description="GET /api/datasets")
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    sampler: str = Field("sgd", max_length=64, description="GET /api/samplers")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Overrides of the sampler defaults.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Default: the sampler's epoch budget.")
    target_error: float = Field(0.0, ge=0.0, le=1.0, description="Stop early once the train error is at most this.")
    name: str | None = Field(None, max_length=200, description="Default: '<sampler>-<seed>'.")


class FlatnessRequest(Strict):
    """Local energy dE_train(w, sigma) of one minimum (docs/method.md §6)."""

    minimum_id: str = Id
    sigmas: list[float] | None = Field(
        None, min_length=1, max_length=64, description="Noise scales (flip fractions for binary networks); "
        "null: the architecture's default range."
    )
    samples: int = Field(100, ge=1, le=10_000, description="Noise samples per sigma (the paper uses 100).")
    mode: Literal["fast", "exact"] = "fast"
    noise_on: Literal["all", "weights"] = Field("all", description="Which parameters get multiplicative noise.")

    @field_validator("sigmas")
    @classmethod
    def _sigmas_in_range(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        bad = [s for s in value if not (0.0 <= s <= 10.0)]
        if bad:
            raise ValueError(f"every sigma must be in [0, 10]; got {bad}")
        return [float(s) for s in value]


class PathRequest(Strict):
    """Error profile along a path between two minima (docs/method.md §7)."""

    a: str = Id
    b: str = Id
    kind: PathKind = Field(
        "geodesic", description="linear (raw), linear_aligned, geodesic (normalize + align, the paper's method), "
        "one_bend (through a retrained midpoint), flip (binary networks)."
    )
    points: int = Field(33, ge=2, le=1025, description="Evenly spaced points in x along the path.")
    bn: Literal["recompute", "interpolate"] = Field("recompute", description="BatchNorm statistics at each point.")
    bend_kind: BendKind = Field("geodesic", description="Segments of a one_bend path (flip: binary networks).")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Retraining epochs of the bend (one_bend).")

    @model_validator(mode="after")
    def _drop_unused(self) -> PathRequest:
        # Fields that do not apply to the kind are normalized away, so they do not split the result cache.
        if self.kind != "one_bend":
            self.bend_kind = "geodesic"
            self.epochs = None
        return self


class DistancesRequest(Strict):
    """Distances between every pair of minima (docs/method.md §5)."""

    minimum_ids: list[str] = Field(min_length=2, max_length=32)


class SectionRequest(Strict):
    """Two-dimensional section through three minima (docs/method.md §7, Gram-Schmidt plane)."""

    minimum_ids: list[str] = Field(min_length=3, max_length=3)
    space: Literal["raw", "normalized"] = "raw"
    resolution: int = Field(21, ge=3, le=101, description="Grid points per axis.")
    margin: float = Field(0.2, ge=0.0, le=2.0, description="Extra room around the three points, relative.")


class TorusRequest(Strict):
    """Two-dimensional torus slice through two or three normalized, aligned minima (docs/method.md)."""

    minimum_ids: list[str] = Field(min_length=2, max_length=3)
    resolution: int = Field(33, ge=3, le=129, description="Grid points per torus angle.")
