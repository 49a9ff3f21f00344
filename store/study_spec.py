"""Studies, the pure part: the spec, the presets, and the plan of steps (no database, no queue).

A *study spec* (``StudySpec``, JSON or YAML) names an architecture (optionally a sweep over one of its config keys),
a dataset, the samplers with their seeds and epoch budgets, and the analyses: local energy (docs/method.md §6),
optionally the Hessian sharpness of the normalized network (§6), the four Euclidean distances plus the geodesic one
(§5), error profiles along linear / linear_aligned / geodesic paths between pairs of minima (§7) and one-bend paths
(§7). docs/studies.md documents every key and the presets.

``plan(spec)`` lists the steps in a fixed, deterministic order (the resume contract): train every minimum, its
local energy, its sharpness (when enabled), the distance matrix, every path, every one-bend path.
``train_request`` and ``analysis_request`` give each step's job parameters exactly as the API would build them
(``toroid.store.params``), so a study shares the caches of the API: the same minimum, the same result key.
Persistence lives in ``toroid.store.studies``, the engine that runs a plan in ``toroid.worker.study``.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toroid.store.errors import Invalid
from toroid.store.ledger import canonical_hash, clean_json
from toroid.store.models import Minimum
from toroid.store.params import (
    DistancesRequest,
    FlatnessRequest,
    JobParams,
    PathRequest,
    SharpnessRequest,
    TrainJob,
    TrainRequest,
    analysis_job,
    key_params,
    resolve_dataset,
    resolve_train,
)

PairChoice = Literal["all", "within", "across"]
PathKindName = Literal["linear", "linear_aligned", "geodesic", "flip"]
BendKindName = Literal["geodesic", "linear_aligned", "linear", "flip"]


class StudyError(Invalid):
    """A study spec is invalid, or a step of a running study failed (the message says which and why)."""


# ============================================================================================= the spec
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplerEntry(_Spec):
    """One sampler of the study (docs/method.md §8). ``label`` names its minima and pair types (default: the sampler,
    or the binary sampler's variant)."""

    sampler: str = Field(description="A sampler of GET /api/samplers: sgd, rsgd, adv, sam, entropy_sgd, binary, ...")
    label: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_.+]+$")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Overrides of the sampler's defaults.")
    epochs: int | None = Field(None, ge=1, le=10_000, description="Epoch budget (default: the study's, else the "
                               "sampler's).")
    seeds: list[int] | None = Field(None, description="Seeds of this sampler (default: the study's seeds).")

    @property
    def name(self) -> str:
        return self.label or str(self.hyperparameters.get("variant") or self.sampler)


class FlatnessSpec(_Spec):
    """Local energy (docs/method.md §6) of every minimum."""

    enabled: bool = True
    sigmas: list[float] | None = Field(None, description="null: the architecture's default grid (flip fractions "
                                       "for binary networks).")
    samples: int = Field(100, ge=1, le=10_000, description="exact: noise samples per sigma; fast: at most this many.")
    mode: Literal["sequential", "exact", "fast"] = Field(
        "sequential", description="sequential: per sigma until the standard error is at most 0.05 points or 10% of "
        "the value, at most max_samples; exact: `samples` per sigma (the paper); fast: subsampled (docs/method.md §6).")
    max_samples: int = Field(1000, ge=16, le=100_000, description="Sequential mode: noise samples per sigma at most.")


class SharpnessSpec(_Spec):
    """Hessian sharpness of every minimum on its normalized network (docs/method.md §6, "Hessian sharpness on the
    normalized network"); off by default, so presets keep their steps. Continuous networks only."""

    enabled: bool = False
    iterations: int = Field(30, ge=1, le=1000, description="At most this many Lanczos steps.")
    probes: int = Field(20, ge=0, le=1000, description="Rademacher probes of the trace estimate (0: no trace).")
    samples: int | None = Field(2048, ge=1, le=10_000_000, description="Training samples in the loss (a stratified "
                                "subsample); null: all of them.")


class PathsSpec(_Spec):
    """Error profiles along paths between pairs of minima (docs/method.md §7)."""

    kinds: list[PathKindName] = Field(default_factory=lambda: ["linear", "linear_aligned", "geodesic"])
    points: int = Field(33, ge=3, le=1025)
    pairs: PairChoice | int = Field("all", description="'all', 'within' (same sampler), 'across' (different "
                                    "samplers), or an integer: at most that many pairs of each pair type.")


class OneBendSpec(_Spec):
    """One-bend paths (docs/method.md §7): a retrained midpoint joined to both endpoints."""

    enabled: bool = True
    kind: BendKindName | None = Field(None, description="Segments: geodesic (flip for binary networks) by default.")
    epochs: int = Field(20, ge=1, le=10_000, description="Retraining epochs of the bend (the paper: 300).")
    pairs: PairChoice | int = Field(1, description="Pairs getting a one-bend path (as paths.pairs).")
    points: int | None = Field(None, ge=3, le=1025, description="Points per segment (default: paths.points).")


class StudySpec(_Spec):
    """Everything a study computes. ``model_dump()`` is the normalized form whose hash identifies the study."""

    name: str = Field("study", min_length=1, max_length=120)
    architecture: str = Field("mlp", description="GET /api/architectures")
    config: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict, description="At most one config key with a list of values: one variant per value "
        "(e.g. {'hidden': [11, 31, 101]}); analyses compare minima within a variant.")
    dataset: str = "digits"
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    samplers: list[SamplerEntry] = Field(
        default_factory=lambda: [SamplerEntry(sampler=s) for s in ("sgd", "rsgd", "adv")])
    seeds: list[int] = Field(default_factory=lambda: [0, 1], description="Seeds of every sampler (an integer n "
                             "means 0..n-1).")
    inits: Literal["independent", "shared"] = Field(
        "independent", description="'independent': every minimum starts from its own initialization (sampler i "
        "of the list takes the study's seeds shifted by i * (max(seeds) + 1), so sgd 0, 1 / rsgd 2, 3 / adv 4, 5); "
        "'shared': every sampler uses the study's seeds as they are, so minima of equal seed start from the same "
        "network (adv's confusion phase then starts where sgd did). Samplers with their own 'seeds' keep them.")
    epochs: int | None = Field(None, ge=1, le=10_000, description="Budget of samplers without their own.")
    target_error: float | None = Field(
        0.0, ge=0.0, le=1.0, description="Training stops at this train error; null: every minimum runs its whole "
        "epoch budget and schedule (the paper's protocol; docs/studies.md).")
    flatness: FlatnessSpec = Field(default_factory=FlatnessSpec)
    sharpness: SharpnessSpec = Field(default_factory=SharpnessSpec)
    distances: bool = True
    paths: PathsSpec = Field(default_factory=PathsSpec)
    one_bend: OneBendSpec = Field(default_factory=OneBendSpec)

    @field_validator("samplers", mode="before")
    @classmethod
    def _sampler_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"sampler": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 100:
                raise ValueError(f"seeds as a count must be in [1, 100], got {value}")
            return list(range(value))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if not self.samplers:
            raise ValueError("samplers must name at least one sampler, e.g. ['sgd', 'rsgd', 'adv']")
        names = [s.name for s in self.samplers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"sampler labels must be unique, repeated: {repeated}; give entries distinct 'label's")
        for entry in self.samplers:
            seeds = self.seeds_of(entry)
            if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
                raise ValueError(f"sampler {entry.name!r}: seeds must be distinct non-negative integers, got {seeds}")
        if len(self.sweep) > 1:
            raise ValueError(f"sweep one config key at a time, got {sorted(self.sweep)}")
        for key, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep {key!r} needs at least one value")
        return self

    # -- derived ---------------------------------------------------------------------------------------------
    def seeds_of(self, entry: SamplerEntry) -> list[int]:
        """The seeds of ``entry``'s minima (see ``inits``)."""
        if entry.seeds is not None:
            return list(entry.seeds)
        if self.inits == "shared" or not self.seeds:
            return list(self.seeds)
        shift = self.samplers.index(entry) * (max(self.seeds) + 1)
        return [seed + shift for seed in self.seeds]

    def epochs_of(self, entry: SamplerEntry) -> int | None:
        return entry.epochs if entry.epochs is not None else self.epochs

    def variants(self) -> list[tuple[str, dict[str, Any]]]:
        """(variant label, architecture config) pairs: one without a sweep."""
        if not self.sweep:
            return [("", dict(self.config))]
        ((key, values),) = self.sweep.items()
        return [(f"{key}={json.dumps(v)}", {**self.config, key: v}) for v in values]


# ============================================================================================= presets
_PAPER_MINIMUM = {"epochs": 300, "target_error": None, "flatness": {"samples": 100, "mode": "exact"},
                  "paths": {"points": 33, "pairs": "all"}, "one_bend": {"epochs": 300, "pairs": 2}}

PRESETS: dict[str, dict[str, Any]] = {
    "digits-mlp": {
        "name": "digits-mlp",
        "description": "The paper's protocol on scikit-learn digits with the default MLP (64-512-512-10): 2 minima "
        "each of sgd, rsgd and adv, each from its own initialization, trained until 0% train error (budget 200 "
        "epochs; docs/method.md §11), local energy at the default MLP sigmas, 17-point linear / linear_aligned / "
        "geodesic paths and one-bend paths between all 15 pairs. Runs on a 2-core CPU in under 10 minutes.",
        "architecture": "mlp", "dataset": "digits",
        "samplers": ["sgd", "rsgd", "adv"], "seeds": [0, 1], "epochs": 200, "target_error": 0.0,
        "flatness": {"samples": 100, "mode": "exact"},
        "paths": {"kinds": ["linear", "linear_aligned", "geodesic"], "points": 17, "pairs": "all"},
        "one_bend": {"enabled": True, "kind": "geodesic", "epochs": 100, "pairs": "all"},
    },
    "hmm-committee": {
        "name": "hmm-committee",
        "description": "Shallow check of docs/method.md §9: binary committee machines on Hidden Manifold Model data, "
        "a sweep over the hidden width K, trained with the binary sampler's sgd / rsgd / adv variants; flip "
        "fractions as local energy, linear / linear_aligned / flip paths, Hamming distances.",
        "architecture": "committee", "sweep": {"hidden": [11, 31, 101]},
        "dataset": "hmm", "dataset_options": {"D": 51, "N": 201, "P_train": 600, "P_test": 1000, "seed": 0},
        "samplers": [
            {"sampler": "binary", "label": "sgd", "hyperparameters": {"variant": "sgd"}},
            {"sampler": "binary", "label": "rsgd", "hyperparameters": {"variant": "rsgd"}},
            {"sampler": "binary", "label": "adv", "hyperparameters": {"variant": "adv"}},
        ],
        "seeds": [0, 1], "epochs": 20, "target_error": 0.0,
        "flatness": {"samples": 30, "mode": "exact"},
        "paths": {"kinds": ["linear", "linear_aligned", "flip"], "points": 17, "pairs": "all"},
        "one_bend": {"enabled": True, "kind": "flip", "epochs": 10, "pairs": 1},
    },
    "fmnist-mlp-cpu": {
        "name": "fmnist-mlp-cpu",
        "description": "The paper's protocol on a real image dataset, sized for a CPU: the MLP 784-512-512-10 on a "
        "stratified 10,000 / 2,000 slice (seed 0) of Fashion-MNIST (Debian's dataset-fashion-mnist or files under "
        "TOROID_HOME/datasets/fashion_mnist; docs/data.md), 2 minima each of sgd, rsgd and adv (budget 30 epochs, "
        "stopping at 0% train error), local energy on the full slice, 17-point linear / linear_aligned / geodesic "
        "paths between all 15 pairs, one-bend paths for one pair of each type. Under 30 minutes on a 2-core CPU.",
        "architecture": "mlp", "config": {"widths": [512, 512]},
        "dataset": "fashion_mnist", "dataset_options": {"train_size": 10_000, "test_size": 2_000, "seed": 0},
        "samplers": ["sgd", "rsgd", "adv"], "seeds": [0, 1], "epochs": 30, "target_error": 0.0,
        "flatness": {"samples": 20, "mode": "exact"},
        "paths": {"kinds": ["linear", "linear_aligned", "geodesic"], "points": 17, "pairs": "all"},
        "one_bend": {"enabled": True, "kind": "geodesic", "epochs": 10, "pairs": 1},
    },
    "mnist-mlp": {
        "name": "mnist-mlp", "description": "The paper's MLP 2x512 on MNIST (GPU; needs the MNIST files under "
        "TOROID_HOME/datasets/mnist).", "architecture": "mlp", "config": {"widths": [512, 512]},
        "dataset": "mnist", "samplers": ["sgd", "rsgd", "adv"],
        "seeds": [0, 1], **_PAPER_MINIMUM,
    },
    "fmnist-lenet": {
        "name": "fmnist-lenet", "description": "The paper's LeNet on Fashion-MNIST (GPU; Debian's "
        "dataset-fashion-mnist or files under TOROID_HOME/datasets/fashion_mnist).", "architecture": "lenet",
        "dataset": "fashion_mnist",
        "samplers": ["sgd", "rsgd", "adv"], "seeds": [0, 1],
        **_PAPER_MINIMUM,
    },
    "cifar10-vgg16bn": {
        "name": "cifar10-vgg16bn", "description": "The paper's VGG16-BN on CIFAR-10 (GPU; files under "
        "TOROID_HOME/datasets/cifar10).", "architecture": "vgg", "config": {"depth": 16, "batch_norm": True},
        "dataset": "cifar10", "samplers": ["sgd", "rsgd", "adv"],
        "seeds": [0, 1], **_PAPER_MINIMUM,
    },
    "fmnist-binary-mlp": {
        "name": "fmnist-binary-mlp", "description": "The paper's binary MLP 3x1001 on Fashion-MNIST (GPU; "
        "Debian's dataset-fashion-mnist or files under TOROID_HOME/datasets/fashion_mnist).",
        "architecture": "binary_mlp",
        "config": {"widths": [1001, 1001, 1001]}, "dataset": "fashion_mnist",
        "samplers": [{"sampler": "binary", "label": v, "hyperparameters": {"variant": v}}
                     for v in ("sgd", "rsgd", "adv")],
        "seeds": [0, 1], "epochs": 300, "target_error": None, "flatness": {"samples": 100, "mode": "exact"},
        "paths": {"kinds": ["linear", "linear_aligned", "flip"], "points": 33, "pairs": "all"},
        "one_bend": {"enabled": True, "kind": "flip", "epochs": 300, "pairs": 2},
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (lists and scalars of ``overrides`` replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("config", "sweep"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset_spec(name: str, overrides: dict[str, Any] | None = None) -> StudySpec:
    """The spec of preset ``name`` with ``overrides`` merged in (nested dicts merge, other values replace)."""
    if name not in PRESETS:
        raise StudyError(f"unknown preset {name!r}; presets: {preset_names()}")
    raw = {k: v for k, v in PRESETS[name].items() if k != "description"}
    return parse_spec(_merge(raw, overrides or {}))


def parse_spec(raw: Any) -> StudySpec:
    """Validate a spec dict; ``StudyError`` with one readable line per problem."""
    if not isinstance(raw, dict):
        raise StudyError(f"a study spec must be a JSON/YAML object, got {type(raw).__name__}")
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()]
        raise StudyError("invalid study spec: " + "; ".join(lines)) from exc


def load_spec_file(path: Path) -> StudySpec:
    """A spec from a .yaml/.yml/.json file."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    return parse_spec(raw)


def resolve_spec(spec_or_preset: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> StudySpec:
    """A preset name, a spec file path, or a spec dict (``{"preset": name, ...overrides}`` also works)."""
    if isinstance(spec_or_preset, dict):
        raw = dict(spec_or_preset)
        preset = raw.pop("preset", None)
        if preset is not None:
            return preset_spec(str(preset), _merge(raw, overrides or {}))
        return parse_spec(_merge(raw, overrides or {}))
    text = str(spec_or_preset)
    if text in PRESETS:
        return preset_spec(text, overrides)
    path = Path(text)
    if not path.is_file():
        raise StudyError(f"{text!r} is neither a preset ({preset_names()}) nor a spec file")
    spec = load_spec_file(path)
    return parse_spec(_merge(spec.model_dump(), overrides)) if overrides else spec


def spec_key(spec: StudySpec) -> str:
    """sha256 of the normalized spec without its name, and the code version: equal studies share a record."""
    from toroid.worker.landscape import CODE_VERSION

    body = spec.model_dump()
    body.pop("name", None)
    if not spec.sharpness.enabled:  # a study without sharpness keeps the key it had before the section existed
        body.pop("sharpness", None)
    return canonical_hash({"spec": body, "code_version": CODE_VERSION})


# ============================================================================================= the plan
@dataclass(frozen=True)
class Step:
    """One unit of a study: a training or one analysis job. ``id`` is stable across runs (outputs are keyed by it)."""

    id: str
    kind: Literal["train", "flatness", "sharpness", "distances", "path"]
    phase: str  # training, flatness, sharpness, distances, paths, one_bend
    label: str
    weight: float
    variant: str
    variant_config: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)


def minimum_tag(label: str, seed: int) -> str:
    return f"{label}{seed}"


def pair_type(a_label: str, b_label: str, order: list[str]) -> str:
    first, second = sorted((a_label, b_label), key=order.index)
    return f"{first}-{second}"


def select_pairs(tags: list[tuple[str, int]], choice: PairChoice | int, order: list[str]
                 ) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Pairs of minima (label, seed) in a fixed order: every pair of types by sampler order, then by seeds."""
    pairs = list(itertools.combinations(tags, 2))
    if choice == "within":
        return [p for p in pairs if p[0][0] == p[1][0]]
    if choice == "across":
        return [p for p in pairs if p[0][0] != p[1][0]]
    if choice == "all":
        return pairs
    cap = int(choice)
    if cap < 1:
        raise StudyError(f"a pair cap must be at least 1, got {cap}")
    kept, counts = [], {}
    for p in pairs:
        t = pair_type(p[0][0], p[1][0], order)
        if counts.get(t, 0) < cap:
            counts[t] = counts.get(t, 0) + 1
            kept.append(p)
    return kept


#: Rough relative costs (seconds of one CPU thread for the digits MLP) that weigh the overall progress.
_SAMPLER_COST = {"sgd": 0.15, "rsgd": 1.0, "adv": 0.6, "sam": 0.3, "entropy_sgd": 0.3, "adam": 0.15, "binary": 0.3}


def plan(spec: StudySpec) -> list[Step]:
    """Every step of the study in execution order (the order is part of the resume contract: deterministic)."""
    from toroid.worker.landscape.kinds import check_bend_kind, check_path_kind
    from toroid.worker.landscape.registry import get_architecture

    try:
        binary = get_architecture(spec.architecture).binary
    except ValueError as exc:
        raise StudyError(str(exc)) from exc
    order = [s.name for s in spec.samplers]
    steps: list[Step] = []
    for variant, config in spec.variants():
        prefix = f"{variant}/" if variant else ""
        tags = [(entry.name, seed) for entry in spec.samplers for seed in spec.seeds_of(entry)]
        entries = {e.name: e for e in spec.samplers}
        for label, seed in tags:
            entry = entries[label]
            epochs = spec.epochs_of(entry) or 30
            steps.append(Step(f"{prefix}train/{label}/{seed}", "train", "training",
                              f"{variant + ' ' if variant else ''}training {label} seed {seed}",
                              _SAMPLER_COST.get(entry.hyperparameters.get("variant", entry.sampler), 0.3) * epochs,
                              variant, config, {"label": label, "seed": seed}))
        if spec.flatness.enabled:
            for label, seed in tags:
                steps.append(Step(f"{prefix}flatness/{label}/{seed}", "flatness", "flatness",
                                  f"{variant + ' ' if variant else ''}local energy of {label} seed {seed}",
                                  0.05 * spec.flatness.samples, variant, config, {"label": label, "seed": seed}))
        if spec.sharpness.enabled:
            if binary:
                raise StudyError("sharpness: binary networks have no Hessian (the signs of their weights); leave "
                                 "sharpness disabled and use the local energy's flip fractions (docs/method.md §6)")
            for label, seed in tags:
                steps.append(Step(f"{prefix}sharpness/{label}/{seed}", "sharpness", "sharpness",
                                  f"{variant + ' ' if variant else ''}Hessian sharpness of {label} seed {seed}",
                                  0.05 * (spec.sharpness.iterations + spec.sharpness.probes), variant, config,
                                  {"label": label, "seed": seed}))
        if spec.distances and len(tags) >= 2:
            steps.append(Step(f"{prefix}distances", "distances", "distances",
                              f"{variant + ' ' if variant else ''}distances between {len(tags)} minima",
                              0.1 * len(tags) ** 2, variant, config, {"tags": tags}))
        for kind in spec.paths.kinds:
            try:
                check_path_kind(kind, binary, one_bend=False)
            except ValueError as exc:
                raise StudyError(f"paths.kinds: {exc}") from exc
        for a, b in select_pairs(tags, spec.paths.pairs, order):
            name = f"{minimum_tag(*a)}-{minimum_tag(*b)}"
            for kind in spec.paths.kinds:
                steps.append(Step(f"{prefix}path/{kind}/{name}", "path", "paths",
                                  f"{variant + ' ' if variant else ''}{kind} path {name}",
                                  0.08 * spec.paths.points, variant, config,
                                  {"a": a, "b": b, "kind": kind, "type": pair_type(a[0], b[0], order)}))
        if spec.one_bend.enabled:
            bend_kind = spec.one_bend.kind or ("flip" if binary else "geodesic")
            try:
                check_bend_kind(bend_kind, binary)
            except ValueError as exc:
                raise StudyError(f"one_bend.kind: {exc}") from exc
            for a, b in select_pairs(tags, spec.one_bend.pairs, order):
                name = f"{minimum_tag(*a)}-{minimum_tag(*b)}"
                points = spec.one_bend.points or spec.paths.points
                steps.append(Step(f"{prefix}one_bend/{name}", "path", "one_bend",
                                  f"{variant + ' ' if variant else ''}one-bend path {name}",
                                  0.2 * spec.one_bend.epochs + 0.16 * points, variant, config,
                                  {"a": a, "b": b, "kind": "one_bend", "bend_kind": bend_kind,
                                   "type": pair_type(a[0], b[0], order)}))
    return steps


# ============================================================================================= request forms
def train_request(spec: StudySpec, step: Step) -> TrainJob:
    """The parameters of a step's train job, exactly as POST /api/minima/train would store them."""
    entry = next(e for e in spec.samplers if e.name == step.args["label"])
    seed = int(step.args["seed"])
    try:
        request = TrainRequest(
            architecture=spec.architecture, config=step.variant_config, dataset=spec.dataset,
            dataset_options=spec.dataset_options, sampler=entry.sampler, hyperparameters=entry.hyperparameters,
            seed=seed, epochs=spec.epochs_of(entry), target_error=spec.target_error,
            name=f"{spec.name} {step.variant + ' ' if step.variant else ''}{entry.name} seed {seed}",
        )
        return resolve_train(request)
    except Invalid as exc:
        raise StudyError(f"{step.label}: {exc}") from exc
    except ValidationError as exc:
        raise StudyError(f"{step.label}: {exc}") from exc


TRAIN_IDENTITY = ("architecture", "config", "dataset", "dataset_options", "sampler", "hyperparameters", "seed",
                  "epochs", "target_error")


def train_identity(params: TrainJob | dict[str, Any]) -> dict[str, Any]:
    """What identifies a trained minimum: (arch, config, dataset, sampler, hyperparameters, seed, epochs, stop)."""
    values = params.model_dump() if isinstance(params, BaseModel) else params
    return clean_json({k: values[k] for k in TRAIN_IDENTITY})


def train_key(params: TrainJob) -> str:
    """The ledger key of a study's train job (an identical training in flight is shared, not repeated)."""
    from toroid.worker.landscape import CODE_VERSION

    return canonical_hash({"kind": "train", "identity": train_identity(params), "code_version": CODE_VERSION})


def analysis_request(spec: StudySpec, step: Step, minima: dict[tuple[str, int], Minimum]
                     ) -> tuple[list[Minimum], JobParams, dict[str, Any]]:
    """(input minima, job parameters, key parameters) of an analysis step, exactly as POST /api/analyses/* builds
    them (the same request models, so the same result key)."""
    if step.kind == "flatness":
        m = minima[(step.args["label"], step.args["seed"])]
        request: BaseModel = FlatnessRequest(minimum_id=m.id, sigmas=spec.flatness.sigmas,
                                             samples=spec.flatness.samples, mode=spec.flatness.mode,
                                             max_samples=spec.flatness.max_samples)
        inputs = [m]
    elif step.kind == "sharpness":
        m = minima[(step.args["label"], step.args["seed"])]
        request = SharpnessRequest(minimum_id=m.id, iterations=spec.sharpness.iterations,
                                   probes=spec.sharpness.probes, samples=spec.sharpness.samples)
        inputs = [m]
    elif step.kind == "distances":
        inputs = [minima[tuple(t)] for t in step.args["tags"]]
        request = DistancesRequest(minimum_ids=[m.id for m in inputs])
    else:
        a, b = minima[tuple(step.args["a"])], minima[tuple(step.args["b"])]
        if step.args["kind"] == "one_bend":
            request = PathRequest(a=a.id, b=b.id, kind="one_bend", points=spec.one_bend.points or spec.paths.points,
                                  bend_kind=step.args["bend_kind"], epochs=spec.one_bend.epochs)
        else:
            request = PathRequest(a=a.id, b=b.id, kind=step.args["kind"], points=spec.paths.points)
        inputs = [a, b]
    return inputs, analysis_job(step.kind, request, [m.id for m in inputs]), key_params(request)


def validate_spec(spec: StudySpec) -> list[Step]:
    """Check a spec synchronously (names, options, budgets: the train requests of every minimum); its plan."""
    try:
        resolve_dataset(spec.dataset, spec.dataset_options)
    except Invalid as exc:
        raise StudyError(str(exc)) from exc
    steps = plan(spec)
    for step in steps:
        if step.kind == "train":
            train_request(spec, step)
    return steps
