"""Toroid's science core: the error landscape of neural networks in the symmetry-free
("toroidal") parameterization of Pittorino et al., "Deep Networks on Toroids", ICML 2022.

Pure functions over torch modules and tensors; imports torch, numpy, scipy, scikit-learn and
the standard library only. The public names below are re-exported lazily (PEP 562), so
``import toroid.worker.landscape`` is cheap and each submodule is imported on first use.

Modules, bottom up: ``nets`` (architectures), ``data`` (datasets), ``device``; ``graph`` (the unit
graph: which units move together), ``symmetry`` (the moves: normalize, align); ``distances``;
``alignment`` (align: the best of identity, greedy and refined matching); ``states`` (state dicts,
combinations, BatchNorm recalibration), ``combination`` (combinations of anchor networks,
first-layer factorization), ``evaluate`` (the evaluator); ``flatness`` (local energy), ``sharpness``
(Hessian sharpness of the normalized network); ``kinds`` (path kinds and the binary rule), ``paths``
(paths, barriers, planes), ``torus`` (torus slices), ``bend`` (one-bend paths); ``samplers``
(training); ``results`` (result records, JSON); ``io`` (checkpoints).
"""

from __future__ import annotations

import importlib
from typing import Any

CODE_VERSION = "0.1.0+core2"  # core2: canonical BatchNorm form, best-of alignment, sequential flatness

_EXPORTS: dict[str, str] = {
    # symmetry removal (docs/method.md §2-4)
    "normalize": "symmetry",
    "align": "symmetry",
    "align_report": "alignment",  # which candidate alignment won, and its distances (§3)
    # distances (docs/method.md §5)
    "geodesic_distance": "distances",
    "euclidean_distances": "distances",
    "hamming_distance": "distances",
    # paths and sections (§7)
    "interpolate": "paths",
    "path_profile": "paths",
    "section_2d": "paths",
    # torus slices (§7)
    "torus_slice": "torus",
    # path kinds and the binary rule (§§4, 7); plain Python, no torch
    "ALL_PATH_KINDS": "kinds",
    "path_kinds": "kinds",
    "check_path_kind": "kinds",
    "bend_kinds": "kinds",
    "check_bend_kind": "kinds",
    # flatness (§6)
    "local_energy": "flatness",
    "hessian_sharpness": "sharpness",
    # one-bend paths (§7)
    "one_bend": "bend",
    # results as JSON (no torch)
    "to_json": "results",
    "local_energy_at_largest_sigma": "results",
    # registries
    "build_model": "nets",
    "ARCHITECTURES": "nets",
    "is_binary_architecture": "nets",
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
