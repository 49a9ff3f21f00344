"""Shared pieces of the route modules: record lookup and the synchronous validation of names and options.

Every check here turns a bad request into an HTTP 4xx whose ``detail`` says what is wrong and how to fix it, before
anything is stored or queued. Names are checked against the core's registries (the one source of truth).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from toroid.store.models import Minimum
from toroid.store.settings import get_settings

VISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong API token (only when the server sets TOROID_API_TOKEN)."}
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body cannot be parsed (not UTF-8 JSON)."},
    422: {"description": "The request is invalid; `detail` says what is wrong."},
}


def unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def get_minimum(session: Session, minimum_id: str) -> Minimum:
    minimum = session.get(Minimum, minimum_id)
    if minimum is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no minimum with id {minimum_id!r}; GET /api/minima lists the existing ones"
        )
    return minimum


def get_minima(session: Session, ids: Sequence[str], *, what: str) -> list[Minimum]:
    """The minima of ``ids`` in order (404 naming an unknown id, 422 for repeated ids)."""
    repeated = sorted({i for i in ids if list(ids).count(i) > 1})
    if repeated:
        raise unprocessable(f"{what}: each minimum may appear once; repeated: {repeated}")
    return [get_minimum(session, i) for i in ids]


def require_same_family(minima: Sequence[Minimum], what: str) -> None:
    """Analyses of several minima need one architecture, config and dataset (the same parameter space)."""
    first = minima[0]
    for other in minima[1:]:
        for field in ("architecture", "config", "dataset", "dataset_options"):
            if getattr(other, field) != getattr(first, field):
                raise unprocessable(
                    f"{what} needs minima of the same architecture, config and dataset; {first.name!r} "
                    f"({first.id}) has {field} {getattr(first, field)!r} but {other.name!r} ({other.id}) has "
                    f"{getattr(other, field)!r}"
                )


def is_binary_architecture(name: str) -> bool:
    from toroid.worker.landscape.nets import ARCHITECTURES

    return bool(ARCHITECTURES[name].binary) if name in ARCHITECTURES else False


def dataset_available(name: str) -> bool:
    """Whether a dataset can be loaded on this server (torchvision sets need torchvision installed)."""
    if name in VISION_DATASETS:
        return importlib.util.find_spec("torchvision") is not None
    return True


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def resolve_dataset(name: Any, options: Any) -> tuple[dict[str, Any], tuple[int, ...], int]:
    """Validate a dataset name and its options; returns (options with defaults, input_shape, num_classes).

    Through the API, files are read only from ``<TOROID_HOME>/datasets``: the ``npz`` option ``path`` and the
    torchvision option ``root`` must point there, and ``download`` is refused (the server never downloads).
    """
    from toroid.worker.landscape.data import DATASETS, dataset_info

    if not isinstance(name, str) or name not in DATASETS:
        raise unprocessable(f"unknown dataset {name!r}; valid datasets: {sorted(DATASETS)}")
    if not isinstance(options, dict):
        raise unprocessable(f"dataset_options must be a JSON object, got {type(options).__name__}")
    unknown = sorted(set(options) - set(DATASETS[name].options))
    if unknown:
        raise unprocessable(
            f"dataset {name!r} has no option(s) {unknown}; valid options: {sorted(DATASETS[name].options)}"
        )
    full = {**DATASETS[name].options, **options}
    allowed_root = get_settings().home / "datasets"
    for key in ("path", "root"):
        value = full.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _inside(allowed_root / value, allowed_root):
            raise unprocessable(
                f"dataset option {key}={value!r}: through the API, data files must lie under {allowed_root} "
                f"(give a path relative to it, e.g. 'mydata.npz')"
            )
        full[key] = str((allowed_root / value).resolve())
    if full.get("download"):
        raise unprocessable("dataset option download=true is refused: the server never downloads data; put the "
                            f"files under {allowed_root} and pass root")
    if not dataset_available(name):
        raise unprocessable(f"dataset {name!r} is not available on this server: it needs torchvision "
                            "(pip install the 'vision' extra) or export it to .npz and use dataset 'npz'")
    try:
        input_shape, num_classes = dataset_info(name, **full)
    except Exception as exc:  # the registry raises ValueError with the reason; odd values can raise TypeError
        raise unprocessable(f"dataset {name!r} with options {options}: {exc}") from exc
    return full, tuple(input_shape), int(num_classes)


def resolve_architecture(
    name: Any, config: Any, input_shape: tuple[int, ...], num_classes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate an architecture and config for a dataset shape; returns (template state_dict, full config)."""
    from toroid.store.artifacts import template_state
    from toroid.worker.landscape.nets import ARCHITECTURES

    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise unprocessable(f"unknown architecture {name!r}; valid architectures: {sorted(ARCHITECTURES)}")
    if not isinstance(config, dict):
        raise unprocessable(f"config must be a JSON object, got {type(config).__name__}")
    try:
        return template_state(name, config, input_shape, num_classes)
    except Exception as exc:  # ValueError from the registry; bad value types raise TypeError and friends
        raise unprocessable(
            f"architecture {name!r} with config {config} cannot be built for inputs of shape {input_shape} and "
            f"{num_classes} classes: {exc}. Defaults: {ARCHITECTURES[name].defaults}"
        ) from exc
