"""Your own data (docs/data.md): the ``npz`` dataset (a file under the data root) and uploaded datasets, stored
content-addressed as ``<root>/uploads/<sha256>.npz`` (the ``upload`` dataset).

:func:`read_dataset_files` turns uploaded files (one ``.npz``, or the four IDX files of an MNIST-style set) into
validated :class:`DatasetArrays`; nothing is returned before every check passed, and sizes are capped before any
data is inflated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from toroid.worker.landscape.data.arrays import (
    STANDARDIZE_CHOICES,
    Dataset,
    check_int,
    check_subset_options,
    default_root,
    make_dataset,
    standardize_option,
    subset_size,
    subsets,
)
from toroid.worker.landscape.data.files import npz_headers, read_idx, read_npz, write_npz

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Optional arrays of a dataset archive: a scalar ``num_classes`` and 1-D unicode ``class_names``.
NPZ_OPTIONAL = ("num_classes", "class_names")
#: The most bytes the ``npz`` dataset reads from a file under the data root (its arrays as declared).
LOCAL_MAX_BYTES = 16 * 2**30
#: Recognized IDX file names of an upload: a role -> the name parts that mark it.
IDX_ROLES = {
    "x_train": ("train-images",),
    "y_train": ("train-labels",),
    "x_test": ("t10k-images", "test-images"),
    "y_test": ("t10k-labels", "test-labels"),
}
SAVE_HINT = "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
_SHA256 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------------------
# validation


def validate_arrays(
    arrays: Mapping[str, np.ndarray], what: str, num_classes: int | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """Check a dataset's four arrays and return them (inputs little-endian in their numeric dtype, labels
    ``int64``) with the number of classes: ``num_classes``, else ``max label + 1`` (at least 2).

    Checks: all four present, inputs shaped ``(samples, ...)`` with the same sample shape in both splits, one
    integer label per sample, non-empty splits, real finite inputs, labels in ``[0, num_classes)``.
    """
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{what} lacks the arrays {missing}; it must contain exactly {list(NPZ_KEYS)} "
                         f"(found {sorted(arrays)}): {SAVE_HINT}")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.ndim < 2:
            raise ValueError(f"{what}: x_{split} must be shaped (samples, ...), got shape {x.shape}")
        if y.ndim != 1:
            raise ValueError(f"{what}: y_{split} must be 1-D (one label per sample), got shape {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{what}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if len(y) == 0:
            raise ValueError(f"{what}: the {split} split is empty")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{what}: x_{split} must be real numbers, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise ValueError(f"{what}: x_{split} contains NaN or infinite values")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
                raise ValueError(f"{what}: y_{split} must hold integer class labels, got dtype {y.dtype}")
        out[f"x_{split}"] = x.astype(x.dtype.newbyteorder("<"), copy=False)
        out[f"y_{split}"] = y.astype(np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise ValueError(f"{what}: x_train and x_test have different sample shapes "
                         f"{out['x_train'].shape[1:]} vs {out['x_test'].shape[1:]}")
    if out["x_train"].dtype != out["x_test"].dtype:
        out["x_test"] = out["x_test"].astype(np.result_type(out["x_train"], out["x_test"]))
        out["x_train"] = out["x_train"].astype(out["x_test"].dtype, copy=False)
    low = min(int(out["y_train"].min()), int(out["y_test"].min()))
    high = max(int(out["y_train"].max()), int(out["y_test"].max()))
    if low < 0:
        raise ValueError(f"{what}: labels must be in [0, num_classes), found label {low}")
    if num_classes is None:
        num_classes = max(high + 1, 2)
    elif high >= num_classes:
        raise ValueError(f"{what}: labels must be in [0, {num_classes}) (num_classes={num_classes}), "
                         f"found label {high}")
    return out, int(num_classes)


def _declared_classes(arrays: Mapping[str, Any], what: str) -> tuple[int | None, list[str] | None]:
    """The optional ``num_classes`` (a scalar integer >= 2) and ``class_names`` (1-D unicode, one per class)."""
    num_classes = None
    if "num_classes" in arrays:
        value = np.asarray(arrays["num_classes"])
        if value.size != 1 or not np.issubdtype(value.dtype, np.integer) or int(value.reshape(())) < 2:
            raise ValueError(f"{what}: num_classes must be one integer >= 2, got {value.dtype} of shape "
                             f"{value.shape}")
        num_classes = int(value.reshape(()))
    names = None
    if "class_names" in arrays:
        value = np.asarray(arrays["class_names"])
        if value.ndim != 1 or value.dtype.kind != "U":
            raise ValueError(f"{what}: class_names must be a 1-D array of strings, e.g. np.array(['cat', 'dog']), "
                             f"got {value.dtype} of shape {value.shape}")
        names = [str(v) for v in value.tolist()]
        if num_classes is None:
            num_classes = max(len(names), 2)
        if len(names) != num_classes:
            raise ValueError(f"{what}: {len(names)} class_names for num_classes={num_classes}; give one name "
                             "per class")
    return num_classes, names


def _content_sha256(arrays: Mapping[str, np.ndarray], num_classes: int, class_names: list[str] | None) -> str:
    """sha256 over a canonical encoding: a JSON header (format, each array's key, little-endian dtype and shape,
    the class count and names) then each array's C-ordered bytes, in the order of ``NPZ_KEYS``."""
    header = {
        "format": "toroid-dataset/1",
        "arrays": [[k, arrays[k].dtype.str, list(arrays[k].shape)] for k in NPZ_KEYS],
        "num_classes": int(num_classes),
        "class_names": class_names,
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for key in NPZ_KEYS:
        digest.update(np.ascontiguousarray(arrays[key]).data)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class DatasetArrays:
    """A validated dataset as uploaded: inputs in their numeric dtype (``uint8`` stays ``uint8``), ``int64``
    labels in ``[0, num_classes)``, optional class names, and ``sha256``, its content address (the same data gives
    the same address whether it came as ``.npz`` or as IDX files; compare two by it, ``==`` is identity)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str] | None
    sha256: str

    @classmethod
    def from_arrays(
        cls, x_train: Any, y_train: Any, x_test: Any, y_test: Any, num_classes: int | None = None,
        class_names: list[str] | None = None, *, what: str = "the dataset",
    ) -> DatasetArrays:
        """Validate four arrays (see :func:`validate_arrays`) and give them their content address."""
        extra: dict[str, Any] = {}
        if num_classes is not None:
            extra["num_classes"] = np.asarray(num_classes)
        if class_names is not None:
            extra["class_names"] = np.asarray(list(class_names), dtype=str)
        declared, names = _declared_classes(extra, what)
        arrays, classes = validate_arrays(
            {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, what, declared)
        return cls(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], classes, names,
                   _content_sha256(arrays, classes, names))

    def summary(self) -> dict[str, Any]:
        """Sizes, shapes and class counts (JSON-able)."""
        return {
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "input_shape": [int(s) for s in self.x_train.shape[1:]],
            "num_classes": int(self.num_classes),
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "class_counts": {
                "train": np.bincount(self.y_train, minlength=self.num_classes).tolist(),
                "test": np.bincount(self.y_test, minlength=self.num_classes).tolist(),
            },
            "nbytes": int(sum(a.nbytes for a in (self.x_train, self.y_train, self.x_test, self.y_test))),
        }

    def to_npz_bytes(self) -> bytes:
        """An uncompressed ``.npz`` (the four arrays, ``num_classes`` and ``class_names`` when known) whose bytes
        depend on the content only; ``np.load`` reads it with ``allow_pickle=False``."""
        arrays: dict[str, np.ndarray] = {k: getattr(self, k) for k in NPZ_KEYS}
        arrays["num_classes"] = np.asarray(self.num_classes, dtype=np.int64)
        if self.class_names is not None:
            arrays["class_names"] = np.asarray(self.class_names, dtype=str)
        return write_npz(arrays)


def _from_npz(source: bytes | Path, what: str, max_bytes: int) -> DatasetArrays:
    headers = npz_headers(source, what)
    unknown = sorted(set(headers) - set(NPZ_KEYS) - set(NPZ_OPTIONAL))
    if unknown:
        raise ValueError(f"{what} holds the unknown arrays {unknown}; expected {list(NPZ_KEYS)} and optionally "
                         f"{list(NPZ_OPTIONAL)}: {SAVE_HINT}")
    arrays = read_npz(source, what, max_bytes=max_bytes)
    declared, names = _declared_classes(arrays, what)
    valid, classes = validate_arrays(arrays, what, declared)
    return DatasetArrays(valid["x_train"], valid["y_train"], valid["x_test"], valid["y_test"], classes, names,
                         _content_sha256(valid, classes, names))


def _idx_role(name: str) -> str | None:
    lowered = name.lower()
    roles = [role for role, marks in IDX_ROLES.items() if any(m in lowered for m in marks)]
    return roles[0] if len(roles) == 1 else None


def read_dataset_files(files: Mapping[str, bytes], *, max_bytes: int) -> DatasetArrays:
    """Validated arrays of an uploaded dataset: either exactly one ``.npz`` (arrays ``x_train, y_train, x_test,
    y_test``, optional scalar ``num_classes`` and 1-D unicode ``class_names``; never pickles) or the four IDX files
    of an MNIST-style set, recognized by name (``train-images``, ``train-labels``, ``t10k-images`` or
    ``test-images``, ``t10k-labels`` or ``test-labels``; raw or ``.gz``), whose 3-D images get a channel axis
    ``(N, 1, H, W)``. The arrays may declare at most ``max_bytes`` in all, checked before any data is inflated.

    Raises:
        ValueError: what is wrong and how to fix it.
    """
    names = {str(k): v for k, v in files.items()}
    usage = ("upload one .npz file with the arrays x_train, y_train, x_test, y_test (" + SAVE_HINT + ") or the "
             "four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
             "t10k-labels-idx1-ubyte (each may be .gz)")
    if not names:
        raise ValueError(f"no files: {usage}")
    npz = [n for n in names if n.lower().endswith(".npz")]
    if npz:
        if len(names) != 1:
            raise ValueError(f"got {sorted(names)}: {usage}")
        return _from_npz(bytes(names[npz[0]]), f"the uploaded file {PurePosixPath(npz[0]).name!r}", max_bytes)
    roles: dict[str, str] = {}
    for name in names:
        role = _idx_role(PurePosixPath(name.replace("\\", "/")).name)
        if role is None or role in roles:
            raise ValueError(f"cannot tell what {name!r} is among {sorted(names)}: {usage}")
        roles[role] = name
    if len(roles) != 4:
        missing = [role for role in IDX_ROLES if role not in roles]
        raise ValueError(f"the IDX files for {missing} are missing (got {sorted(names)}): {usage}")
    arrays: dict[str, np.ndarray] = {}
    budget = int(max_bytes)
    for role in ("y_train", "y_test", "x_train", "x_test"):
        what = f"the uploaded file {PurePosixPath(roles[role]).name!r}"
        try:
            array = read_idx(bytes(names[roles[role]]), what, max_bytes=budget)
        except ValueError as exc:
            if "above the limit" in str(exc):
                raise ValueError(f"{exc} (the whole dataset may hold {max_bytes:,} bytes)") from exc
            raise
        budget -= array.nbytes
        arrays[role] = array[:, None] if role.startswith("x") and array.ndim == 3 else array
    valid, classes = validate_arrays(arrays, "the uploaded IDX files")
    return DatasetArrays(valid["x_train"], valid["y_train"], valid["x_test"], valid["y_test"], classes, None,
                         _content_sha256(valid, classes, None))


def uploaded_path(root: str | Path, sha256: str) -> Path:
    """``<root>/uploads/<sha256>.npz``; ``sha256`` must be 64 lowercase hex digits (no other path is made)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"an uploaded dataset's sha256 is 64 lowercase hex digits, got {sha256!r}")
    return Path(root) / "uploads" / f"{sha256}.npz"


# --------------------------------------------------------------------------------------------------
# the "upload" dataset


def _upload_file(sha256: Any, root: Any) -> Path:
    if sha256 is None:
        raise ValueError("dataset 'upload' needs the option sha256 (the content address of an uploaded dataset)")
    base = Path(root) if root else default_root()
    path = uploaded_path(base, sha256)
    if not path.is_file():
        raise ValueError(f"uploaded dataset {sha256[:12]} not found under {base / 'uploads'}")
    return path


def _check_upload_options(standardize: Any, train_size: Any, test_size: Any, seed: Any) -> None:
    if standardize not in STANDARDIZE_CHOICES:
        raise ValueError(f"dataset 'upload': option standardize={standardize!r} must be one of "
                         f"{list(STANDARDIZE_CHOICES)}")
    check_subset_options("upload", train_size, test_size, seed)


def read_uploaded(root: str | Path | None, sha256: str) -> DatasetArrays:
    """The stored upload ``sha256`` under ``root`` (default: the data root), validated again and checked against
    its address. Stored files are uncompressed (:meth:`DatasetArrays.to_npz_bytes`), so their arrays never
    declare more bytes than the file holds."""
    path = _upload_file(sha256, root)
    arrays = _from_npz(path, f"uploaded dataset {sha256[:12]}", max_bytes=path.stat().st_size)
    if arrays.sha256 != sha256:
        raise ValueError(f"uploaded dataset {sha256[:12]}: the file's content does not match its address "
                         f"(content {arrays.sha256[:12]}); upload the data again")
    return arrays


def load_upload(sha256: str | None = None, root: str | None = None, standardize: str = "feature",
                train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Dataset:
    """An uploaded dataset as float32 inputs standardized with ``standardize`` (docs/method.md §8; ``"none"``
    keeps the values as uploaded), on a stratified subset when ``train_size`` / ``test_size`` are given."""
    _check_upload_options(standardize, train_size, test_size, seed)
    data = read_uploaded(root, sha256)
    x_train, y_train, x_test, y_test = subsets(data.x_train, data.y_train, data.x_test, data.y_test,
                                               train_size, test_size, seed)
    x_train, x_test = standardize_option("upload", x_train.astype(np.float32), x_test.astype(np.float32),
                                         standardize)
    opts = {"sha256": sha256, "root": root, "standardize": standardize, "train_size": train_size,
            "test_size": test_size, "seed": seed}
    return make_dataset("upload", opts, x_train, y_train, x_test, y_test, data.num_classes)


def _stored_headers(sha256: Any, root: Any) -> tuple[Path, dict]:
    path = _upload_file(sha256, root)
    what = f"uploaded dataset {sha256[:12]}"
    headers = npz_headers(path, what)
    missing = [k for k in NPZ_KEYS if k not in headers]
    if missing:
        raise ValueError(f"{what} lacks the arrays {missing}; upload the data again")
    return path, headers


def _classes_of(path: Path, headers: dict, what: str, max_bytes: int, num_classes: int | None = None) -> int:
    """The class count of an archive, reading its small arrays only (never the inputs)."""
    if num_classes is not None:
        return int(num_classes)
    keys = {k for k in NPZ_OPTIONAL if k in headers}
    small = read_npz(path, what, max_bytes=2**20, keys=keys) if keys else {}
    declared, _ = _declared_classes(small, what)
    if declared is not None:
        return declared
    labels = read_npz(path, what, max_bytes=max_bytes, keys={"y_train", "y_test"})
    high = max(int(np.max(labels[k])) if labels[k].size else 0 for k in ("y_train", "y_test"))
    return max(high + 1, 2)


def info_upload(sha256: str | None = None, root: str | None = None, standardize: str = "feature",
                train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """``(input_shape, num_classes)`` from the archive's headers and small arrays."""
    _check_upload_options(standardize, train_size, test_size, seed)
    path, headers = _stored_headers(sha256, root)
    return headers["x_train"][1][1:], _classes_of(path, headers, f"uploaded dataset {sha256[:12]}",
                                                  path.stat().st_size)


def sizes_upload(sha256: str | None = None, root: str | None = None, standardize: str = "feature",
                 train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """``(train, test)`` samples of the (subset of the) upload, from the label arrays' headers."""
    _check_upload_options(standardize, train_size, test_size, seed)
    _, headers = _stored_headers(sha256, root)
    n_train, n_test = ((headers[k][1] or (0,))[0] for k in ("y_train", "y_test"))
    return subset_size(n_train, train_size), subset_size(n_test, test_size)


# --------------------------------------------------------------------------------------------------
# the "npz" dataset (a file under the data root)


def _npz_path(path: Any) -> Path:
    if not path:
        raise ValueError("dataset 'npz' needs the option path='/file/with/x_train_y_train_x_test_y_test.npz'")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ValueError(f"dataset 'npz': file {str(p)!r} does not exist")
    return p


def load_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none",
             train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Dataset:
    """Load ``x_train, y_train, x_test, y_test`` from an ``.npz`` file (validated; other arrays are not read).

    ``num_classes``: ``None`` takes the file's ``num_classes`` array, else infers ``max label + 1``.
    ``standardize`` defaults to ``"none"``: the file is used as given (standardize it yourself, or pass
    ``"feature"`` / ``"channel"``). ``train_size`` / ``test_size``: a stratified subset drawn with ``seed``.
    """
    check_int("npz", "num_classes", num_classes, 2, allow_none=True)
    check_subset_options("npz", train_size, test_size, seed)
    p = _npz_path(path)
    what = f"dataset 'npz': {str(p)!r}"
    headers = npz_headers(p, what)
    keys = set(NPZ_KEYS) | (set(NPZ_OPTIONAL) & set(headers) if num_classes is None else set())
    arrays = read_npz(p, what, max_bytes=LOCAL_MAX_BYTES, keys=keys)
    declared = num_classes if num_classes is not None else _declared_classes(arrays, what)[0]
    valid, n_classes = validate_arrays(arrays, what, declared)
    x_train, y_train, x_test, y_test = subsets(valid["x_train"], valid["y_train"], valid["x_test"], valid["y_test"],
                                               train_size, test_size, seed)
    x_train, x_test = standardize_option("npz", x_train, x_test, standardize)
    opts = {"path": str(path), "num_classes": num_classes, "standardize": standardize, "train_size": train_size,
            "test_size": test_size, "seed": seed}
    return make_dataset("npz", opts, x_train, y_train, x_test, y_test, n_classes)


def _npz_checked_headers(path: Any) -> tuple[Path, dict]:
    p = _npz_path(path)
    headers = npz_headers(p, f"dataset 'npz': {str(p)!r}")
    missing = [k for k in NPZ_KEYS if k not in headers]
    if missing:
        raise ValueError(f"dataset 'npz': {str(p)!r} lacks the arrays {missing}; it must contain {list(NPZ_KEYS)}")
    return p, headers


def info_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none",
             train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """``(input_shape, num_classes)`` from the headers (and the label arrays when ``num_classes`` is unknown)."""
    check_int("npz", "num_classes", num_classes, 2, allow_none=True)
    check_subset_options("npz", train_size, test_size, seed)
    p, headers = _npz_checked_headers(path)
    return headers["x_train"][1][1:], _classes_of(p, headers, f"dataset 'npz': {str(p)!r}", LOCAL_MAX_BYTES,
                                                  num_classes)


def sizes_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none",
              train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """``(train, test)`` samples of the (subset of the) file, from the label arrays' headers."""
    _, headers = _npz_checked_headers(path)
    if not headers["y_train"][1] or not headers["y_test"][1]:
        raise ValueError("dataset 'npz': the file's label arrays y_train and y_test must be 1-D")
    return subset_size(headers["y_train"][1][0], train_size), subset_size(headers["y_test"][1][0], test_size)
