"""Dataset registry: the one place where Toroid's datasets are defined.

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
* ``mnist``, ``fashion_mnist``, ``cifar10``  through torchvision when it is installed, from a
  local ``root``; nothing is downloaded unless ``download=True`` is passed explicitly.

``load_dataset`` caches datasets in-process, least recently used out, at most ``TOROID_DATASET_CACHE_MB`` MiB.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "clear_cache",
    "dataset_info",
    "dataset_sizes",
    "load_dataset",
    "set_cache_limit_mb",
    "standardize",
]

STANDARDIZE_CHOICES = ("feature", "channel", "none")


@dataclass
class Dataset:
    """A loaded dataset: CPU tensors, ``float32`` inputs and ``int64`` labels in ``[0, num_classes)``.

    The tensors are shared by the in-process cache of :func:`load_dataset`: treat them as read-only.
    """

    name: str
    options: dict[str, Any]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, options={self.options!r}, train={len(self.y_train)}, "
            f"test={len(self.y_test)}, input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: a description, the options with their defaults, and the loader."""

    description: str
    options: dict[str, Any]
    loader: Callable[..., Dataset] = field(repr=False)
    info: Callable[..., tuple[tuple[int, ...], int]] | None = field(default=None, repr=False)
    sizes: Callable[..., tuple[int, int]] | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------------
# helpers


def standardize(x_train: np.ndarray, x_test: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Standardize inputs with training-set statistics (docs/method.md §8).

    ``mode``: ``"feature"`` (every input coordinate to mean 0 / std 1; constant coordinates are
    only centred), ``"channel"`` (one mean / std per channel, dim 1, for images) or ``"none"``.
    """
    if mode not in STANDARDIZE_CHOICES:
        raise ValueError(f"standardize={mode!r} is not one of {list(STANDARDIZE_CHOICES)}")
    x_train = x_train.astype(np.float64)
    x_test = x_test.astype(np.float64)
    if mode == "none":
        return x_train.astype(np.float32), x_test.astype(np.float32)
    if mode == "feature":
        axes: tuple[int, ...] = (0,)
    else:
        if x_train.ndim < 3:
            raise ValueError(
                "standardize='channel' needs inputs shaped (samples, channels, ...); "
                f"got shape {x_train.shape}. Use standardize='feature' for flat inputs."
            )
        axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std = np.where(std > 1e-12, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded random subset of ``size`` samples (``None``: everything)."""
    if size is None or size >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:size])
    return x[idx], y[idx]


def _make(
    name: str,
    options: dict[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
) -> Dataset:
    return Dataset(
        name=name,
        options=dict(options),
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64)),
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
        num_classes=int(num_classes),
    )


def _check_int(name: str, key: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"dataset {name!r}: option {key}={value!r} must be an integer >= {minimum}")


# --------------------------------------------------------------------------------------------------
# digits


def _load_digits(standardize: str = "feature") -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_test = _standardize_opt("digits", x_train, x_test, standardize)
    return _make("digits", {"standardize": standardize}, x_train, y_train, x_test, y_test, 10)


def _standardize_opt(name: str, x_train: np.ndarray, x_test: np.ndarray, mode: Any) -> tuple:
    if mode not in STANDARDIZE_CHOICES:
        raise ValueError(f"dataset {name!r}: option standardize={mode!r} must be one of {list(STANDARDIZE_CHOICES)}")
    return standardize(x_train, x_test, mode)


# --------------------------------------------------------------------------------------------------
# Hidden Manifold Model


#: Caps of the Hidden Manifold Model (inclusive): each size option; the largest array of the generator in elements,
#: ``(P_train + P_test) x max(N, D)`` and ``N x D`` (float64: 160 MB, three such arrays per split); its work,
#: ``(P_train + P_test) x N x D`` multiply-adds of projecting the latent vectors (a few seconds).
HMM_CAPS = {"D": 10_000, "N": 10_000, "P_train": 100_000, "P_test": 100_000}
HMM_MAX_ELEMENTS = 20_000_000
HMM_MAX_WORK = 20_000_000_000


def _check_hmm(D: Any, N: Any, P_train: Any, P_test: Any, seed: Any) -> tuple[int, int]:
    """Refuse HMM options outside the caps, naming the cap (the API answers 422); returns (P_train, P_test)."""
    for key, value in (("D", D), ("N", N), ("P_train", P_train), ("P_test", P_test)):
        _check_int("hmm", key, value, 1)
        if value > HMM_CAPS[key]:
            raise ValueError(f"dataset 'hmm': option {key}={value} is above its cap of {HMM_CAPS[key]:,}")
    _check_int("hmm", "seed", seed, 0)
    samples, elements = P_train + P_test, max((P_train + P_test) * max(N, D), N * D)
    for what, value, cap in (("(P_train + P_test) x max(N, D) and N x D", elements, HMM_MAX_ELEMENTS),
                             ("(P_train + P_test) x N x D", samples * N * D, HMM_MAX_WORK)):
        if value > cap:
            raise ValueError(f"dataset 'hmm': {what} = {value:,} is above the cap of {cap:,} (the generator's "
                             "arrays and work): use fewer samples or smaller N, D")
    return int(P_train), int(P_test)


def _load_hmm(D: int = 501, N: int = 1001, P_train: int = 1503, P_test: int = 2000, seed: int = 0) -> Dataset:
    """Hidden Manifold Model (Goldt et al. 2020), as used in docs/method.md §9.

    ``F`` (N x D), the teacher ``w*`` (D) and the latent vectors come from one
    ``numpy.random.default_rng(seed)``, drawn in that order, so a seed fixes the dataset.
    Inputs are +-1 and not standardized; labels are ``(sign(w* . xi) + 1) / 2`` in {0, 1}. Caps: ``_check_hmm``.
    """
    _check_hmm(D, N, P_train, P_test, seed)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N, D))
    teacher = rng.standard_normal(D)

    def sample(p: int) -> tuple[np.ndarray, np.ndarray]:
        xi = rng.standard_normal((p, D))
        x = np.where(xi @ features.T / np.sqrt(D) >= 0, 1.0, -1.0)
        y = (xi @ teacher >= 0).astype(np.int64)
        return x, y

    x_train, y_train = sample(P_train)
    x_test, y_test = sample(P_test)
    opts = {"D": D, "N": N, "P_train": P_train, "P_test": P_test, "seed": seed}
    return _make("hmm", opts, x_train, y_train, x_test, y_test, 2)


def _info_hmm(D: int = 501, N: int = 1001, P_train: int = 1503, P_test: int = 2000, seed: int = 0):
    _check_hmm(D, N, P_train, P_test, seed)
    return (int(N),), 2


# --------------------------------------------------------------------------------------------------
# npz

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_path(path: Any) -> Path:
    if not path:
        raise ValueError("dataset 'npz' needs the option path='/file/with/x_train_y_train_x_test_y_test.npz'")
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise ValueError(f"dataset 'npz': file {str(p)!r} does not exist")
    return p


def _npz_shapes(p: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes of an ``.npz`` file read from the headers, without loading the data."""
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, _ = np.lib.format.read_array_header_2_0(fh)
                shapes[key] = tuple(int(s) for s in shape)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ValueError(f"dataset 'npz': {str(p)!r} is not a readable .npz file ({exc})") from exc
    return shapes


def _validate_npz(arrays: dict[str, np.ndarray], path: Path, num_classes: int | None) -> int:
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"dataset 'npz': {str(path)!r} lacks the arrays {missing}; it must contain exactly "
            f"{list(NPZ_KEYS)} (found {sorted(arrays)}). Save it with "
            "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        )
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2:
            raise ValueError(f"dataset 'npz': x_{split} must be shaped (samples, ...), got shape {x.shape}")
        if y.ndim != 1:
            raise ValueError(f"dataset 'npz': y_{split} must be 1-D (one label per sample), got shape {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"dataset 'npz': x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if len(y) == 0:
            raise ValueError(f"dataset 'npz': the {split} split is empty")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"dataset 'npz': x_{split} must be real numbers, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"dataset 'npz': x_{split} contains NaN or infinite values")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                pass
            else:
                raise ValueError(f"dataset 'npz': y_{split} must hold integer class labels, got dtype {y.dtype}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            "dataset 'npz': x_train and x_test have different sample shapes "
            f"{arrays['x_train'].shape[1:]} vs {arrays['x_test'].shape[1:]}"
        )
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"dataset 'npz': labels must be in [0, num_classes), found label {low}")
    if num_classes is None:
        num_classes = max(high + 1, 2)
    elif high >= num_classes:
        raise ValueError(
            f"dataset 'npz': labels must be in [0, {num_classes}) (num_classes={num_classes}), found label {high}"
        )
    return int(num_classes)


def _load_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none") -> Dataset:
    """Load ``x_train, y_train, x_test, y_test`` from an ``.npz`` file (validated).

    ``num_classes``: ``None`` infers ``max label + 1``. ``standardize`` defaults to ``"none"``:
    the file is used as given (standardize it yourself, or pass ``"feature"`` / ``"channel"``).
    """
    _check_int("npz", "num_classes", num_classes, 2, allow_none=True)
    p = _npz_path(path)
    _npz_shapes(p)  # a clear error for files that are not .npz archives
    with np.load(p, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    n_classes = _validate_npz(arrays, p, num_classes)
    x_train, x_test = _standardize_opt("npz", arrays["x_train"], arrays["x_test"], standardize)
    opts = {"path": str(path), "num_classes": num_classes, "standardize": standardize}
    y_train = arrays["y_train"].astype(np.int64)
    y_test = arrays["y_test"].astype(np.int64)
    return _make("npz", opts, x_train, y_train, x_test, y_test, n_classes)


def _info_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none"):
    p = _npz_path(path)
    shapes = _npz_shapes(p)
    missing = [k for k in NPZ_KEYS if k not in shapes]
    if missing:
        raise ValueError(f"dataset 'npz': {str(p)!r} lacks the arrays {missing}; it must contain {list(NPZ_KEYS)}")
    if num_classes is None:  # only the (small) label arrays are read
        with np.load(p, allow_pickle=False) as f:
            high = max(int(np.max(f["y_train"])), int(np.max(f["y_test"])))
        num_classes = max(high + 1, 2)
    return shapes["x_train"][1:], int(num_classes)


def _sizes_npz(path: str | None = None, num_classes: int | None = None, standardize: str = "none"):
    shapes = _npz_shapes(_npz_path(path))
    missing = [k for k in ("y_train", "y_test") if k not in shapes or not shapes[k]]
    if missing:
        raise ValueError(f"dataset 'npz': the file lacks the label arrays {missing}")
    return shapes["y_train"][0], shapes["y_test"][0]


# --------------------------------------------------------------------------------------------------
# torchvision sets

_VISION = {
    "mnist": ("MNIST", (1, 28, 28)),
    "fashion_mnist": ("FashionMNIST", (1, 28, 28)),
    "cifar10": ("CIFAR10", (3, 32, 32)),
}
#: Split sizes of the torchvision sets (train, test).
_VISION_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}


def _default_root() -> str:
    """Where torchvision sets live when no ``root`` is given: ``TOROID_DATA_ROOT`` (the server's setting, README;
    through the API every request carries its resolved ``root``), else ``~/.toroid/datasets``."""
    return os.environ.get("TOROID_DATA_ROOT", os.path.join(os.path.expanduser("~"), ".toroid", "datasets"))


def _vision_loader(name: str) -> Callable[..., Dataset]:
    cls_name, shape = _VISION[name]

    def load(
        root: str | None = None,
        download: bool = False,
        standardize: str = "channel",
        train_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
    ) -> Dataset:
        _check_int(name, "train_size", train_size, 1, allow_none=True)
        _check_int(name, "test_size", test_size, 1, allow_none=True)
        _check_int(name, "seed", seed, 0)
        try:
            import torchvision.datasets as tvd
        except ImportError as exc:
            raise ValueError(
                f"dataset {name!r} needs torchvision, which is not installed; install the 'vision' extra "
                "(pip install torchvision matching your torch) or export the data to .npz and use dataset 'npz'"
            ) from exc
        folder = root or _default_root()
        sets = []
        for train in (True, False):
            try:
                ds = getattr(tvd, cls_name)(folder, train=train, download=bool(download))
            except RuntimeError as exc:
                raise ValueError(
                    f"dataset {name!r} not found under root={folder!r} ({exc}); put the files there "
                    "or pass download=True explicitly"
                ) from exc
            data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
            if data.ndim == 3:
                data = data[:, None, :, :]
            else:  # CIFAR: (N, H, W, C) -> (N, C, H, W)
                data = data.transpose(0, 3, 1, 2)
            targets = np.asarray(ds.targets, dtype=np.int64)
            sets.append((data.astype(np.float32) / 255.0, targets))
        (x_train, y_train), (x_test, y_test) = sets
        x_train, y_train = _subset(x_train, y_train, train_size, seed)
        x_test, y_test = _subset(x_test, y_test, test_size, seed + 1)
        x_train, x_test = _standardize_opt(name, x_train, x_test, standardize)
        opts = {
            "root": root,
            "download": bool(download),
            "standardize": standardize,
            "train_size": train_size,
            "test_size": test_size,
            "seed": seed,
        }
        return _make(name, opts, x_train, y_train, x_test, y_test, 10)

    return load


def _vision_info(name: str) -> Callable[..., tuple[tuple[int, ...], int]]:
    def info(**_: Any) -> tuple[tuple[int, ...], int]:
        return _VISION[name][1], 10

    return info


def _vision_sizes(name: str) -> Callable[..., tuple[int, int]]:
    full = _VISION_SIZES[name]
    return lambda train_size=None, test_size=None, **_: (min(full[0], train_size or full[0]),
                                                           min(full[1], test_size or full[1]))


_VISION_OPTIONS = {
    "root": None,
    "download": False,
    "standardize": "channel",
    "train_size": None,
    "test_size": None,
    "seed": 0,
}

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "scikit-learn 8x8 handwritten digits (1797 images, 10 classes); fixed stratified 80/20 split "
        "(seed 0), per-pixel standardization with training statistics.",
        {"standardize": "feature"},
        _load_digits,
        lambda standardize="feature": ((1, 8, 8), 10),
        lambda standardize="feature": (1437, 360),
    ),
    "hmm": DatasetSpec(
        "Hidden Manifold Model: latent xi ~ N(0, I_D), inputs sign(F xi / sqrt(D)) with Gaussian "
        "features F (N x D), labels of a teacher perceptron sign(w* . xi); 2 classes. Caps: D, N <= 10,000; "
        "P_train, P_test <= 100,000; (P_train + P_test) x max(N, D) and N x D <= 2e7; "
        "(P_train + P_test) x N x D <= 2e10.",
        {"D": 501, "N": 1001, "P_train": 1503, "P_test": 2000, "seed": 0},
        _load_hmm,
        _info_hmm,
        _check_hmm,
    ),
    "npz": DatasetSpec(
        "Your own data: an .npz file with arrays x_train, y_train, x_test, y_test (integer labels "
        "in [0, num_classes)).",
        {"path": None, "num_classes": None, "standardize": "none"},
        _load_npz,
        _info_npz,
        _sizes_npz,
    ),
    "mnist": DatasetSpec(
        "MNIST 28x28 handwritten digits via torchvision (local root; download only if asked); "
        "per-channel standardization.",
        dict(_VISION_OPTIONS),
        _vision_loader("mnist"),
        _vision_info("mnist"),
        _vision_sizes("mnist"),
    ),
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST 28x28 clothing images via torchvision (local root; download only if asked); "
        "per-channel standardization.",
        dict(_VISION_OPTIONS),
        _vision_loader("fashion_mnist"),
        _vision_info("fashion_mnist"),
        _vision_sizes("fashion_mnist"),
    ),
    "cifar10": DatasetSpec(
        "CIFAR-10 32x32 colour images via torchvision (local root; download only if asked); "
        "per-channel standardization.",
        dict(_VISION_OPTIONS),
        _vision_loader("cifar10"),
        _vision_info("cifar10"),
        _vision_sizes("cifar10"),
    ),
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
    returned but not kept).

    Raises:
        ValueError: unknown name or option, invalid option values (above their caps: ``HMM_CAPS``), invalid
            ``npz`` files, torchvision sets that are missing locally.
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
    """``(train samples, test samples)`` of a dataset, without loading the data when possible."""
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
