"""Minima: lookup, family rules, uploads (validated completely before anything is stored), training requests,
deletion, checkpoint downloads, and the demo seed.

An upload is checked before anything is stored: the file format (safetensors, or a torch state_dict read with
``weights_only=True``, which refuses code-executing pickles without running them), the exact keys and shapes of the
declared architecture for the declared dataset, and the cost of its evaluation. Any failure raises a typed error and
leaves the database and the artifact store unchanged. The evaluation itself (train/test error) is a job on a
worker: the upload answers at once with the errors pending (``evaluation``), so no upload holds the API.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from toroid.backend.services.pages import Page, page_of, row_fingerprint
from toroid.store.artifacts import get_store, state_dict_bytes
from toroid.store.db import new_session
from toroid.store.errors import BrokerUnavailable, Conflict, Invalid, NotFound, Unauthorized
from toroid.store.families import family_of, queue_family_distances
from toroid.store.keymap import AUTO, apply_key_map, parse_key_map, propose_key_map
from toroid.store.ledger import cancel_job, clean_json, create_job, publish_job
from toroid.store.loading import CheckpointError, check_state_dict, minimum_model, read_checkpoint
from toroid.store.models import ACTIVE_STATES, Job, Minimum, UploadedDataset, new_id, utcnow
from toroid.store.params import EvaluateJob, TrainRequest, resolve_architecture, resolve_dataset, resolve_train
from toroid.store.settings import get_settings
from toroid.store.text import check_json_text, check_name, clean_name
from toroid.store.users import OPEN, Principal

#: What `toroid up` trains on first start: MLP (default widths) on digits, these samplers x seeds.
DEMO_SAMPLERS = ("sgd", "rsgd", "adv")
DEMO_SEEDS = (0, 1)
#: Seeds a minimum may record: what the training request accepts (and what every database's INTEGER holds).
MAX_SEED = 2**31 - 1


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
    """Analyses of several minima need one family: the same network structure (or architecture and config) and
    dataset, i.e. the same parameter space (``Minimum.family``)."""
    first = minima[0]
    for other in minima[1:]:
        if other.family() == first.family():
            continue
        differs = [f for f in ("dataset", "dataset_options") if getattr(other, f) != getattr(first, f)]
        if not differs:
            differs = ["structure"] if first.structure and other.structure else [
                f for f in ("architecture", "config") if getattr(other, f) != getattr(first, f)] or ["structure"]
        field = differs[0]
        raise Invalid(
            f"{what} needs minima of one family (the same network structure and dataset); {first.name!r} "
            f"({first.id}) has {field} {getattr(first, field)!r} but {other.name!r} ({other.id}) has "
            f"{getattr(other, field)!r}"
        )


def list_minima(session: Session) -> list[Minimum]:
    return list(session.scalars(select(Minimum).order_by(Minimum.created_at.desc(), Minimum.id)).all())


def minima_page(session: Session, *, limit: int | None = None, after: str | None = None) -> Page:
    """A page of the minima, newest first (all of them without ``limit``; ``toroid.backend.services.pages``)."""
    return page_of(session, "minima", Minimum, select(Minimum), limit=limit, after=after)


def minima_fingerprint(session: Session, page: Page, *, csv: bool = False) -> str:
    """What the page's records are made of, without building them: the rows' stored columns, the state of the
    evaluation jobs whose errors are pending (their records say pending or failed) and, for the CSV table, the
    uploaded datasets' names it shows."""
    pending = sorted(m.evaluation_job_id for m in page.rows if m.train_error is None and m.evaluation_job_id)
    jobs = session.execute(select(Job.id, Job.state, Job.error).where(Job.id.in_(pending)).order_by(Job.id)).all() \
        if pending else []
    datasets = session.execute(select(UploadedDataset.id, UploadedDataset.name).order_by(UploadedDataset.id)).all() \
        if csv else []
    return row_fingerprint(page.rows, [tuple(j) for j in jobs], [tuple(d) for d in datasets], page.total,
                           page.next_cursor)


def minimum_records(session: Session, minima: Sequence[Minimum]) -> list[dict[str, Any]]:
    """The API records of ``minima``; those whose errors are not known yet carry their evaluation job's state
    (read in one query)."""
    pending = [m.evaluation_job_id for m in minima if m.train_error is None and m.evaluation_job_id]
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(pending)))} if pending else {}
    return [m.to_record(jobs.get(m.evaluation_job_id or "")) for m in minima]


def minimum_record(session: Session, minimum: Minimum) -> dict[str, Any]:
    return minimum_records(session, [minimum])[0]


#: The columns of ``GET /api/minima?format=csv`` (docs/api.md, "Exports"); ``local_energy`` is the local energy at
#: the largest sigma of the latest flatness analysis, empty when there is none.
MINIMA_CSV_COLUMNS = ("id", "name", "architecture", "dataset", "sampler", "seed", "train_error", "test_error",
                      "local_energy", "family", "created_at")


def minima_table(session: Session, records: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple]]:
    """Header and rows of the minima table: one row per record; an uploaded dataset is named as requests name it
    (``upload`` alone would not tell two apart)."""
    uploaded = {r.id: r.name for r in session.scalars(select(UploadedDataset))}

    def dataset(record: dict[str, Any]) -> str:
        sha256 = (record.get("dataset_options") or {}).get("sha256")
        return uploaded.get(sha256, record["dataset"]) if record["dataset"] == "upload" else record["dataset"]

    rows = [tuple(dataset(r) if c == "dataset" else r.get(c) for c in MINIMA_CSV_COLUMNS) for r in records]
    return MINIMA_CSV_COLUMNS, rows


# ============================================================================================= uploads
def json_object(text: str, field: str) -> dict[str, Any]:
    check_json_text(text, field)
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

        check_json_text(sidecar, "the sidecar")
        try:
            meta = parse_sidecar(sidecar)
        except ValueError as exc:
            raise Invalid(f"{exc}; upload the .json file `toroid train` wrote next to the checkpoint") from exc
        for field in ("architecture", "dataset"):
            given = fields.get(field, "").strip()
            if given and given != meta[field]:
                raise Invalid(f"the form says {field}={given!r} but the sidecar says {meta[field]!r}; send one")
        provenance = dict(meta.get("provenance") or {})
        spec = {
            "architecture": meta["architecture"], "config": dict(meta.get("config") or {}),
            "dataset": meta["dataset"], "dataset_options": dict(meta.get("dataset_options") or {}),
            "name": name or meta["name"], "sampler": _sidecar_sampler(provenance.get("sampler")),
            "seed": _sidecar_seed(provenance.get("seed")), "provenance": provenance,
        }
    else:
        missing = [f for f in ("architecture", "dataset") if not fields.get(f, "").strip()]
        if missing:
            raise Invalid(
                f"missing form field(s) {missing}: give architecture and dataset (GET /api/architectures, "
                "GET /api/datasets), or upload the sidecar JSON of `toroid train` as the field 'sidecar'"
            )
        spec = {
            "architecture": fields["architecture"].strip(), "config": json_object(fields.get("config", ""), "config"),
            "dataset": fields["dataset"].strip(),
            "dataset_options": json_object(fields.get("dataset_options", ""), "dataset_options"),
            "name": name, "sampler": None, "seed": None, "provenance": {},
        }
    if not spec["name"]:
        stem = clean_name(PurePath(filename or "").stem)  # a display name only; never used as a path
        spec["name"] = stem[:200] or "upload"
    check_name(spec["name"], "the sidecar's name" if sidecar is not None and not name else "name")
    return spec


def _sidecar_sampler(value: Any) -> str | None:
    """The sidecar's ``provenance.sampler``: absent, or the name of a sampler this server knows."""
    from toroid.worker.landscape.samplers import SAMPLERS

    if value is None:
        return None
    if not isinstance(value, str) or value not in SAMPLERS:
        shown = repr(value)[:80] if isinstance(value, str | int | float) else type(value).__name__
        raise Invalid(f"the sidecar's provenance.sampler {shown} is not a known sampler; valid samplers: "
                      f"{sorted(SAMPLERS)} (or leave it out)")
    return value


def _sidecar_seed(value: Any) -> int | None:
    """The sidecar's ``provenance.seed``: absent, or an integer in [0, 2**31 - 1] (what a training run accepts)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        shown = (f"{str(value)[:20]}... ({len(str(value))} digits)" if isinstance(value, int) and len(str(value)) > 24
                 else repr(value)[:40])
        raise Invalid(f"the sidecar's provenance.seed must be an integer in [0, {MAX_SEED}] (or left out), got {shown}")
    return value


def _checked_state(state: dict, template: dict, what: str, key_map_field: str | None, spec: dict[str, Any]) -> dict:
    """``check_state_dict`` after the upload's ``key_map`` (``toroid.store.keymap``): none, ``auto`` or an explicit
    map. A mismatch whose tensors line up with the architecture's in layer order answers 422 with the proposed
    ``key_map`` beside the message, so the caller can confirm it."""
    key_map = parse_key_map(key_map_field)
    if key_map == AUTO:
        key_map = propose_key_map(state, template)
        if key_map is None and set(state) != set(template):
            raise CheckpointError(
                f"key_map=auto found no renaming: the upload's tensors do not line up with those of {what} in layer "
                f"order (same count, shapes and kinds one after the other). Expected {len(template)} tensors: "
                f"{_layout(template)}; the upload has {len(state)}: {_layout(state)}")
    if key_map:
        state = apply_key_map(state, key_map)
        spec["provenance"] = {**spec["provenance"], "key_map": key_map if len(key_map) <= 1000 else len(key_map)}
    try:
        return check_state_dict(state, template, what)
    except CheckpointError as exc:
        proposal = propose_key_map(state, template) if not key_map else None
        if proposal is None:
            raise
        renamed = sum(1 for k, v in proposal.items() if k != v)
        raise CheckpointError(
            f"{exc}. The upload's {len(state)} tensors line up with the architecture's in layer order: renaming "
            f"{renamed} key(s) (e.g. {next((k, v) for k, v in proposal.items() if k != v)}) makes it fit. Send the "
            "upload again with the form field key_map=auto to accept this renaming (it is listed here as key_map), "
            "or with key_map set to a JSON object of your own", key_map=proposal) from exc


def architecture_layout(architecture: str, config_text: str, dataset: str, options_text: str) -> dict[str, Any]:
    """What an upload for ``architecture`` on ``dataset`` must hold: every state_dict key with its shape and dtype,
    in layer order (shown next to the dashboard's upload form, and by GET /api/architectures/<name>/layout)."""
    dataset, options, input_shape, num_classes = resolve_dataset(dataset, json_object(options_text,
                                                                                     "dataset_options"))
    template, config = resolve_architecture(architecture, json_object(config_text, "config"), input_shape,
                                            num_classes)
    return {
        "architecture": architecture, "config": clean_json(config), "dataset": dataset,
        "dataset_options": clean_json(options), "input_shape": list(input_shape), "num_classes": num_classes,
        "parameters": int(sum(t.numel() for t in template.values())),
        "tensors": [{"key": k, "shape": [int(s) for s in t.shape], "dtype": str(t.dtype).removeprefix("torch.")}
                    for k, t in template.items()],
    }


def _layout(state: dict) -> str:
    shown = [f"{k} {tuple(int(s) for s in t.shape)}" for k, t in list(state.items())[:6]]
    return ", ".join(shown) + (" ..." if len(state) > 6 else "")


def _structure(architecture: str, config: dict, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """The structure hash of the uploaded network (``toroid.store.programs.structure_hash``), or None when its unit
    graph cannot be traced (its family is then its architecture and config). The hash needs the layout and the
    graph, not the weights: the network is built on the meta device (no memory, no initialization)."""
    import torch

    from toroid.store.programs import structure_hash
    from toroid.worker.landscape.nets import build_model

    try:
        with torch.device("meta"):
            return structure_hash(build_model(architecture, dict(config), (tuple(input_shape), int(num_classes))))
    except ValueError:
        return None


def check_evaluation_cost(spec: dict[str, Any], template: dict) -> float:
    """The evaluation job's cost (one pass over the dataset) within ``TOROID_MAX_JOB_COST`` (``toroid.store.cost``)."""
    from toroid.store.cost import check_cost, parameter_count
    from toroid.worker.landscape.data import dataset_sizes

    try:
        n_train, n_test = dataset_sizes(spec["dataset"], **spec["dataset_options"])
    except ValueError as exc:
        raise Invalid(f"the size of dataset {spec['dataset']!r} cannot be read: {exc}") from exc
    return check_cost("evaluate", {}, parameter_count(template), n_train, n_test)


def _referenced(session: Session, sha256: str) -> bool:
    return session.scalar(
        select(Minimum.id).where(or_(Minimum.checkpoint_sha256 == sha256, Minimum.canonical_sha256 == sha256,
                                     Minimum.program_sha256 == sha256))
        .limit(1)
    ) is not None


def create_from_upload(fields: dict[str, str], data: bytes, sidecar: bytes | None, filename: str | None,
                       owner: str | None = None) -> dict:
    """Check an upload completely, then store its checkpoint and its row (``owner``'s) and queue its evaluation
    job; returns the new minimum's record (errors pending). Its family's distances are asked for at once, so the
    map places it (``toroid.store.families``). Raises ``BrokerUnavailable`` (503) when the evaluation cannot be
    queued: the upload is then undone. A ``torch.export`` archive (recognized from its bytes) takes the path of
    ``toroid.backend.services.programs``."""
    from toroid.worker.landscape.pt2 import is_pt2

    if is_pt2(data):
        from toroid.backend.services.programs import create_from_program

        return create_from_program(fields, data, sidecar, filename, owner)
    spec = upload_spec(fields, sidecar, filename)
    spec["dataset"], options, input_shape, num_classes = resolve_dataset(spec["dataset"], spec["dataset_options"])
    spec["dataset_options"] = options
    template, config = resolve_architecture(spec["architecture"], spec["config"], input_shape, num_classes)
    what = (f"architecture {spec['architecture']!r} (config {config}) on dataset {spec['dataset']!r} "
            f"(inputs {input_shape}, {num_classes} classes)")
    state = _checked_state(read_checkpoint(data, template), template, what, fields.get("key_map"), spec)
    cost = check_evaluation_cost(spec, template)

    data = state_dict_bytes(state)
    structure = _structure(spec["architecture"], config, input_shape, num_classes)
    minimum = Minimum(
        id=new_id(), name=spec["name"], architecture=spec["architecture"], config=clean_json(config),
        structure=structure,
        dataset=spec["dataset"], dataset_options=clean_json(options), sampler=spec["sampler"], seed=spec["seed"],
        train_error=None, test_error=None, provenance=clean_json(spec["provenance"]),
        checkpoint_sha256=hashlib.sha256(data).hexdigest(), source="upload", created_at=utcnow(), owner=owner,
    )
    return store_upload(minimum, data, owner, cost=cost)


def store_upload(minimum: Minimum, data: bytes, owner: str | None, program: bytes | None = None,
                 cost: float | None = None) -> dict:
    """Store a checked upload: its checkpoint ``data`` (and an exported ``program``), its row, and its evaluation
    job (of estimated ``cost``); returns its record. Files and row go together: a failure leaves neither (the
    artifact store's per-digest lock keeps a concurrent delete of the same bytes out)."""
    store = get_store()
    sha = minimum.checkpoint_sha256
    files = {sha: data, **({minimum.program_sha256: program} if program is not None else {})}
    with new_session() as session, store.guard(*files):
        for payload in files.values():
            store.put_bytes(payload)
        try:
            session.add(minimum)
            session.commit()
        except BaseException:
            session.rollback()
            for digest in files:
                if not _referenced(session, digest):
                    store.delete(digest)
            raise
    with new_session() as session:
        job = create_job(session, EvaluateJob(minimum_ids=[minimum.id]), publish=False, owner=owner,
                         message="queued: evaluating the upload", cost=cost)
        minimum = session.get(Minimum, minimum.id)
        minimum.evaluation_job_id = job.id
        session.commit()
        try:
            publish_job(session, job)
        except BrokerUnavailable:
            _undo_upload(session, minimum.id, list(files))
            raise
        record = minimum.to_record(job)
        queue_family_distances(session, minimum)
        return record


def _undo_upload(session: Session, minimum_id: str, digests: list[str]) -> None:
    """Remove a minimum whose evaluation could not be queued, and its files unless another minimum has them."""
    session.execute(sql_delete(Minimum).where(Minimum.id == minimum_id))
    session.commit()
    store = get_store()
    for sha in digests:
        with store.guard(sha):
            if not _referenced(session, sha):
                store.delete(sha)


# ============================================================================================= train, delete, download
def train(session: Session, request: TrainRequest, source: str = "train", owner: str | None = None) -> Job:
    """Queue a training job for ``owner`` (``job.minimum_id`` is set when it succeeds; the minimum is theirs)."""
    return create_job(session, resolve_train(request, source=source), owner=owner)


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


#: Job parameters that name input minima (``toroid.store.params``: every analysis job lists its inputs in
#: ``minimum_ids``; ``minimum_id``, ``a`` and ``b`` are the requests' own names for them).
INPUT_FIELDS = ("minimum_ids", "minimum_id", "a", "b")
#: Jobs that only describe their input minima: deleting a minimum cancels them instead of answering 409.
DESCRIBING_KINDS = ("distances", "evaluate")


def active_jobs_using(session: Session, minimum_id: str) -> list[Job]:
    """The queued or running jobs that take this minimum as an input (oldest first)."""
    jobs = session.scalars(select(Job).where(Job.state.in_(ACTIVE_STATES)).order_by(Job.created_at, Job.id)).all()
    using = []
    for job in jobs:
        params = job.params or {}
        named = [params.get(field) for field in INPUT_FIELDS]
        ids = {i for value in named for i in (value if isinstance(value, list) else [value]) if isinstance(i, str)}
        if minimum_id in ids:
            using.append(job)
    return using


def delete(session: Session, minimum_id: str, *, force: bool = False, principal: Principal = OPEN) -> None:
    """Delete a minimum and the artifacts no other minimum references. Only its owner or an admin may (403).
    Queued or running jobs that use it make this a 409 naming them, unless ``force``: then they are cancelled
    first (the caller must be allowed to cancel each of them). Distances and evaluation jobs never block: they only
    describe the minimum, so they are cancelled, and the family's distances are asked for again without it."""
    minimum = get_minimum(session, minimum_id)
    principal.require_owner(minimum.owner, f"minimum {minimum.name!r} ({minimum.id})")
    users = active_jobs_using(session, minimum_id)
    for job in [j for j in users if j.kind in DESCRIBING_KINDS]:
        cancel_job(session, job)
    users = [j for j in users if j.kind not in DESCRIBING_KINDS]
    family = [m for m in family_of(session, minimum) if m.id != minimum.id]
    if users and not force:
        named = ", ".join(f"{job.kind} job {job.id} ({job.state})" for job in users[:10])
        more = f" and {len(users) - 10} more" if len(users) > 10 else ""
        raise Conflict(
            f"minimum {minimum_id} is an input of {len(users)} queued or running job(s): {named}{more}; wait for "
            "them, cancel them (POST /api/jobs/<id>/cancel), or delete with ?force=true to cancel them and delete"
        )
    for job in users:
        principal.require_owner(job.owner, f"job {job.id}, which uses minimum {minimum.id},")
    for job in users:
        cancel_job(session, job)
    # delete the row only as read: a canonical form stored meanwhile would otherwise leave its file behind
    for _ in range(3):
        current = session.get(Minimum, minimum_id, populate_existing=True)
        if current is None:
            raise NotFound(f"minimum {minimum_id} was deleted by another request meanwhile")
        canonical = current.canonical_sha256
        gone = session.execute(sql_delete(Minimum).where(
            Minimum.id == minimum.id,
            Minimum.canonical_sha256.is_(None) if canonical is None else Minimum.canonical_sha256 == canonical))
        session.commit()
        if gone.rowcount == 1:
            break
    artifacts = [h for h in (minimum.checkpoint_sha256, canonical, minimum.program_sha256) if h]
    store = get_store()
    for sha in artifacts:
        with store.guard(sha):
            if not _referenced(session, sha):
                store.delete(sha)
    if family:
        queue_family_distances(session, family[0])


def download_name(minimum: Minimum, form: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", minimum.name).strip("._")[:80] or minimum.id
    return f"{safe}-{form}.safetensors"


def checkpoint_bytes(session: Session, minimum: Minimum, form: str, principal: Principal = OPEN) -> bytes:
    """The checkpoint as safetensors: ``original``, or ``canonical`` (the normalized network, docs/method.md §2;
    computed once, for a signed-in caller, then kept in the artifact store and read by anyone who may read)."""
    from toroid.worker.landscape.symmetry import normalize

    minimum_id = minimum.id  # read while loaded: a concurrent delete must not turn a 404 into a 500
    store = get_store()
    try:
        if form == "original":
            return store.get_bytes(minimum.checkpoint_sha256)
        if minimum.canonical_sha256 and store.exists(minimum.canonical_sha256):
            return store.get_bytes(minimum.canonical_sha256)
        if principal.anonymous:
            raise Unauthorized("the canonical form of this minimum has not been computed yet, and computing it "
                               "writes to the server: sign in (send your API token) to compute it")
        data = state_dict_bytes(normalize(minimum_model(minimum)).state_dict())
        sha = hashlib.sha256(data).hexdigest()
        with store.guard(sha):
            store.put_bytes(data)
            # conditional: the minimum may have been deleted meanwhile (then its file must not stay behind)
            stored = session.execute(update(Minimum).where(Minimum.id == minimum_id).values(canonical_sha256=sha))
            session.commit()
            if stored.rowcount != 1 and not _referenced(session, sha):
                store.delete(sha)
        if stored.rowcount != 1:
            raise NotFound(f"minimum {minimum_id} was deleted while its canonical form was computed")
        return data
    except FileNotFoundError as exc:
        # deleted while we read it: the minimum is gone, not its file. Asked by a query, never through the loaded
        # instance, whose refresh would raise ObjectDeletedError for the deleted row
        session.rollback()
        if session.scalar(select(Minimum.id).where(Minimum.id == minimum_id)) is None:
            raise NotFound(f"no minimum with id {minimum_id!r} (it was deleted meanwhile)") from exc
        raise NotFound(f"the checkpoint file of minimum {minimum_id} is missing from the artifact store; upload it "
                       "again") from exc
