"""Minima: lookup, family rules, uploads (validated completely before anything is stored), training requests,
deletion, checkpoint downloads, and the demo seed.

An upload is checked before anything is stored: the file format (safetensors, or a torch state_dict read with
``weights_only=True``, which refuses code-executing pickles without running them), the exact keys and shapes of the
declared architecture for the declared dataset, and one evaluation (train/test error). Any failure raises a typed
error and leaves the database and the artifact store unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from toroid.store.artifacts import get_store, state_dict_bytes
from toroid.store.db import new_session
from toroid.store.errors import Invalid, NotFound
from toroid.store.ledger import clean_json, create_job
from toroid.store.loading import check_state_dict, load_model, minimum_model, read_checkpoint
from toroid.store.models import Job, Minimum, new_id, utcnow
from toroid.store.params import TrainRequest, resolve_architecture, resolve_dataset, resolve_train
from toroid.store.settings import get_settings

#: What `toroid up` trains on first start: MLP (default widths) on digits, these samplers x seeds.
DEMO_SAMPLERS = ("sgd", "rsgd", "adv")
DEMO_SEEDS = (0, 1)


# ============================================================================================= lookup and rules
def get_minimum(session: Session, minimum_id: str) -> Minimum:
    minimum = session.get(Minimum, minimum_id)
    if minimum is None:
        raise NotFound(f"no minimum with id {minimum_id!r}; GET /api/minima lists the existing ones")
    return minimum


def get_minima(session: Session, ids: Sequence[str], *, what: str) -> list[Minimum]:
    """The minima of ``ids`` in order (NotFound naming an unknown id, Invalid for repeated ids)."""
    repeated = sorted({i for i in ids if list(ids).count(i) > 1})
    if repeated:
        raise Invalid(f"{what}: each minimum may appear once; repeated: {repeated}")
    return [get_minimum(session, i) for i in ids]


def require_same_family(minima: Sequence[Minimum], what: str) -> None:
    """Analyses of several minima need one architecture, config and dataset (the same parameter space)."""
    first = minima[0]
    for other in minima[1:]:
        for field in ("architecture", "config", "dataset", "dataset_options"):
            if getattr(other, field) != getattr(first, field):
                raise Invalid(
                    f"{what} needs minima of the same architecture, config and dataset; {first.name!r} "
                    f"({first.id}) has {field} {getattr(first, field)!r} but {other.name!r} ({other.id}) has "
                    f"{getattr(other, field)!r}"
                )


def list_minima(session: Session) -> list[Minimum]:
    return list(session.scalars(select(Minimum).order_by(Minimum.created_at.desc(), Minimum.id)).all())


# ============================================================================================= uploads
def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise Invalid(f"{field} is not valid JSON ({exc}); send a JSON object such as {{}}") from exc
    if not isinstance(value, dict):
        raise Invalid(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def upload_spec(fields: dict[str, str], sidecar: bytes | None, filename: str | None) -> dict[str, Any]:
    """What the upload claims to be: from the form fields, or from the sidecar of `toroid train`."""
    name = fields.get("name", "").strip()
    if sidecar is not None:
        from toroid.worker.landscape.io import parse_sidecar

        try:
            meta = parse_sidecar(sidecar)
        except ValueError as exc:
            raise Invalid(f"{exc}; upload the .json file `toroid train` wrote next to the checkpoint") from exc
        for field in ("architecture", "dataset"):
            given = fields.get(field, "").strip()
            if given and given != meta[field]:
                raise Invalid(f"the form says {field}={given!r} but the sidecar says {meta[field]!r}; send one")
        provenance = dict(meta.get("provenance") or {})
        seed, sampler = provenance.get("seed"), provenance.get("sampler")
        spec = {
            "architecture": meta["architecture"], "config": dict(meta.get("config") or {}),
            "dataset": meta["dataset"], "dataset_options": dict(meta.get("dataset_options") or {}),
            "name": name or meta["name"], "sampler": sampler if isinstance(sampler, str) else None,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "provenance": provenance,
        }
    else:
        missing = [f for f in ("architecture", "dataset") if not fields.get(f, "").strip()]
        if missing:
            raise Invalid(
                f"missing form field(s) {missing}: give architecture and dataset (GET /api/architectures, "
                "GET /api/datasets), or upload the sidecar JSON of `toroid train` as the field 'sidecar'"
            )
        spec = {
            "architecture": fields["architecture"].strip(), "config": _json_object(fields.get("config", ""), "config"),
            "dataset": fields["dataset"].strip(),
            "dataset_options": _json_object(fields.get("dataset_options", ""), "dataset_options"),
            "name": name, "sampler": None, "seed": None, "provenance": {},
        }
    if not spec["name"]:
        stem = PurePath(filename or "").stem  # a display name only; never used as a path
        spec["name"] = stem or "upload"
    if len(spec["name"]) > 200:
        raise Invalid("name is longer than 200 characters")
    return spec


def _evaluate(spec: dict[str, Any], config: dict, input_shape: tuple[int, ...], num_classes: int, state: dict
              ) -> tuple[float, float]:
    from toroid.worker.landscape.data import load_dataset
    from toroid.worker.landscape.evaluate import Evaluator

    try:
        dataset = load_dataset(spec["dataset"], **spec["dataset_options"])
        model = load_model(spec["architecture"], config, input_shape, num_classes, state)
        errors = Evaluator(model, dataset).evaluate_state(model, "both")
    except Exception as exc:
        raise Invalid(f"the model could not be evaluated on dataset {spec['dataset']!r}: {exc}") from exc
    return float(errors["train_error"]), float(errors["test_error"])


def _referenced(session: Session, sha256: str) -> bool:
    return session.scalar(
        select(Minimum.id).where(or_(Minimum.checkpoint_sha256 == sha256, Minimum.canonical_sha256 == sha256))
        .limit(1)
    ) is not None


def create_from_upload(fields: dict[str, str], data: bytes, sidecar: bytes | None, filename: str | None) -> dict:
    """Check an upload completely, then store its checkpoint and its row; returns the new minimum's record."""
    spec = upload_spec(fields, sidecar, filename)
    options, input_shape, num_classes = resolve_dataset(spec["dataset"], spec["dataset_options"])
    spec["dataset_options"] = options
    template, config = resolve_architecture(spec["architecture"], spec["config"], input_shape, num_classes)
    what = (f"architecture {spec['architecture']!r} (config {config}) on dataset {spec['dataset']!r} "
            f"(inputs {input_shape}, {num_classes} classes)")
    state = check_state_dict(read_checkpoint(data), template, what)
    train_error, test_error = _evaluate(spec, config, input_shape, num_classes, state)

    store = get_store()
    sha = store.put_state_dict(state)
    minimum = Minimum(
        id=new_id(), name=spec["name"], architecture=spec["architecture"], config=clean_json(config),
        dataset=spec["dataset"], dataset_options=clean_json(options), sampler=spec["sampler"], seed=spec["seed"],
        train_error=train_error, test_error=test_error, provenance=clean_json(spec["provenance"]),
        checkpoint_sha256=sha, source="upload", created_at=utcnow(),
    )
    with new_session() as session:
        try:
            session.add(minimum)
            session.commit()
        except BaseException:
            session.rollback()
            if not _referenced(session, sha):
                store.delete(sha)
            raise
        return minimum.to_record()


# ============================================================================================= train, delete, download
def train(session: Session, request: TrainRequest, source: str = "train") -> Job:
    """Queue a training job (``job.minimum_id`` is set when it succeeds)."""
    return create_job(session, resolve_train(request, source=source))


def seed_demo(session: Session) -> int:
    """Queue the demo minima when there are no minima and no jobs yet; returns how many were queued."""
    if session.scalar(select(Minimum.id).limit(1)) is not None or session.scalar(select(Job.id).limit(1)):
        return 0
    epochs = get_settings().demo_epochs
    queued = 0
    for sampler in DEMO_SAMPLERS:
        for seed in DEMO_SEEDS:
            request = TrainRequest(architecture="mlp", dataset="digits", sampler=sampler, seed=seed, epochs=epochs,
                                   name=f"{sampler}-{seed}")
            train(session, request, source="demo")
            queued += 1
    return queued


def delete(session: Session, minimum_id: str) -> None:
    """Delete a minimum and the artifacts no other minimum references."""
    minimum = get_minimum(session, minimum_id)
    artifacts = [h for h in (minimum.checkpoint_sha256, minimum.canonical_sha256) if h]
    session.delete(minimum)
    session.commit()
    store = get_store()
    for sha in artifacts:
        if not _referenced(session, sha):
            store.delete(sha)


def download_name(minimum: Minimum, form: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", minimum.name).strip("._")[:80] or minimum.id
    return f"{safe}-{form}.safetensors"


def checkpoint_bytes(session: Session, minimum: Minimum, form: str) -> bytes:
    """The checkpoint as safetensors: ``original``, or ``canonical`` (the normalized network, docs/method.md §2;
    computed once, then kept in the artifact store)."""
    from toroid.worker.landscape.symmetry import normalize

    store = get_store()
    try:
        if form == "original":
            return store.get_bytes(minimum.checkpoint_sha256)
        if minimum.canonical_sha256 and store.exists(minimum.canonical_sha256):
            return store.get_bytes(minimum.canonical_sha256)
        data = state_dict_bytes(normalize(minimum_model(minimum)).state_dict())
        minimum.canonical_sha256 = store.put_bytes(data)
        session.commit()
        return data
    except FileNotFoundError as exc:
        raise NotFound(f"the checkpoint file of minimum {minimum.id} is missing from the artifact store; upload it "
                       "again") from exc
