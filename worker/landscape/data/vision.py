"""The paper's image datasets read from local files, no torchvision needed (docs/data.md): ``mnist`` and
``fashion_mnist`` from their four IDX files (raw or ``.gz``), ``cifar10`` from its binary batches
(``cifar-10-batches-bin``) or its python batches (``cifar-10-batches-py``, unpickled by a reader that accepts numpy
arrays and nothing else).

Where the files are looked for, in order, under ``root`` (default: the data root): ``<root>/<name>/``, torchvision's
``<root>/MNIST/raw/`` and ``<root>/FashionMNIST/raw/``, ``<root>/cifar-10-batches-{bin,py}/`` and
``<root>/cifar10/cifar-10-batches-{bin,py}/``, ``<root>`` itself when it was given and is not the data root (the
IDX files of MNIST and Fashion-MNIST share their names); then the system folders of ``SYSTEM_FOLDERS``
(Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``).
Missing files are downloaded into ``<root>/<name>/`` only when downloads are allowed (``downloads`` module).

Pixels are divided by 255, then standardized (``standardize``, default ``"channel"``; docs/method.md §8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toroid.worker.landscape.data.arrays import (
    STANDARDIZE_CHOICES,
    Dataset,
    check_subset_options,
    default_root,
    make_dataset,
    standardize_option,
    subset_size,
    subsets,
)
from toroid.worker.landscape.data.downloads import DOWNLOADS, downloads_allowed
from toroid.worker.landscape.data.downloads import download as fetch
from toroid.worker.landscape.data.files import (
    CIFAR_RECORD,
    idx_shape,
    read_cifar_binary,
    read_cifar_python,
    read_idx,
)

#: Folders searched after ``root``, per dataset (tests change the entries with ``monkeypatch.setitem``).
SYSTEM_FOLDERS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
#: ``input_shape`` of each set, and its split sizes (train, test) as published.
VISION_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
VISION_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}
VISION_OPTIONS = {"root": None, "download": None, "standardize": "channel", "train_size": None, "test_size": None,
                  "seed": 0}
#: The four IDX files of an MNIST-style set, each raw or with ``.gz``.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
#: The most bytes one IDX file may declare (MNIST's training images: 47 MB).
IDX_MAX_BYTES = 256 * 2**20


def _root(root: Any) -> Path:
    return Path(str(root)).expanduser() if root else default_root()


def search_folders(name: str, root: Any = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order (see the module docstring)."""
    base = _root(root)
    system = [Path(p) for p in SYSTEM_FOLDERS.get(name, ())]
    if name == "cifar10":
        folders = []
        for parent in (base, base / "cifar10", *system):
            folders += [parent / "cifar-10-batches-bin", parent / "cifar-10-batches-py"]
        return folders + [base / "cifar10", base, *system]
    # MNIST and Fashion-MNIST files have the same names: loose files are taken from a folder the caller named for
    # this set, never from the data root itself, where they could be the other set's (docs/data.md)
    own = [base] if root and base.resolve() != default_root().resolve() else []
    return [base / name, base / _TORCHVISION_FOLDER[name] / "raw", *own, *system]


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {}
    for role, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            return None
    return found


def _cifar_files(folder: Path) -> tuple[str, list[Path], Path] | None:
    for kind, suffix in (("bin", ".bin"), ("py", "")):
        train = [folder / f"{stem}{suffix}" for stem in CIFAR_TRAIN]
        test = folder / f"{CIFAR_TEST}{suffix}"
        if all(p.is_file() for p in train) and test.is_file():
            return kind, train, test
    return None


def locate(name: str, root: Any = None) -> tuple[Path, Any] | None:
    """``(folder, files)`` of the first searched folder holding all of ``name``'s files, else ``None``."""
    for folder in search_folders(name, root):
        files = _cifar_files(folder) if name == "cifar10" else _idx_files(folder)
        if files is not None:
            return folder, files
    return None


def _missing(name: str, root: Any, download: Any) -> ValueError:
    target = _root(root) / name
    if name == "cifar10":
        put = ("cifar-10-batches-bin/ (data_batch_1.bin ... data_batch_5.bin, test_batch.bin, from "
               "cifar-10-binary.tar.gz)")
    else:
        put = ", ".join(f"{stem}.gz" for stem in IDX_FILES.values())
    searched = ", ".join(str(f) for f in search_folders(name, root))
    how = ("pass download=True, or let the server download it with the setting TOROID_ALLOW_DOWNLOADS=1"
           if download is not False else "downloads were turned off with download=False")
    sources = DOWNLOADS.get(name) or []
    source = f"; source: {sources[0][0].rsplit('/', 1)[0]}/" if sources else ""
    return ValueError(f"dataset {name!r} was not found (searched {searched}): put {put} in {target}/ "
                      f"({how}{source})")


def _find_or_download(name: str, root: Any, download: Any) -> tuple[Path, Any]:
    found = locate(name, root)
    if found is None and downloads_allowed(download):
        fetch(name, _root(root) / name)
        found = locate(name, root)
    if found is None:
        raise _missing(name, root, download)
    return found


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc})") from exc


def _read_idx_set(name: str, files: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {role: read_idx(_read_file(path), str(path), max_bytes=IDX_MAX_BYTES) for role, path in files.items()}
    shape = VISION_SHAPES[name][1:]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != shape:
            raise ValueError(f"dataset {name!r}: {files[f'x_{split}']} holds images of shape {x.shape[1:]}, "
                             f"expected {shape}")
        if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
            raise ValueError(f"dataset {name!r}: {files[f'y_{split}']} holds {y.shape} labels for {len(x)} images")
        if int(y.max()) >= 10:
            raise ValueError(f"dataset {name!r}: {files[f'y_{split}']} holds label {int(y.max())} (0 to 9 expected)")
        arrays[f"x_{split}"] = x[:, None]
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


def _read_cifar_set(files: tuple[str, list[Path], Path]) -> dict[str, np.ndarray]:
    kind, train, test = files
    reader = read_cifar_binary if kind == "bin" else read_cifar_python
    parts = [reader(_read_file(p), str(p)) for p in train]
    x_test, y_test = reader(_read_file(test), str(test))
    return {"x_train": np.concatenate([x for x, _ in parts]), "y_train": np.concatenate([y for _, y in parts]),
            "x_test": x_test, "y_test": y_test}


def _check_options(name: str, download: Any, standardize: Any, train_size: Any, test_size: Any, seed: Any) -> None:
    if download is not None and not isinstance(download, bool):
        raise ValueError(f"dataset {name!r}: option download={download!r} must be true, false or null")
    if standardize not in STANDARDIZE_CHOICES:
        raise ValueError(f"dataset {name!r}: option standardize={standardize!r} must be one of "
                         f"{list(STANDARDIZE_CHOICES)}")
    check_subset_options(name, train_size, test_size, seed)


def load_vision(name: str, root: str | None = None, download: bool | None = None, standardize: str = "channel",
                train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Dataset:
    """Dataset ``name`` (``mnist``, ``fashion_mnist``, ``cifar10``) from local files, downloaded first when they
    are missing and downloads are allowed; a stratified subset when ``train_size`` / ``test_size`` are given
    (training subset drawn with ``seed``, test subset with ``seed + 1``)."""
    _check_options(name, download, standardize, train_size, test_size, seed)
    _, files = _find_or_download(name, root, download)
    arrays = _read_cifar_set(files) if name == "cifar10" else _read_idx_set(name, files)
    x_train, y_train, x_test, y_test = subsets(arrays["x_train"], arrays["y_train"], arrays["x_test"],
                                               arrays["y_test"], train_size, test_size, seed)
    x_train = x_train.astype(np.float32) / np.float32(255.0)
    x_test = x_test.astype(np.float32) / np.float32(255.0)
    x_train, x_test = standardize_option(name, x_train, x_test, standardize)
    opts = {"root": root, "download": download, "standardize": standardize, "train_size": train_size,
            "test_size": test_size, "seed": seed}
    return make_dataset(name, opts, x_train, y_train, x_test, y_test, 10)


def info_vision(name: str, root: str | None = None, download: bool | None = None, standardize: str = "channel",
                train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """``(input_shape, 10)``, checking the options (the files are not needed)."""
    _check_options(name, download, standardize, train_size, test_size, seed)
    return VISION_SHAPES[name], 10


def _file_sizes(name: str, root: Any) -> tuple[int, int] | None:
    """The split sizes of the local files from their headers (IDX) or lengths (CIFAR binary), else ``None``."""
    found = locate(name, root)
    if found is None:
        return None
    _, files = found
    try:
        if name != "cifar10":
            return idx_shape(files["y_train"])[0], idx_shape(files["y_test"])[0]
        kind, train, test = files
        if kind == "bin":
            return sum(p.stat().st_size // CIFAR_RECORD for p in train), test.stat().st_size // CIFAR_RECORD
    except (ValueError, OSError, IndexError):
        return None
    return None


def sizes_vision(name: str, root: str | None = None, download: bool | None = None, standardize: str = "channel",
                 train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> tuple[int, int]:
    """``(train, test)`` samples without loading: the local files' sizes when they are found, else the published
    ones, capped by ``train_size`` / ``test_size``."""
    _check_options(name, download, standardize, train_size, test_size, seed)
    full = _file_sizes(name, root) or VISION_SIZES[name]
    return subset_size(full[0], train_size), subset_size(full[1], test_size)
