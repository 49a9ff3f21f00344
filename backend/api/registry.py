"""GET /api/architectures, /api/samplers: what exists, asked from the core's registries (datasets, built-in and
uploaded: ``toroid.backend.api.datasets``)."""

from __future__ import annotations

import copy

from fastapi import APIRouter, Depends, Query

from toroid.backend.api.deps import AUTH_RESPONSES
from toroid.backend.auth import require_read
from toroid.backend.schemas import ArchitectureInfo, ArchitectureLayout, SamplerInfo
from toroid.backend.services import minima as minima_service

router = APIRouter(tags=["registries"], dependencies=[Depends(require_read)], responses=AUTH_RESPONSES)


@router.get("/architectures", response_model=list[ArchitectureInfo], summary="Network architectures")
def architectures() -> list[dict]:
    from toroid.worker.landscape.kinds import bend_kinds, path_kinds
    from toroid.worker.landscape.registry import available_architectures

    return [
        {"name": name, "description": spec.description, "defaults": copy.deepcopy(spec.defaults),
         "binary": spec.binary, "path_kinds": list(path_kinds(spec.binary)),
         "bend_kinds": list(bend_kinds(spec.binary)), "source": spec.source, "open_config": spec.open_config}
        for name, spec in available_architectures().items()
    ]


@router.get("/architectures/{name}/layout", response_model=ArchitectureLayout,
            responses={422: {"description": "unknown architecture or dataset, or a bad config"}},
            summary="The state_dict (keys, shapes, dtypes) an upload of this architecture on this dataset must hold")
def architecture_layout(
    name: str,
    dataset: str = Query(..., max_length=200, description="The dataset the network reads."),
    config: str = Query("{}", max_length=2048, description="The architecture's config, a JSON object."),
    dataset_options: str = Query("{}", max_length=2048, description="The dataset's options, a JSON object."),
) -> dict:
    return minima_service.architecture_layout(name, config, dataset, dataset_options)


@router.get("/samplers", response_model=list[SamplerInfo], summary="Samplers of minima (docs/method.md §8)")
def samplers() -> list[dict]:
    from toroid.worker.landscape.samplers import SAMPLERS, sampler_schema

    out = []
    for name, spec in SAMPLERS.items():
        schema = sampler_schema(name)
        out.append({
            "name": name, "description": spec.description, "defaults": spec.defaults, "binary_ok": spec.binary_ok,
            "binary_only": spec.binary_only, "hyperparameters": schema["hyperparameters"],
            "reference": schema.get("reference", ""),
        })
    return out
