"""The loaded dataset, its registry entry, standardization and stratified subsets (docs/data.md).

Everything here works on numpy arrays already in memory; readers of files live in ``files`` and ``upload``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    """A registry entry: a description, the options with their defaults, and the loader.

    ``info(**options)`` gives ``(input_shape, num_classes)`` and ``sizes(**options)`` ``(train, test)`` without
    loading the data when they can (``None``: the dataset is loaded to find out).
    """

    description: str
    options: dict[str, Any]
    loader: Callable[..., Dataset] = field(repr=False)
    info: Callable[..., tuple[tuple[int, ...], int]] | None = field(default=None, repr=False)
    sizes: Callable[..., tuple[int, int]] | None = field(default=None, repr=False)


def default_root() -> Path:
    """Where dataset files live when no ``root`` is given: ``TOROID_DATA_ROOT``, else ``$TOROID_HOME/datasets``
    when ``TOROID_HOME`` is set, else ``~/.toroid/datasets`` (through the API every request carries its resolved
    ``root``; docs/data.md)."""
    explicit = os.environ.get("TOROID_DATA_ROOT", "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    home = os.environ.get("TOROID_HOME", "").strip()
    if home:
        return Path(os.path.expanduser(home)) / "datasets"
    return Path(os.path.expanduser("~")) / ".toroid" / "datasets"


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


def standardize_option(name: str, x_train: np.ndarray, x_test: np.ndarray, mode: Any) -> tuple:
    """:func:`standardize` with the ``standardize`` option of dataset ``name`` (its name in the message)."""
    if mode not in STANDARDIZE_CHOICES:
        raise ValueError(f"dataset {name!r}: option standardize={mode!r} must be one of {list(STANDARDIZE_CHOICES)}")
    return standardize(x_train, x_test, mode)


def check_int(name: str, key: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    """Refuse an option that is not an integer ``>= minimum`` (``None`` passes when ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"dataset {name!r}: option {key}={value!r} must be an integer >= {minimum}")


def check_subset_options(name: str, train_size: Any, test_size: Any, seed: Any) -> None:
    """Check the ``train_size``, ``test_size`` and ``seed`` options of a subsettable dataset."""
    check_int(name, "train_size", train_size, 1, allow_none=True)
    check_int(name, "test_size", test_size, 1, allow_none=True)
    check_int(name, "seed", seed, 0)


def subset_size(full: int, size: int | None) -> int:
    """The number of samples a subset of ``size`` keeps out of ``full`` (``None`` or more than ``full``: all)."""
    return full if size is None else min(int(full), int(size))


def stratified_counts(labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, counts)`` of a stratified subset of ``size`` samples: each class gets its proportional share
    ``size * n_c / n`` rounded down, and the samples left over go to the largest remainders (ties: the smaller
    class label first), so every count is within 1 of its exact share and the counts sum to ``size``."""
    classes, counts = np.unique(labels, return_counts=True)
    n = int(counts.sum())
    exact = counts.astype(np.int64) * int(size)
    share, remainder = exact // n, exact % n
    left = int(size) - int(share.sum())
    order = np.argsort(-remainder, kind="stable")
    share[order[:left]] += 1
    return classes, share


def stratified_indices(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a stratified subset of ``size`` samples (``None``: everything, also when ``size`` is at
    least the number of samples); within each class the samples are drawn without replacement by
    ``numpy.random.default_rng(seed)``, classes in increasing label order."""
    labels = np.asarray(labels)
    if size is None or size >= len(labels):
        return None
    rng = np.random.default_rng(seed)
    classes, share = stratified_counts(labels, size)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, share, strict=True)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def stratified_subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` restricted to :func:`stratified_indices` (unchanged for ``size=None``)."""
    idx = stratified_indices(y, size, seed)
    return (x, y) if idx is None else (x[idx], y[idx])


def subsets(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    train_size: int | None, test_size: int | None, seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The stratified training subset drawn with ``seed``, the test subset with ``seed + 1`` (docs/data.md)."""
    x_train, y_train = stratified_subset(x_train, y_train, train_size, seed)
    x_test, y_test = stratified_subset(x_test, y_test, test_size, seed + 1)
    return x_train, y_train, x_test, y_test


def make_dataset(
    name: str,
    options: dict[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
) -> Dataset:
    """A :class:`Dataset` of float32 inputs and int64 labels (the arrays are copied only when they must be)."""
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

