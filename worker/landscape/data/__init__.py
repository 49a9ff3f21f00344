"""Dataset registry: the one place where Toroid's datasets are defined (docs/data.md).

Each dataset is built from a registry name and JSON-able options. All inputs are
standardized as in the paper (docs/method.md §8: "inputs standardized"), with statistics
computed on the training split only, so the test split never leaks into the scaling.

Datasets (``DATASETS``):

* ``digits``   scikit-learn's 8x8 digits, fixed stratified 80/20 split (seed 0), per-pixel
  standardization; ``input_shape`` ``(1, 8, 8)``, 10 classes.
* ``hmm``      Hidden Manifold Model (docs/method.md §9, shallow check): latent
  ``xi ~ N(0, I_D)``, features ``F`` (N x D, i.i.d. N(0, 1)), inputs ``sign(F xi / sqrt(D))``,
  labels from a teacher perceptron ``sign(w* . xi)``; 2 classes, ``input_shape`` ``(N,)``. Sizes capped
  (``HMM_CAPS``, ``HMM_MAX_ELEMENTS``, ``HMM_MAX_WORK``): generating it stays under ~500 MB and a few seconds.
* ``npz``      a user file with arrays ``x_train, y_train, x_test, y_test`` (validated).
* ``upload``   an uploaded dataset, stored content-addressed under ``<root>/uploads/<sha256>.npz``.
* ``mnist``, ``fashion_mnist``, ``cifar10``  from local files (IDX, CIFAR batches; ``vision``), downloaded from
  fixed upstream addresses only when downloads are allowed (``downloads``).

``mnist``, ``fashion_mnist``, ``cifar10``, ``npz`` and ``upload`` take ``train_size``, ``test_size`` and ``seed``:
a stratified subset (every class in proportion, within one sample) drawn with ``numpy.random.default_rng(seed)``
(the test subset with ``seed + 1``).

``load_dataset`` caches datasets in-process, least recently used out, at most ``TOROID_DATASET_CACHE_MB`` MiB.

Modules: ``arrays`` (the Dataset, standardization, subsets), ``builtin`` (digits, hmm), ``files`` (IDX, CIFAR and
``.npz`` readers), ``upload`` (your own data), ``vision`` (the image sets), ``downloads``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from functools import partial
from typing import Any

from toroid.worker.landscape.data.arrays import (
    STANDARDIZE_CHOICES,
    Dataset,
    DatasetSpec,
    default_root,
    standardize,
    stratified_counts,
    stratified_indices,
    stratified_subset,
)
from toroid.worker.landscape.data.builtin import (
    HMM_CAPS,
    HMM_MAX_ELEMENTS,
    HMM_MAX_WORK,
    check_hmm,
    info_hmm,
    load_digits,
    load_hmm,
)
from toroid.worker.landscape.data.downloads import (
    DOWNLOADS,
    download,
    download_progress,
    downloads_allowed,
    set_allow_downloads,
)
from toroid.worker.landscape.data.files import read_cifar_binary, read_cifar_python, read_idx
from toroid.worker.landscape.data.upload import (
    NPZ_KEYS,
    DatasetArrays,
    info_npz,
    info_upload,
    load_npz,
    load_upload,
    read_dataset_files,
    read_uploaded,
    sizes_npz,
    sizes_upload,
    uploaded_path,
)
from toroid.worker.landscape.data.vision import (
    SYSTEM_FOLDERS,
    VISION_OPTIONS,
    VISION_SHAPES,
    VISION_SIZES,
    info_vision,
    load_vision,
    locate,
    search_folders,
    sizes_vision,
)

__all__ = [
    "DATASETS",
    "DOWNLOADS",
    "HMM_CAPS",
    "HMM_MAX_ELEMENTS",
    "HMM_MAX_WORK",
    "NPZ_KEYS",
    "STANDARDIZE_CHOICES",
    "SYSTEM_FOLDERS",
    "VISION_SHAPES",
    "VISION_SIZES",
    "Dataset",
    "DatasetArrays",
    "DatasetSpec",
    "cache_limit_bytes",
    "cached_bytes",
    "clear_cache",
    "dataset_info",
    "dataset_nbytes",
    "dataset_sizes",
    "default_root",
    "download",
    "download_progress",
    "downloads_allowed",
    "load_dataset",
    "locate",
    "read_cifar_binary",
    "read_cifar_python",
    "read_dataset_files",
    "read_idx",
    "read_uploaded",
    "search_folders",
    "set_allow_downloads",
    "set_cache_limit_mb",
    "standardize",
    "stratified_counts",
    "stratified_indices",
    "stratified_subset",
    "uploaded_path",
]

#: The data root when no ``root`` option is given (the name the single module had).
_default_root = default_root
_check_hmm = check_hmm

_DIGITS_OPTIONS = {"standardize": "feature"}
_UPLOAD_OPTIONS = {"sha256": None, "root": None, "standardize": "feature", "train_size": None, "test_size": None,
                   "seed": 0}
_NPZ_OPTIONS = {"path": None, "num_classes": None, "standardize": "none", "train_size": None, "test_size": None,
                "seed": 0}


def _vision_spec(name: str, title: str) -> DatasetSpec:
    return DatasetSpec(
        f"{title}; read from local files (root, or a system folder), downloaded from its upstream address only "
        "when downloads are allowed; pixels / 255, per-channel standardization; train_size / test_size give a "
        "stratified subset (seed).",
        dict(VISION_OPTIONS),
        partial(load_vision, name),
        partial(info_vision, name),
        partial(sizes_vision, name),
    )


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "scikit-learn 8x8 handwritten digits (1797 images, 10 classes); fixed stratified 80/20 split "
        "(seed 0), per-pixel standardization with training statistics.",
        _DIGITS_OPTIONS,
        load_digits,
        lambda standardize="feature": ((1, 8, 8), 10),
        lambda standardize="feature": (1437, 360),
    ),
    "hmm": DatasetSpec(
        "Hidden Manifold Model: latent xi ~ N(0, I_D), inputs sign(F xi / sqrt(D)) with Gaussian "
        "features F (N x D), labels of a teacher perceptron sign(w* . xi); 2 classes. Caps: D, N <= 10,000; "
        "P_train, P_test <= 100,000; (P_train + P_test) x max(N, D) and N x D <= 2e7; "
        "(P_train + P_test) x N x D <= 2e10.",
        {"D": 501, "N": 1001, "P_train": 1503, "P_test": 2000, "seed": 0},
        load_hmm,
        info_hmm,
        check_hmm,
    ),
    "npz": DatasetSpec(
        "Your own data: an .npz file with arrays x_train, y_train, x_test, y_test (integer labels "
        "in [0, num_classes)); train_size / test_size give a stratified subset (seed).",
        _NPZ_OPTIONS,
        load_npz,
        info_npz,
        sizes_npz,
    ),
    "upload": DatasetSpec(
        "An uploaded dataset (an .npz or the four IDX files of an MNIST-style set), stored by its content "
        "address sha256; per-feature standardization by default; train_size / test_size give a stratified "
        "subset (seed).",
        _UPLOAD_OPTIONS,
        load_upload,
        info_upload,
        sizes_upload,
    ),
    "mnist": _vision_spec("mnist", "MNIST 28x28 handwritten digits (60,000 / 10,000)"),
    "fashion_mnist": _vision_spec("fashion_mnist", "Fashion-MNIST 28x28 clothing images (60,000 / 10,000)"),
    "cifar10": _vision_spec("cifar10", "CIFAR-10 32x32 colour images (50,000 / 10,000)"),
}


# --------------------------------------------------------------------------------------------------
# public entry points

DEFAULT_CACHE_MB = 1024
_CACHE: OrderedDict[tuple[str, str], Dataset] = OrderedDict()
_LOCK = threading.Lock()
_LIMIT_MB: list[float] = []


def cache_limit_bytes() -> int:
    """The cache's bound in bytes (0 disables the cache): ``set_cache_limit_mb``'s value, else
    ``TOROID_DATASET_CACHE_MB`` (the server's setting, README), else ``DEFAULT_CACHE_MB`` (1024 MiB)."""
    raw = _LIMIT_MB[0] if _LIMIT_MB else os.environ.get("TOROID_DATASET_CACHE_MB", "").strip() or DEFAULT_CACHE_MB
    return max(0, int(float(raw) * 2**20))


def set_cache_limit_mb(mb: float | None) -> None:
    """Bound the cache at ``mb`` MiB in this process (``None``: ``TOROID_DATASET_CACHE_MB`` again)."""
    with _LOCK:
        _LIMIT_MB[:] = [] if mb is None else [float(mb)]
        _fit(0)


def dataset_nbytes(dataset: Dataset) -> int:
    """The bytes a loaded dataset holds (its four tensors)."""
    return sum(t.numel() * t.element_size() for t in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test))


def cached_bytes() -> int:
    """The bytes the cache holds now."""
    return sum(dataset_nbytes(d) for d in list(_CACHE.values()))


def _fit(room: int) -> None:
    """Drop the least recently used datasets until ``room`` more bytes fit (the caller holds ``_LOCK``)."""
    while _CACHE and cached_bytes() + room > cache_limit_bytes():
        _CACHE.popitem(last=False)


def _resolve(name: str, options: dict[str, Any]) -> tuple[DatasetSpec, dict[str, Any]]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {unknown}; valid options: {sorted(spec.options)}")
    full = {**spec.options, **options}
    return spec, full


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load dataset ``name`` with ``options`` (missing ones take the registry defaults).

    Cached in-process by ``(name, options)``: a second call returns the same object while it stays in the cache
    (least recently used first out, at most ``TOROID_DATASET_CACHE_MB`` MiB in all; a dataset larger than that is
    returned but not kept). A download while loading reports to :func:`download_progress`'s callback.

    Raises:
        ValueError: unknown name or option, invalid option values (above their caps: ``HMM_CAPS``), invalid
            ``npz`` files or uploads, image sets missing locally (naming the folders searched) or failing to
            download.
    """
    spec, full = _resolve(name, options)
    key = (name, json.dumps(full, sort_keys=True, default=str))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    dataset = spec.loader(**full)
    size = dataset_nbytes(dataset)
    with _LOCK:
        if key not in _CACHE and size <= cache_limit_bytes():
            _fit(size)
            _CACHE[key] = dataset
        return _CACHE.get(key, dataset)  # another thread's copy if it was quicker


def dataset_info(name: str, **options: Any) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of a dataset, without loading the data when possible (and checking the size
    options against their caps)."""
    spec, full = _resolve(name, options)
    if spec.info is not None:
        shape, classes = spec.info(**full)
        return tuple(int(s) for s in shape), int(classes)
    ds = load_dataset(name, **options)
    return ds.input_shape, ds.num_classes


def dataset_sizes(name: str, **options: Any) -> tuple[int, int]:
    """``(train samples, test samples)`` of a dataset (of its subset when ``train_size`` / ``test_size`` are
    given), without loading the data when possible."""
    spec, full = _resolve(name, options)
    if spec.sizes is not None:
        n_train, n_test = spec.sizes(**full)
        return int(n_train), int(n_test)
    ds = load_dataset(name, **options)
    return len(ds.y_train), len(ds.y_test)


def clear_cache() -> None:
    """Forget every dataset loaded by :func:`load_dataset` in this process."""
    with _LOCK:
        _CACHE.clear()
