"""Typed parameters of every job kind, and the checks that turn a request into them.

The API's request bodies are the ``*Request`` models below (strict: unknown fields are errors, values are not
coerced, numbers are bounded). A job stores its parameters as the ``model_dump()`` of the matching ``*Job`` model
(the request plus the ids of its input minima), and the worker reads them back through the same model
(``job_params``): the task receives a typed request, never a bare dict. ``model_dump()`` of an analysis request is
its parameter set with every default filled in: that normalized form is what the result key hashes
(``toroid.store.ledger.result_key``).

``resolve_dataset``, ``resolve_architecture`` and ``resolve_train`` check names and options against the core's
registries (the one source of truth) and raise ``toroid.store.errors.Invalid`` with the fix; the API and the
study engine both use them, so a study trains exactly what ``POST /api/minima/train`` would. Dataset size options
are capped by the registry (``dataset_info`` raises with the cap), and a training must fit the server's cost limit
(``toroid.store.cost``, ``TOROID_MAX_JOB_COST``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from toroid.store.errors import Invalid
from toroid.store.settings import get_settings
from toroid.store.text import check_json_depth, check_name, relative_paths

JobKind = Literal["train", "evaluate", "flatness", "sharpness", "path", "distances", "section", "torus", "study"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
PathKind = Literal["linear", "linear_aligned", "geodesic", "one_bend", "flip"]
BendKind = Literal["geodesic", "linear_aligned", "linear", "flip"]

MAX_EPOCHS = 10_000
Id = Field(min_length=1, max_length=64, description="A minimum id (GET /api/minima).")


class Strict(BaseModel):
    """Request bodies: unknown fields are errors and values are not coerced (``"3"`` is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ============================================================================================= requests
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
    target_error: float | None = Field(
        0.0, ge=0.0, le=1.0, description="Stop early once the train error is at most this; null: run the whole epoch "
        "budget and its schedule (the paper's protocol, docs/samplers.md).")
    name: str | None = Field(None, max_length=200, description="Default: '<sampler>-<seed>'.")

    @field_validator("name")
    @classmethod
    def _visible_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("config", "dataset_options", "hyperparameters")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_depth(value, "this field")
        bad = _non_finite(value)
        if bad:
            raise ValueError(f"{bad} is not a finite number: send finite numbers only")
        return value


def _non_finite(value: Any, where: str = "value") -> str | None:
    """The place of the first NaN or infinity inside a JSON-like value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        return next((w for k, v in value.items() if (w := _non_finite(v, f"{where}.{k}"))), None)
    if isinstance(value, list | tuple):
        return next((w for i, v in enumerate(value) if (w := _non_finite(v, f"{where}[{i}]"))), None)
    return None


class FlatnessRequest(Strict):
    """Local energy dE_train(w, sigma) of one minimum (docs/method.md §6)."""

    minimum_id: str = Id
    sigmas: list[float] | None = Field(
        None, min_length=1, max_length=64, description="Noise scales (flip fractions for binary networks); "
        "null: the architecture's default range."
    )
    samples: int = Field(100, ge=1, le=10_000, description="Noise samples per sigma: exactly this many (exact, the "
                         "paper's 100) or at most this many (fast); unused by sequential.")
    mode: Literal["sequential", "exact", "fast"] = Field(
        "sequential", description="sequential: full training set, noise samples in batches of 16 per sigma until the "
        "standard error is at most 0.05 percentage points or 10% of the value (at least 16, at most max_samples); "
        "exact: full training set, `samples` per sigma (the paper); fast: a 2048-sample subsample, stop below 0.5 "
        "points (docs/method.md §6).")
    max_samples: int = Field(1000, ge=16, le=100_000, description="Sequential mode: the cap of noise samples per "
                             "sigma; the result's `capped` flags the sigmas it stopped before the target held.")
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

    @model_validator(mode="after")
    def _drop_unused_counts(self) -> FlatnessRequest:
        # The count a mode does not use is normalized away, so it does not split the result cache.
        if self.mode == "sequential":
            self.samples = 100
        else:
            self.max_samples = 1000
        return self


class SharpnessRequest(Strict):
    """Top Hessian eigenvalue and Hessian trace of one minimum's training loss, on its normalized network
    (docs/method.md §6, "Hessian sharpness on the normalized network"); continuous networks only."""

    minimum_id: str = Id
    iterations: int = Field(30, ge=1, le=1000, description="At most this many Lanczos steps (fewer once converged).")
    probes: int = Field(20, ge=0, le=1000, description="Rademacher probes of Hutchinson's trace estimate (0: no "
                        "trace).")
    samples: int | None = Field(2048, ge=1, le=10_000_000, description="Training samples in the loss: a stratified "
                                "subsample of this size; null: the whole training set.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the subsample, the start vector and the probes.")


class PathRequest(Strict):
    """Error profile along a path between two minima (docs/method.md §7)."""

    a: str = Id
    b: str = Id
    kind: PathKind = Field(
        "geodesic", description="linear (raw), linear_aligned, geodesic (normalize + align, the paper's method), "
        "one_bend (through a retrained midpoint), flip (binary networks)."
    )
    points: int = Field(33, ge=2, le=1025, description="Evenly spaced points in x along the path.")
    bn: Literal["recompute", "interpolate"] = Field(
        "recompute", description="BatchNorm statistics at each point (docs/method.md §7); exported programs "
                                 "(architecture `export`) always interpolate: their statistics are fixed at export.")
    bend_kind: BendKind = Field("geodesic", description="Segments of a one_bend path (flip: binary networks).")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Retraining epochs of the bend (one_bend).")

    @model_validator(mode="after")
    def _drop_unused(self) -> PathRequest:
        # Fields that do not apply to the kind are normalized away, so they do not split the result cache.
        if self.kind != "one_bend":
            self.bend_kind = "geodesic"
            self.epochs = None
        return self


#: The most minima one distances request (and one map) may hold: MDS lays out up to this many (toroid/mds.py)
MAX_DISTANCES_MINIMA = 2000
#: The most minima one request may align pair by pair (``alignment: "pairwise"``): n (n - 1) / 2 alignments
MAX_PAIRWISE_MINIMA = 64
#: How a distances job removes the permutations (docs/method.md §5, "Many minima"): ``pairwise`` aligns every pair
#: (the paper's way, exact up to the alignment heuristic); ``reference`` aligns every minimum once to one reference
#: and measures in that common frame (an upper bound on the symmetry-reduced distance; one alignment per minimum)
DistanceAlignment = Literal["pairwise", "reference"]


class DistancesRequest(Strict):
    """Distances between every pair of minima (docs/method.md §5)."""

    minimum_ids: list[str] = Field(min_length=2, max_length=MAX_DISTANCES_MINIMA,
                                   description=f"2 to {MAX_DISTANCES_MINIMA} minima of one family; at most "
                                               f"{MAX_PAIRWISE_MINIMA} with alignment 'pairwise'.")
    alignment: DistanceAlignment = Field(
        "pairwise", description="'pairwise': align every pair (the paper's way; the default); 'reference': align "
        "every minimum once to the family's oldest minimum and measure in that common frame, an upper bound on the "
        "symmetry-reduced distance (docs/method.md §5, 'Many minima').")


class SectionRequest(Strict):
    """Two-dimensional section through three minima (docs/method.md §7, Gram-Schmidt plane)."""

    minimum_ids: list[str] = Field(min_length=3, max_length=3)
    space: Literal["raw", "normalized"] = "raw"
    resolution: int = Field(21, ge=3, le=101, description="Grid points per axis.")
    margin: float = Field(0.2, ge=0.0, le=2.0, description="Extra room around the three points, relative.")


class TorusRequest(Strict):
    """Two-dimensional torus slice through two or three normalized, aligned minima (docs/method.md §7)."""

    minimum_ids: list[str] = Field(min_length=2, max_length=3)
    resolution: int = Field(21, ge=3, le=129, description="Grid points per torus angle.")


# ============================================================================================= job parameters
class _Job(BaseModel):
    """Stored job parameters, read back by ``job_params`` leniently (JSON has no tuples; ints stand for floats)."""

    model_config = ConfigDict(extra="forbid", strict=False)
    job_kind: ClassVar[str]
    #: The estimate of store/cost.py when the checks computed it (not a parameter: never stored in ``params``).
    _estimated_cost: float | None = PrivateAttr(None)


class TrainJob(_Job):
    """A training job: every default filled in by ``resolve_train``."""

    job_kind: ClassVar[str] = "train"
    architecture: str
    config: dict[str, Any]
    dataset: str
    dataset_options: dict[str, Any]
    sampler: str
    hyperparameters: dict[str, Any]
    seed: int
    epochs: int
    target_error: float | None
    name: str
    source: Literal["train", "demo", "upload"] = "train"


class ChunkSpec(BaseModel):
    """One chunk of a long analysis split by point ranges (docs/operations.md, "Chunks"): the points
    ``start <= k < stop`` of job ``parent`` (a path's points; a grid's cells in their visit order), chunk ``index``
    of ``count``. ``prepared``: the parent prepared the input networks (normalized and aligned) and kept them in the
    artifact folder ``chunks/<parent>/``, so that every chunk computes in one frame. Set by a worker, never by a
    request."""

    model_config = ConfigDict(extra="forbid")
    parent: str = Field(pattern=r"^[0-9a-f]{16}$")  # a job id (models.new_id); it names the chunk's folder
    index: int = Field(ge=0)
    count: int = Field(ge=2)
    start: int = Field(ge=0)
    stop: int = Field(ge=1)
    prepared: bool = False


class _Analysis(_Job):
    """An analysis job: its request (the second base) plus its input minima."""

    minimum_ids: list[str] = Field(description="The input minima, in the order the computation takes them.")
    #: Set on the jobs a worker splits a long path, section or torus into (``toroid.worker.chunks``); requests
    #: have no such field, so the API never makes one.
    chunk: ChunkSpec | None = None


class FlatnessJob(_Analysis, FlatnessRequest):
    job_kind: ClassVar[str] = "flatness"


class PathJob(_Analysis, PathRequest):
    job_kind: ClassVar[str] = "path"


class DistancesJob(_Analysis, DistancesRequest):
    job_kind: ClassVar[str] = "distances"


class SectionJob(_Analysis, SectionRequest):
    job_kind: ClassVar[str] = "section"


class TorusJob(_Analysis, TorusRequest):
    job_kind: ClassVar[str] = "torus"


class SharpnessJob(_Analysis, SharpnessRequest):
    job_kind: ClassVar[str] = "sharpness"


class EvaluateJob(_Analysis):
    """The train and test error of an uploaded minimum (``minimum_ids``: that one minimum), computed on a worker
    so an upload never holds the API (docs/operations.md, "Running a shared server")."""

    job_kind: ClassVar[str] = "evaluate"


class StudyJob(_Job):
    job_kind: ClassVar[str] = "study"
    study_id: str
    name: str


JobParams = (TrainJob | EvaluateJob | FlatnessJob | SharpnessJob | PathJob | DistancesJob | SectionJob | TorusJob
             | StudyJob)
JOB_PARAMS: dict[str, type[_Job]] = {m.job_kind: m for m in (TrainJob, EvaluateJob, FlatnessJob, SharpnessJob, PathJob,
                                                       DistancesJob, SectionJob, TorusJob, StudyJob)}


def job_params(kind: str, params: dict[str, Any]) -> JobParams:
    """The typed parameters of a stored job of ``kind``."""
    return JOB_PARAMS[kind].model_validate(params, strict=False)  # type: ignore[return-value]


def analysis_job(kind: str, request: BaseModel, minimum_ids: list[str]) -> JobParams:
    """The job parameters of an analysis request on these input minima."""
    body = {k: v for k, v in request.model_dump().items() if k != "minimum_ids"}
    return job_params(kind, {**body, "minimum_ids": list(minimum_ids)})


def key_params(request: BaseModel) -> dict[str, Any]:
    """What a result key hashes of a request: its normalized parameters without the minimum ids (the inputs are
    hashed by their checkpoints instead, so the same question about the same weights is answered once). A distances
    request's default ``alignment: "pairwise"`` is left out: the keys of results computed before the option stay."""
    # ``chunk`` (job parameters only): a chunk is keyed by its parent's key and range (toroid.worker.chunks)
    params = {k: v for k, v in request.model_dump().items()
              if k not in ("a", "b", "minimum_id", "minimum_ids", "chunk")}
    if isinstance(request, DistancesRequest) and params.get("alignment") == "pairwise":
        del params["alignment"]
    return params


# ============================================================================================= resolution
#: The registry kind of the datasets users upload (``POST /api/datasets``); its option ``sha256`` names one.
UPLOAD_KIND = "upload"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ResolvedDataset(NamedTuple):
    """A checked dataset: its registry kind (an uploaded dataset's name resolves to ``upload``), its options with
    every default filled in (what a job and a minimum store), and the shapes it gives a network."""

    name: str
    options: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int


def dataset_available(name: str) -> bool:
    """Whether a registry dataset can be loaded on this server: the image sets (mnist, fashion_mnist, cifar10) when
    their files are found (under the data root, or a system folder; ``toroid.worker.landscape.data.locate``) or the
    server may download them (``TOROID_ALLOW_DOWNLOADS``); the others always."""
    from toroid.worker.landscape.data import DATASETS, VISION_SHAPES, locate

    if name not in DATASETS:
        return False
    if name in VISION_SHAPES:
        settings = get_settings()
        return settings.allow_downloads or locate(name, str(settings.resolved_data_root)) is not None
    return True


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def uploaded_dataset(name_or_id: str):
    """The uploaded dataset (``toroid.store.models.UploadedDataset``) of this name or id, or None."""
    from sqlalchemy import or_, select

    from toroid.store.db import new_session
    from toroid.store.models import UploadedDataset

    if not isinstance(name_or_id, str) or not name_or_id or len(name_or_id) > 64:
        return None
    with new_session() as session:
        return session.scalar(select(UploadedDataset).where(
            or_(UploadedDataset.id == name_or_id, UploadedDataset.name == name_or_id)))


def _canonical_upload(name: Any, options: Any) -> tuple[Any, Any]:
    """A dataset named by an uploaded dataset's name (or id) as the registry's ``("upload", {"sha256": ...})``;
    an ``upload`` whose ``sha256`` no uploaded dataset has is refused. Other names pass unchanged."""
    from toroid.worker.landscape.data import DATASETS

    if not isinstance(options, dict):
        return name, options
    if isinstance(name, str) and name not in DATASETS:
        row = uploaded_dataset(name)
        if row is None:
            return name, options
        given = options.get("sha256")
        if given is not None and given != row.id:
            raise Invalid(f"dataset {name!r} is the uploaded dataset {row.id}, but dataset_options.sha256 names "
                          f"{given!r}; leave sha256 out")
        return UPLOAD_KIND, {**options, "sha256": row.id}
    if name == UPLOAD_KIND:
        sha = options.get("sha256")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise Invalid(f"dataset {UPLOAD_KIND!r} needs the option sha256, the id of an uploaded dataset (64 "
                          f"lowercase hex digits; GET /api/datasets lists them), got {str(sha)[:80]!r}; or name the "
                          "uploaded dataset itself as the dataset")
        if uploaded_dataset(sha) is None:
            raise Invalid(f"no uploaded dataset has the id {sha}: upload it first (POST /api/datasets, "
                          "`toroid dataset add`); GET /api/datasets lists the uploaded ones")
    return name, options


def resolve_dataset(name: Any, options: Any) -> ResolvedDataset:
    """Validate a dataset name and its options; returns the registry kind, the options with defaults, the input
    shape and the number of classes.

    The name of an uploaded dataset (``POST /api/datasets``) resolves to the kind ``upload`` with its ``sha256``,
    which is what jobs and minima store. Files are read only from the data root (``TOROID_DATA_ROOT``, default
    ``<TOROID_HOME>/datasets``): the ``npz`` option ``path`` and the option ``root`` must point there (relative paths
    are taken from there, and an unset ``root`` means the data root itself; an uploaded dataset's ``root`` is
    always the data root). ``download=true`` is accepted only when the server allows downloads
    (``TOROID_ALLOW_DOWNLOADS``); the stored options never carry it (``None``: the process's setting), so a
    minimum's family does not depend on it.
    """
    from toroid.worker.landscape.data import DATASETS, dataset_info, set_allow_downloads, set_cache_limit_mb

    settings = get_settings()
    set_cache_limit_mb(settings.dataset_cache_mb)  # TOROID_DATASET_CACHE_MB, also when set in .env
    set_allow_downloads(settings.allow_downloads)  # TOROID_ALLOW_DOWNLOADS, likewise
    if not isinstance(options, dict):
        raise Invalid(f"dataset_options must be a JSON object, got {type(options).__name__}")
    name, options = _canonical_upload(name, options)
    if not isinstance(name, str) or name not in DATASETS:
        uploaded = _uploaded_names()
        raise Invalid(f"unknown dataset {name!r}; valid datasets: {sorted(set(DATASETS) - {UPLOAD_KIND})}"
                      + (f" and the uploaded {uploaded}" if uploaded else "")
                      + " (upload your own with POST /api/datasets or `toroid dataset add`)")
    unknown = sorted(set(options) - set(DATASETS[name].options))
    if unknown:
        raise Invalid(f"dataset {name!r} has no option(s) {unknown}; valid options: {sorted(DATASETS[name].options)}")
    full = {**DATASETS[name].options, **options}
    allowed_root = settings.resolved_data_root
    if "root" in full and full["root"] is None:
        full["root"] = "."
    for key in ("path", "root"):
        value = full.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _inside(allowed_root / value, allowed_root):
            raise Invalid(
                f"dataset option {key}={value!r}: data files must lie under the server's data root "
                f"(TOROID_DATA_ROOT; give a path relative to it, e.g. 'mydata.npz')"
            )
        full[key] = str((allowed_root / value).resolve())
    if name == UPLOAD_KIND and full.get("root") != str(allowed_root):
        raise Invalid("an uploaded dataset lives in the server's data root (TOROID_DATA_ROOT): leave the option "
                      "root out")
    if "download" in full:
        if full["download"] and not settings.allow_downloads:
            raise Invalid("dataset option download=true is refused: this server does not download data "
                          "(TOROID_ALLOW_DOWNLOADS is off); put the files under the server's data root "
                          "(TOROID_DATA_ROOT, docs/data.md) and leave download out, or upload them "
                          "(POST /api/datasets, `toroid dataset add`)")
        if full["download"] not in (None, True, False):
            raise Invalid(f"dataset option download must be true, false or null, got {full['download']!r}")
        full["download"] = None  # the process's setting decides; a minimum's family does not depend on it
    try:
        input_shape, num_classes = dataset_info(name, **full)
    except Exception as exc:  # the registry raises ValueError with the reason; odd values can raise TypeError
        reason = relative_paths(str(exc), {"$TOROID_DATA_ROOT": allowed_root})
        raise Invalid(f"dataset {name!r} with options {options}: {reason}") from exc
    return ResolvedDataset(name, full, tuple(input_shape), int(num_classes))


def _uploaded_names(limit: int = 20) -> list[str]:
    from sqlalchemy import select

    from toroid.store.db import new_session
    from toroid.store.models import UploadedDataset

    with new_session() as session:
        return list(session.scalars(select(UploadedDataset.name).order_by(UploadedDataset.name).limit(limit)))


def resolve_architecture(
    name: Any, config: Any, input_shape: tuple[int, ...], num_classes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate an architecture and config for a dataset shape; returns (template state_dict, full config)."""
    from toroid.store.loading import template_state
    from toroid.worker.landscape.registry import get_architecture

    try:
        spec = get_architecture(name)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    if not isinstance(config, dict):
        raise Invalid(f"config must be a JSON object, got {type(config).__name__}")
    try:
        return template_state(name, config, input_shape, num_classes)
    except Exception as exc:  # ValueError from the registry; bad value types raise TypeError and friends
        raise Invalid(
            f"architecture {name!r} with config {config} cannot be built for inputs of shape {input_shape} and "
            f"{num_classes} classes: {exc}" + (f". Defaults: {spec.defaults}" if spec.defaults else "")
        ) from exc


def resolve_train(request: TrainRequest, source: str = "train") -> TrainJob:
    """Check a training request; returns the job parameters with every default filled in."""
    from toroid.store.ledger import clean_json
    from toroid.worker.landscape.nets import is_binary_architecture
    from toroid.worker.landscape.samplers import SAMPLERS, resolve_hparams

    dataset, options, input_shape, num_classes = resolve_dataset(request.dataset, request.dataset_options)
    template, config = resolve_architecture(request.architecture, request.config, input_shape, num_classes)
    if request.sampler not in SAMPLERS:
        raise Invalid(f"unknown sampler {request.sampler!r}; valid samplers: {sorted(SAMPLERS)}")
    spec = SAMPLERS[request.sampler]
    binary = is_binary_architecture(request.architecture)
    if binary and not spec.binary_ok:
        ok = sorted(n for n, s in SAMPLERS.items() if s.binary_ok)
        raise Invalid(f"sampler {request.sampler!r} trains continuous networks only and architecture "
                      f"{request.architecture!r} is binary: use one of {ok}")
    if not binary and spec.binary_only:
        raise Invalid(f"sampler {request.sampler!r} trains binary networks only and architecture "
                      f"{request.architecture!r} is continuous")
    try:
        hyperparameters = resolve_hparams(request.sampler, request.hyperparameters)
    except Exception as exc:
        raise Invalid(str(exc)) from exc
    if request.epochs is not None:
        given = request.hyperparameters.get("epochs")
        if given is not None and given != request.epochs:
            raise Invalid(f"epochs={request.epochs} and hyperparameters.epochs={given} disagree; give it once")
        hyperparameters["epochs"] = request.epochs
    epochs = hyperparameters.get("epochs")
    if not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise Invalid(f"the epoch budget must be an integer in [1, {MAX_EPOCHS}], got {epochs!r}")
    cost = _check_train_cost(dataset, options, template, request.sampler, hyperparameters, epochs)
    job = TrainJob.model_validate(clean_json({
        "architecture": request.architecture, "config": config, "dataset": dataset,
        "dataset_options": options, "sampler": request.sampler, "hyperparameters": hyperparameters,
        "seed": request.seed, "epochs": epochs, "target_error": request.target_error,
        "name": request.name or f"{request.sampler}-{request.seed}", "source": source,
    }))
    job._estimated_cost = cost
    return job



def _check_train_cost(dataset: str, options: dict[str, Any], template: dict[str, Any], sampler: str,
                      hyperparameters: dict[str, Any], epochs: int) -> float:
    """A training's estimated cost (``toroid.store.cost``); ``TooCostly`` (422) above ``TOROID_MAX_JOB_COST``."""
    from toroid.store.cost import check_cost, parameter_count
    from toroid.worker.landscape.data import dataset_sizes

    try:
        n_train, n_test = dataset_sizes(dataset, **options)
    except Exception as exc:  # the registry's reason (options were checked by resolve_dataset already)
        raise Invalid(f"dataset {dataset!r}: {exc}") from exc
    params = {"sampler": sampler, "hyperparameters": hyperparameters, "epochs": epochs}
    return check_cost("train", params, parameter_count(template), n_train, n_test)
