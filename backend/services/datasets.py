"""Datasets: the registry's kinds and the datasets users upload (docs/api.md, "Datasets").

An upload (one ``.npz``, or the four IDX files of an MNIST-style set) is decoded and checked completely by the core
(``toroid.worker.landscape.data.read_dataset_files``: lengths, labels, finite values, sizes, no pickles) before
anything is stored. Its content address, the sha256 of the arrays, is its id: the same data uploaded again is the
same dataset. The arrays are written as one canonical ``.npz`` to ``<data root>/uploads/<sha256>.npz`` (atomically:
a temporary file renamed into place) and then the row is committed; a failure of either leaves neither. Requests
name an uploaded dataset by its name (``toroid.store.params.resolve_dataset`` turns it into
``("upload", {"sha256": ...})``, what minima and jobs store). Only its owner or an admin may delete it, and not while
a minimum or an active job uses it.
"""

from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from toroid.store.artifacts import get_store, write_atomically
from toroid.store.db import new_session
from toroid.store.errors import Conflict, Invalid, NotFound
from toroid.store.models import ACTIVE_STATES, Job, Minimum, Study, UploadedDataset, utcnow
from toroid.store.params import UPLOAD_KIND, dataset_available
from toroid.store.settings import get_settings
from toroid.store.text import clean_name
from toroid.store.users import OPEN, Principal

MiB = 2**20
#: Names of uploaded datasets: what requests send as ``dataset`` (never used to build a path).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: How many files an upload may have: one ``.npz``, or the IDX quartet.
FILE_COUNTS = (1, 4)
#: Options of an uploaded dataset that a request does not set (the dataset picks them).
FIXED_OPTIONS = ("sha256", "root")


# ============================================================================================= names and records
def check_dataset_name(name: Any) -> str:
    """A valid name for a new uploaded dataset, or ``Invalid`` (422) saying what a name may be."""
    from toroid.worker.landscape.data import DATASETS

    if not isinstance(name, str) or not name.strip():
        raise Invalid("give the dataset a name: the form field 'name' (1-64 letters, digits, '.', '_' or '-'), "
                      "e.g. curl -F name=my-data -F file=@data.npz .../api/datasets")
    name = name.strip()
    shown = repr(name[:80]) + ("..." if len(name) > 80 else "")
    if not NAME.match(name):
        raise Invalid(f"dataset name {shown} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting "
                      "with a letter or digit (no spaces, slashes or other characters)")
    if name.lower() in {kind.lower() for kind in DATASETS}:
        raise Invalid(f"dataset name {name!r} is a built-in dataset kind ({sorted(DATASETS)}): choose another name")
    if _HEX64.match(name):
        raise Invalid(f"dataset name {name!r} looks like a dataset id (64 hex digits): choose another name")
    return name


def _upload_options() -> dict[str, Any]:
    from toroid.worker.landscape.data import DATASETS

    return {k: v for k, v in DATASETS[UPLOAD_KIND].options.items() if k not in FIXED_OPTIONS}


def upload_record(row: UploadedDataset) -> dict[str, Any]:
    """The API's record of an uploaded dataset (an item of GET /api/datasets)."""
    record = row.to_record()
    shape = "x".join(str(s) for s in record["input_shape"])
    record.update(
        description=(f"Uploaded{f' by {row.owner}' if row.owner else ''}: {row.train:,} training and {row.test:,} "
                     f"test samples, inputs {shape}, {row.num_classes} classes ({row.file_name})."),
        options=_upload_options(), available=True,
    )
    return record


def registry_records() -> list[dict[str, Any]]:
    """The registry's kinds a request may name directly (the bare ``upload`` kind is listed through its uploads)."""
    from toroid.worker.landscape.data import DATASETS

    return [
        {"name": name, "description": spec.description, "options": copy.deepcopy(spec.options),
         "available": dataset_available(name), "kind": name, "dataset": name, "dataset_options": {},
         **_default_shapes(name)}
        for name, spec in DATASETS.items() if name != UPLOAD_KIND
    ]


def _default_shapes(name: str) -> dict[str, Any]:
    """Splits, input shape and classes of a registry kind at its default options, read without loading the data
    (headers or published sizes); nothing for a kind that needs options first (``npz`` needs a path)."""
    from toroid.worker.landscape.data import dataset_info, dataset_sizes

    try:
        shape, classes = dataset_info(name)
        train, test = dataset_sizes(name)
    except (ValueError, TypeError, OSError):
        return {}
    return {"train": int(train), "test": int(test), "input_shape": [int(s) for s in shape],
            "num_classes": int(classes)}


def list_records(session: Session) -> list[dict[str, Any]]:
    """The registry's datasets, then the uploaded ones (newest first)."""
    rows = session.scalars(select(UploadedDataset).order_by(UploadedDataset.created_at.desc(), UploadedDataset.id))
    return registry_records() + [upload_record(row) for row in rows]


def get_upload(session: Session, id_or_name: str) -> UploadedDataset:
    row = session.scalar(select(UploadedDataset).where(
        or_(UploadedDataset.id == id_or_name, UploadedDataset.name == id_or_name)))
    if row is None:
        raise NotFound(f"no uploaded dataset with the name or id {id_or_name[:100]!r}; GET /api/datasets lists them")
    return row


def get_record(session: Session, id_or_name: str) -> dict[str, Any]:
    """One dataset by its name (a registry kind or an upload's) or an upload's id."""
    for record in registry_records():
        if record["name"] == id_or_name:
            return record
    return upload_record(get_upload(session, id_or_name))


# ============================================================================================= upload
def _file_names(files: list[tuple[str | None, bytes]]) -> list[str]:
    """The names the reader recognizes the files by: each file's base name as sent (display and matching only,
    never a path on this server)."""
    names = []
    for index, (filename, _data) in enumerate(files):
        base = PurePosixPath((filename or "").replace("\\", "/")).name
        names.append(clean_name(base)[:200] or f"file-{index}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise Invalid(f"two uploaded files are named {repeated[0]!r}: send one .npz, or the four IDX files "
                      "(train-images, train-labels, t10k-images, t10k-labels) once each")
    return names


def create_from_upload(name: Any, files: list[tuple[str | None, bytes]],
                       owner: str | None = None) -> tuple[dict[str, Any], bool]:
    """Check an upload completely, then store its canonical ``.npz`` and its row (``owner``'s); returns the record
    and whether it is new (the same content uploaded before answers with the existing record). A name that another
    content holds is a ``Conflict`` (409). Runs off the event loop: decoding a large dataset takes seconds."""
    from toroid.worker.landscape.data import read_dataset_files, uploaded_path

    name = check_dataset_name(name)
    if len(files) not in FILE_COUNTS:
        raise Invalid(f"got {len(files)} files: send one .npz (field 'file') with arrays x_train, y_train, x_test, "
                      "y_test, or the four IDX files of an MNIST-style set (field 'files', four times)")
    names = _file_names(files)
    settings = get_settings()
    try:
        arrays = read_dataset_files(dict(zip(names, (data for _, data in files), strict=True)),
                                    max_bytes=settings.max_dataset_mb * MiB)
    except ValueError as exc:  # the reader's own words: what is wrong with the files and how to fix them
        limit = ("; this server's limit is TOROID_MAX_DATASET_MB: upload a subset, or ask for a higher limit"
                 if "above the limit" in str(exc) else "")
        raise Invalid(f"{exc}{limit}") from exc
    sha = arrays.sha256
    with new_session() as session:
        existing = session.get(UploadedDataset, sha)
        if existing is not None and uploaded_path(settings.resolved_data_root, sha).is_file():
            return upload_record(existing), False
        _check_name_free(session, name, sha)
    summary = arrays.summary()
    data = arrays.to_npz_bytes()
    del arrays
    target = uploaded_path(settings.resolved_data_root, sha)
    row = UploadedDataset(
        id=sha, name=name, owner=owner, created_at=utcnow(), train=int(summary["train"]), test=int(summary["test"]),
        input_shape=[int(s) for s in summary["input_shape"]], num_classes=int(summary["num_classes"]),
        class_names=summary.get("class_names"), class_counts=summary["class_counts"], nbytes=int(summary["nbytes"]),
        file_name=", ".join(names)[:255], file_size=sum(len(d) for _, d in files),
    )
    with get_store().guard(sha), new_session() as session:
        existing = session.get(UploadedDataset, sha)
        if existing is not None:  # uploaded meanwhile, or its file was lost: (re)write the file, keep the row
            if not target.is_file():
                write_atomically(target, data, target.parent / "tmp")
            return upload_record(existing), False
        write_atomically(target, data, target.parent / "tmp")
        try:
            session.add(row)
            session.commit()
        except BaseException as exc:
            session.rollback()
            if session.get(UploadedDataset, sha) is None:
                target.unlink(missing_ok=True)
            if isinstance(exc, IntegrityError):  # the name was taken meanwhile
                _check_name_free(session, name, sha)
            raise
        return upload_record(row), True


def _check_name_free(session: Session, name: str, sha: str) -> None:
    holder = session.scalar(select(UploadedDataset).where(UploadedDataset.name == name))
    if holder is not None and holder.id != sha:
        raise Conflict(f"the name {name!r} belongs to another dataset (id {holder.id}"
                       f"{f', uploaded by {holder.owner}' if holder.owner else ''}) with different content: choose "
                       f"another name, or delete that one first (DELETE /api/datasets/{name})")


# ============================================================================================= delete
def usage(session: Session, row: UploadedDataset) -> tuple[list[Minimum], list[Job]]:
    """The minima that use an uploaded dataset, and the queued or running trainings and studies that will."""
    def names_it(dataset: Any, options: Any) -> bool:
        if dataset in (row.name, row.id):
            return True
        return dataset == UPLOAD_KIND and isinstance(options, dict) and options.get("sha256") == row.id

    minima = [m for m in session.scalars(select(Minimum).where(Minimum.dataset == UPLOAD_KIND)
                                         .order_by(Minimum.created_at, Minimum.id))
              if names_it(m.dataset, m.dataset_options)]
    jobs = []
    for job in session.scalars(select(Job).where(Job.state.in_(ACTIVE_STATES), Job.kind.in_(("train", "study")))
                               .order_by(Job.created_at, Job.id)):
        params = job.params or {}
        if job.kind == "study":
            study = session.get(Study, params.get("study_id") or "")
            params = (study.spec or {}) if study is not None else {}
        if names_it(params.get("dataset"), params.get("dataset_options")):
            jobs.append(job)
    return minima, jobs


def delete(session: Session, id_or_name: str, principal: Principal = OPEN) -> None:
    """Delete an uploaded dataset: its row and its file. Only its owner or an admin may (403); a dataset that
    minima or active jobs use is a ``Conflict`` (409) naming them."""
    from toroid.worker.landscape.data import uploaded_path

    row = get_upload(session, id_or_name)
    principal.require_owner(row.owner, f"dataset {row.name!r} ({row.id})")
    with get_store().guard(row.id):
        minima, jobs = usage(session, row)
        if minima or jobs:
            parts = []
            if minima:
                shown = ", ".join(m.id for m in minima[:10]) + (" ..." if len(minima) > 10 else "")
                parts.append(f"{len(minima)} minim{'um' if len(minima) == 1 else 'a'} ({shown})")
            if jobs:
                shown = ", ".join(f"{j.kind} job {j.id}" for j in jobs[:10]) + (" ..." if len(jobs) > 10 else "")
                parts.append(f"{len(jobs)} queued or running job(s) ({shown})")
            raise Conflict(
                f"dataset {row.name!r} is used by {' and '.join(parts)}: delete those minima first "
                "(DELETE /api/minima/<id>; GET /api/minima lists them) and wait for or cancel the jobs "
                "(POST /api/jobs/<id>/cancel), then delete the dataset")
        session.execute(sql_delete(UploadedDataset).where(UploadedDataset.id == row.id))
        session.commit()
        uploaded_path(get_settings().resolved_data_root, row.id).unlink(missing_ok=True)
