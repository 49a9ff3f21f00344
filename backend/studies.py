"""Studies: the paper's whole protocol (docs/method.md §5-8, figures 1-2) as one resumable job.

A *study spec* (``StudySpec``, JSON or YAML) names an architecture (optionally a sweep over one of its config keys),
a dataset, the samplers with their seeds and epoch budgets, and the analyses: local energy (sec. 6), the four
Euclidean distances plus the geodesic one (sec. 5), error profiles along linear / linear_aligned / geodesic paths
between pairs of minima (sec. 7) and one-bend paths (sec. 7).

Running a study (``run_study``) walks a fixed plan of *steps* in a deterministic order: train every minimum, measure
its local energy, compute the distance matrix, then every path and every one-bend path. Each step is an ordinary
job of the per-kind tasks (``toroid.worker.tasks``): the study looks for the answer in the same caches the API uses
(a minimum trained with the same architecture, config, dataset, sampler, hyperparameters, seed and epochs; a result
with the same ``toroid.store.ledger.result_key``), and when it is missing it creates the job record *without
publishing a message* and runs the task inline, in the study's own process. So a study works with ONE worker of
concurrency 1
(no task waits for another task of the same worker), its minima and analyses appear in the dashboard and the API
like any other, and a study restarted after a crash (``recover_jobs`` re-enqueues its job, or the spec is posted
again, or ``toroid study run`` is run again) redoes nothing that finished.

A study record (``Study``, table ``studies``) is unique by the hash of its normalized spec; it remembers its job and
the minimum / result id of every finished step (``outputs``), from which ``toroid.backend.report`` builds the report.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from toroid.store.db import get_engine, new_session
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Result, Study, new_id, utcnow

PairChoice = Literal["all", "within", "across"]
PathKindName = Literal["linear", "linear_aligned", "geodesic", "flip"]
BendKindName = Literal["geodesic", "linear_aligned", "linear", "flip"]

#: The task name of the study job (worker/study_tasks.py); toroid.store.ledger.TASK_NAMES must map "study" to it.
STUDY_TASK = "toroid.study"


class StudyError(ValueError):
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
    samples: int = Field(100, ge=1, le=10_000)
    mode: Literal["fast", "exact"] = "exact"


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
    target_error: float = Field(0.0, ge=0.0, le=1.0, description="Training stops at this train error.")
    flatness: FlatnessSpec = Field(default_factory=FlatnessSpec)
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
_PAPER_MINIMUM = {"epochs": 300, "flatness": {"samples": 100, "mode": "exact"},
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
        "description": "Shallow check of docs/method.md §10: binary committee machines on Hidden Manifold Model data, "
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
    "mnist-mlp": {
        "name": "mnist-mlp", "description": "The paper's MLP 2x512 on MNIST (GPU; needs the MNIST files under "
        "TOROID_HOME/datasets/mnist).", "architecture": "mlp", "config": {"widths": [512, 512]},
        "dataset": "mnist", "dataset_options": {"root": "mnist"}, "samplers": ["sgd", "rsgd", "adv"],
        "seeds": [0, 1], **_PAPER_MINIMUM,
    },
    "fmnist-lenet": {
        "name": "fmnist-lenet", "description": "The paper's LeNet on Fashion-MNIST (GPU; files under "
        "TOROID_HOME/datasets/fashion_mnist).", "architecture": "lenet", "dataset": "fashion_mnist",
        "dataset_options": {"root": "fashion_mnist"}, "samplers": ["sgd", "rsgd", "adv"], "seeds": [0, 1],
        **_PAPER_MINIMUM,
    },
    "cifar10-vgg16bn": {
        "name": "cifar10-vgg16bn", "description": "The paper's VGG16-BN on CIFAR-10 (GPU; files under "
        "TOROID_HOME/datasets/cifar10).", "architecture": "vgg", "config": {"depth": 16, "batch_norm": True},
        "dataset": "cifar10", "dataset_options": {"root": "cifar10"}, "samplers": ["sgd", "rsgd", "adv"],
        "seeds": [0, 1], **_PAPER_MINIMUM,
    },
    "fmnist-binary-mlp": {
        "name": "fmnist-binary-mlp", "description": "The paper's binary MLP 3x1001 on Fashion-MNIST (GPU; files "
        "under TOROID_HOME/datasets/fashion_mnist).", "architecture": "binary_mlp",
        "config": {"widths": [1001, 1001, 1001]}, "dataset": "fashion_mnist",
        "dataset_options": {"root": "fashion_mnist"},
        "samplers": [{"sampler": "binary", "label": v, "hyperparameters": {"variant": v}}
                     for v in ("sgd", "rsgd", "adv")],
        "seeds": [0, 1], "epochs": 300, "flatness": {"samples": 100, "mode": "exact"},
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
    text = json.dumps({"spec": body, "code_version": CODE_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ============================================================================================= the plan
@dataclass(frozen=True)
class Step:
    """One unit of a study: a training or one analysis job. ``id`` is stable across runs (outputs are keyed by it)."""

    id: str
    kind: Literal["train", "flatness", "distances", "path"]
    phase: str  # training, flatness, distances, paths, one_bend
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
    from toroid.worker.landscape.nets import ARCHITECTURES

    if spec.architecture not in ARCHITECTURES:
        raise StudyError(f"unknown architecture {spec.architecture!r}; valid: {sorted(ARCHITECTURES)}")
    binary = ARCHITECTURES[spec.architecture].binary
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
        if spec.distances and len(tags) >= 2:
            steps.append(Step(f"{prefix}distances", "distances", "distances",
                              f"{variant + ' ' if variant else ''}distances between {len(tags)} minima",
                              0.1 * len(tags) ** 2, variant, config, {"tags": tags}))
        for kind in spec.paths.kinds:
            if binary and kind == "geodesic":
                raise StudyError("geodesic paths need continuous networks: binary weights cannot be normalized; "
                                 "use paths.kinds ['linear', 'linear_aligned', 'flip']")
            if not binary and kind == "flip":
                raise StudyError("flip paths are for binary networks; use 'linear', 'linear_aligned', 'geodesic'")
        for a, b in select_pairs(tags, spec.paths.pairs, order):
            name = f"{minimum_tag(*a)}-{minimum_tag(*b)}"
            for kind in spec.paths.kinds:
                steps.append(Step(f"{prefix}path/{kind}/{name}", "path", "paths",
                                  f"{variant + ' ' if variant else ''}{kind} path {name}",
                                  0.08 * spec.paths.points, variant, config,
                                  {"a": a, "b": b, "kind": kind, "type": pair_type(a[0], b[0], order)}))
        if spec.one_bend.enabled:
            bend_kind = spec.one_bend.kind or ("flip" if binary else "geodesic")
            if binary != (bend_kind == "flip"):
                raise StudyError(f"one_bend.kind {bend_kind!r} does not fit {'binary' if binary else 'continuous'} "
                                 f"networks; use {'flip' if binary else 'geodesic'}")
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
def train_params(spec: StudySpec, step: Step) -> dict[str, Any]:
    """The params of the train job, exactly as POST /api/minima/train would store them."""
    from fastapi import HTTPException

    from toroid.backend.api.minima import validate_train
    from toroid.backend.schemas import TrainRequest

    entry = next(e for e in spec.samplers if e.name == step.args["label"])
    seed = int(step.args["seed"])
    try:
        request = TrainRequest(
            architecture=spec.architecture, config=step.variant_config, dataset=spec.dataset,
            dataset_options=spec.dataset_options, sampler=entry.sampler, hyperparameters=entry.hyperparameters,
            seed=seed, epochs=spec.epochs_of(entry), target_error=spec.target_error,
            name=f"{spec.name} {step.variant + ' ' if step.variant else ''}{entry.name} seed {seed}",
        )
        return validate_train(request)
    except HTTPException as exc:
        raise StudyError(f"{step.label}: {exc.detail}") from exc
    except ValidationError as exc:
        raise StudyError(f"{step.label}: {exc}") from exc


def train_identity(params: dict[str, Any]) -> dict[str, Any]:
    """What identifies a trained minimum: (arch, config, dataset, sampler, hyperparameters, seed, epochs)."""
    from toroid.store.ledger import clean_json

    return clean_json({k: params[k] for k in ("architecture", "config", "dataset", "dataset_options", "sampler",
                                               "hyperparameters", "seed", "epochs", "target_error")})


def train_key(params: dict[str, Any]) -> str:
    from toroid.worker.landscape import CODE_VERSION

    text = json.dumps({"kind": "train", "identity": train_identity(params), "code_version": CODE_VERSION},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def find_trained_minimum(session: Session, params: dict[str, Any]) -> Minimum | None:
    """A minimum trained before with exactly these training params (from the API, the demo or a study)."""
    from toroid.store.ledger import clean_json

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


def analysis_request(spec: StudySpec, step: Step, minima: dict[tuple[str, int], Minimum]
                     ) -> tuple[str, list[Minimum], dict[str, Any], dict[str, Any]]:
    """(kind, input minima, job params, key params) exactly as POST /api/analyses/* builds them."""
    from toroid.backend.schemas import DistancesRequest, FlatnessRequest, PathRequest

    if step.kind == "flatness":
        m = minima[(step.args["label"], step.args["seed"])]
        request = FlatnessRequest(minimum_id=m.id, sigmas=spec.flatness.sigmas, samples=spec.flatness.samples,
                                  mode=spec.flatness.mode)
        params = request.model_dump()
        return "flatness", [m], params, {k: v for k, v in params.items() if k != "minimum_id"}
    if step.kind == "distances":
        chosen = [minima[tuple(t)] for t in step.args["tags"]]
        params = DistancesRequest(minimum_ids=[m.id for m in chosen]).model_dump()
        return "distances", chosen, params, {}
    a, b = minima[tuple(step.args["a"])], minima[tuple(step.args["b"])]
    if step.args["kind"] == "one_bend":
        request = PathRequest(a=a.id, b=b.id, kind="one_bend", points=spec.one_bend.points or spec.paths.points,
                              bend_kind=step.args["bend_kind"], epochs=spec.one_bend.epochs)
    else:
        request = PathRequest(a=a.id, b=b.id, kind=step.args["kind"], points=spec.paths.points)
    params = request.model_dump()
    return "path", [a, b], params, {k: v for k, v in params.items() if k not in ("a", "b")}


def validate_spec(spec: StudySpec) -> list[Step]:
    """Check a spec synchronously (names, options, budgets: the train requests of every minimum); its plan."""
    from toroid.backend.api.deps import resolve_dataset

    try:
        resolve_dataset(spec.dataset, spec.dataset_options)
    except Exception as exc:
        raise StudyError(getattr(exc, "detail", str(exc))) from exc
    steps = plan(spec)
    for step in steps:
        if step.kind == "train":
            train_params(spec, step)
    return steps


# ============================================================================================= the study record
_tables_ready: set[str] = set()


def ensure_tables() -> None:
    """Create the tables once per database (the CLI runs studies without the API's startup)."""
    from toroid.store.db import init_db

    url = str(get_engine().url)
    if url not in _tables_ready:
        init_db()
        _tables_ready.add(url)


def _insert_job(session: Session, kind: str, params: dict[str, Any], key: str | None, message: str) -> Job:
    """A queued job row WITHOUT a Celery message (a study runs it inline); the active one of ``key`` if any."""
    from toroid.store.ledger import clean_json, find_active_job, queue_for

    if key:
        active = find_active_job(session, key)
        if active is not None:
            return active
    job = Job(id=new_id(), kind=kind, state="queued", progress=0.0, message=message, partial={},
              params=clean_json(params), key=key, queue=queue_for(kind), attempts=0,
              created_at=utcnow())
    session.add(job)
    try:
        session.commit()
    except IntegrityError:  # an identical job became active a moment ago: share it
        session.rollback()
        active = find_active_job(session, key) if key else None
        if active is None:
            raise
        return active
    return job


def open_study(spec: StudySpec, *, preset: str | None = None, publish: bool = True) -> tuple[Study, Job, bool]:
    """The study of ``spec`` (created, or found by its key) with an active or finished job; ``started`` tells
    whether a new job was created (a new study, or a resume of a failed / cancelled one).

    ``publish``: send the job's Celery message (the API); the CLI runs the job in-process instead.
    """
    ensure_tables()
    validate_spec(spec)
    key = spec_key(spec)
    with new_session() as session:
        study = session.scalar(select(Study).where(Study.key == key))
        if study is None:
            study = Study(id=new_id(), key=key, name=spec.name, preset=preset, spec=spec.model_dump(), outputs={},
                          created_at=utcnow())
            session.add(study)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                study = session.scalar(select(Study).where(Study.key == key))
        job = session.get(Job, study.job_id) if study.job_id else None
        if job is not None and job.state in (*ACTIVE_STATES, "succeeded"):
            return study, job, False
        job = _insert_job(session, "study", {"study_id": study.id, "name": spec.name}, key, "queued")
        study.job_id = job.id
        session.commit()
        if publish:
            _publish(session, job)
        return study, job, True


def _publish(session: Session, job: Job) -> None:
    from toroid.store.celery_app import celery_app
    from toroid.store.ledger import BrokerUnavailable

    task_id = f"{job.id}-{new_id()[:8]}"
    try:
        celery_app.send_task(STUDY_TASK, args=[job.id], queue=job.queue, task_id=task_id)
    except Exception as exc:
        job.state, job.error, job.finished_at, job.message = "failed", f"message broker unreachable: {exc}", \
            utcnow(), "failed to queue"
        session.commit()
        raise BrokerUnavailable(f"the study could not be queued: the message broker (Redis) is unreachable: {exc}"
                                ) from exc
    job.task_id, job.enqueued_at = task_id, utcnow()
    session.commit()


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
    return study.to_record(job, total)


# ============================================================================================= the engine
JobRunner = Callable[[str, str], Any]  # (kind, job id) -> runs the job's task inline


def inline_runner(kind: str, job_id: str) -> Any:
    """Run one job through its Celery task's own code (claim, compute, store), in this process."""
    import toroid.worker.tasks as tasks

    task = getattr(tasks, kind)
    return task(job_id)


class StudyRunner:
    """Executes the plan of one study inside the study's ``JobRun`` (see the module docstring)."""

    def __init__(self, study_id: str, run: Any, *, runner: JobRunner = inline_runner,
                 on_step: Callable[[int, int, Step, str], None] | None = None, poll_s: float = 0.5):
        ensure_tables()
        found = get_study(study_id)
        if found is None:
            raise StudyError(f"study {study_id} does not exist")
        self.study = found[0]
        self.spec = StudySpec.model_validate(self.study.spec)
        self.steps = plan(self.spec)
        self.run = run
        self.runner = runner
        self.on_step = on_step
        self.poll_s = poll_s
        self.total_weight = sum(s.weight for s in self.steps) or 1.0
        self.done_weight = 0.0
        self.minima: dict[str, dict[tuple[str, int], Minimum]] = {}

    # -- progress --------------------------------------------------------------------------------------------
    def _report(self, index: int, step: Step, within: float) -> None:
        fraction = (self.done_weight + step.weight * max(0.0, min(1.0, within))) / self.total_weight
        in_phase = [s for s in self.steps if s.phase == step.phase and s.variant == step.variant]
        position = in_phase.index(step) + 1
        self.run.say(f"{step.label} ({position}/{len(in_phase)})")
        self.run.progress(min(fraction, 0.999), {"step": step.id, "steps": f"{index + 1}/{len(self.steps)}"})

    def _record(self, step: Step, output: dict[str, str]) -> None:
        with new_session() as session:
            study = session.get(Study, self.study.id)
            outputs = dict(study.outputs or {})
            outputs[step.id] = output
            session.execute(update(Study).where(Study.id == study.id).values(outputs=outputs))
            session.commit()

    # -- driving one job -------------------------------------------------------------------------------------
    def _drive(self, index: int, step: Step, job_id: str) -> Job:
        """Run or follow ``job_id`` until it finishes; returns the finished row (StudyError if it did not succeed).

        queued: run it inline (its task claims it). running elsewhere with a live heartbeat: wait, following its
        progress. running with a stale heartbeat (its worker died): take it over, then run it.
        """
        from toroid.store.ledger import stale_job_s

        while True:
            with new_session() as session:
                job = session.get(Job, job_id)
            if job is None:
                raise StudyError(f"{step.label}: job {job_id} disappeared")
            if job.state == "succeeded":
                return job
            if job.state in ("failed", "cancelled"):
                raise StudyError(f"{step.label}: job {job.id} {job.state}: {job.error or job.message}")
            if job.state == "queued":
                self._run_inline(index, step, job)
                continue
            cutoff = utcnow() - timedelta(seconds=stale_job_s())
            if job.heartbeat_at is None or job.heartbeat_at < cutoff:
                with new_session() as session:
                    session.execute(update(Job).where(
                        Job.id == job.id, Job.state == "running", Job.attempts == job.attempts,
                    ).values(state="queued", message="re-queued by a study: its worker stopped responding"))
                    session.commit()
                continue
            self._report(index, step, float(job.progress or 0.0))
            time.sleep(self.poll_s)

    def _run_inline(self, index: int, step: Step, job: Job) -> None:
        """Run the job's task in this process; a monitor thread mirrors its progress into the study's job and
        cancels it when the study is cancelled."""
        from toroid.store.ledger import JobCancelled, JobSuperseded, cancel_job

        stop = threading.Event()
        lost: list[BaseException] = []

        def monitor() -> None:
            while not stop.wait(self.poll_s):
                try:
                    with new_session() as session:
                        progress = session.scalar(select(Job.progress).where(Job.id == job.id)) or 0.0
                    self._report(index, step, float(progress))
                except (JobCancelled, JobSuperseded) as exc:
                    lost.append(exc)
                    if isinstance(exc, JobCancelled):
                        with new_session() as session:
                            row = session.get(Job, job.id)
                            if row is not None:
                                cancel_job(session, row)
                    return
                except Exception:  # a busy database must not stop the study; the next tick retries
                    continue

        thread = threading.Thread(target=monitor, name=f"study-monitor-{job.id}", daemon=True)
        thread.start()
        try:
            self.runner(job.kind, job.id)
        finally:
            stop.set()
            thread.join(timeout=10)
        if lost:
            raise lost[0]

    def _obtain(self, kind: str, params: dict[str, Any], key: str, step: Step) -> str:
        with new_session() as session:
            return _insert_job(session, kind, params, key, f"queued by study {self.study.name}").id

    # -- steps -----------------------------------------------------------------------------------------------
    def _minimum_for(self, index: int, step: Step) -> Minimum:
        params = train_params(self.spec, step)
        with new_session() as session:
            found = find_trained_minimum(session, params)
        if found is not None:
            return found
        job = self._drive(index, step, self._obtain("train", params, train_key(params), step))
        with new_session() as session:
            minimum = session.get(Minimum, job.minimum_id) if job.minimum_id else None
        if minimum is None:
            raise StudyError(f"{step.label}: training job {job.id} succeeded without a minimum")
        return minimum

    def _result_for(self, index: int, step: Step, minima: dict[tuple[str, int], Minimum]) -> Result:
        from toroid.backend.api.analyses import local_energy_at_largest_sigma
        from toroid.store.ledger import find_result, result_key

        kind, inputs, params, key_params = analysis_request(self.spec, step, minima)
        key = result_key(kind, inputs, key_params)
        with new_session() as session:
            result = find_result(session, key)
        if result is None:
            job_params = {**params, "minimum_ids": [m.id for m in inputs]}
            self._drive(index, step, self._obtain(kind, job_params, key, step))
            with new_session() as session:
                result = find_result(session, key)
            if result is None:
                raise StudyError(f"{step.label}: the job succeeded but stored no result")
        if kind == "flatness":  # the API's cache hit records the minimum's local energy the same way
            with new_session() as session:
                row = session.get(Minimum, inputs[0].id)
                if row is not None and row.flatness_result_id != result.id:
                    row.flatness_result_id = result.id
                    row.local_energy = local_energy_at_largest_sigma(result.data or {})
                    session.commit()
        return result

    def execute(self) -> dict[str, Any]:
        """Run every step not finished yet; returns {"steps", "reused", "computed"}."""
        reused = computed = 0
        for index, step in enumerate(self.steps):
            self.run.check()
            self._report(index, step, 0.0)
            before = time.monotonic()
            minima = self.minima.setdefault(step.variant, {})
            if step.kind == "train":
                had = self._known_output(step)
                minimum = self._minimum_for(index, step)
                minima[(step.args["label"], step.args["seed"])] = minimum
                output = {"minimum_id": minimum.id}
                fresh = had != output
            else:
                had = self._known_output(step)
                result = self._result_for(index, step, minima)
                output = {"result_id": result.id}
                fresh = had != output
            self._record(step, output)
            computed += int(fresh)
            reused += int(not fresh)
            self.done_weight += step.weight
            if self.on_step is not None:
                self.on_step(index, len(self.steps), step, f"{time.monotonic() - before:.1f} s")
        self.run.progress(0.999, {"step": "report", "steps": f"{len(self.steps)}/{len(self.steps)}"})
        return {"steps": len(self.steps), "reused": reused, "computed": computed}

    def _known_output(self, step: Step) -> dict[str, str] | None:
        with new_session() as session:
            study = session.get(Study, self.study.id)
            return (study.outputs or {}).get(step.id)


def run_study_job(run: Any, *, runner: JobRunner = inline_runner,
                  on_step: Callable[[int, int, Step, str], None] | None = None) -> dict[str, Any]:
    """The body of a study job (``run`` is its ``toroid.store.ledger.JobRun``): execute the plan, then succeed the job.

    The study's job stores no ``Result`` row (its outputs live in the study record); ``finish_minimum`` and
    ``finish_result`` do not apply, so completion uses the same ownership-guarded write (``JobRun.finish``).
    """
    study_id = run.params.get("study_id")
    if not study_id:
        raise StudyError(f"job {run.job_id} has no study_id parameter")
    runner_ = StudyRunner(study_id, run, runner=runner, on_step=on_step)
    summary = runner_.execute()
    run.partial["summary"] = summary
    run.finish(lambda _session: study_id)
    return summary


def iter_outputs(study: Study) -> Iterable[tuple[str, dict[str, str]]]:
    return (study.outputs or {}).items()


def finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
