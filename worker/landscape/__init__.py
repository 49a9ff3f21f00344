"""Toroid's science core: the error landscape of neural networks in the symmetry-free
("toroidal") parameterization of Pittorino et al., "Deep Networks on Toroids", ICML 2022.

Pure functions over torch modules and tensors; imports torch, numpy, scipy, scikit-learn and
the standard library only. The public names below are re-exported lazily (PEP 562), so
``import toroid.worker.landscape`` is cheap and each submodule is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

CODE_VERSION = "0.1.0+core1"

_EXPORTS: dict[str, str] = {
    # symmetry removal (docs/method.md §2-4)
    "normalize": "symmetry",
    "align": "symmetry",
    # distances (sec. 5)
    "geodesic_distance": "distances",
    "euclidean_distances": "distances",
    "hamming_distance": "distances",
    # paths and sections (sec. 7)
    "interpolate": "paths",
    "path_profile": "paths",
    "section_2d": "paths",
    "torus_slice": "paths",
    # flatness (sec. 6)
    "local_energy": "flatness",
    # one-bend paths (sec. 7)
    "one_bend": "bend",
    # registries
    "build_model": "nets",
    "ARCHITECTURES": "nets",
    "load_dataset": "data",
    "DATASETS": "data",
    "SAMPLERS": "samplers",
    "train_minimum": "samplers",
}

__all__ = ["CODE_VERSION", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
