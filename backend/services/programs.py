"""Uploads of ``torch.export`` programs (``.pt2``): a researcher's own network, whatever its class.

The archive is inspected before anything in it is deserialized and loaded from the vouched entries only
(``toroid.worker.landscape.pt2``; docs/models.md). Then, as for every upload, everything is checked before anything
is stored: the program reads the dataset's inputs with a dynamic batch and gives one logit per class, its weights
are finite and bounded and their normalized form is finite (``toroid.store.loading``), its evaluation fits the cost
limit. The minimum (architecture ``export``, config ``{"structure": <hash>}``) keeps the program as an artifact and
its weights as the checkpoint (``toroid.store.programs``); the record says which symmetries are removed.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from toroid.store.artifacts import state_dict_bytes
from toroid.store.errors import Invalid
from toroid.store.ledger import clean_json
from toroid.store.loading import (
    CHECKPOINT_SIZE_FACTOR,
    CHECKPOINT_SLACK_BYTES,
    MAX_PARAMETERS,
    check_normalized_form,
    check_state_dict,
)
from toroid.store.models import Minimum, new_id, utcnow
from toroid.store.params import resolve_dataset
from toroid.store.programs import EXPORT, check_program, read_program, structure_hash, symmetry_summary
from toroid.store.text import check_name, clean_name


def program_spec(fields: dict[str, str], sidecar: bytes | None, filename: str | None) -> dict[str, Any]:
    """What a ``.pt2`` upload claims: its dataset (and options) and name; the program is its own architecture."""
    from pathlib import PurePath

    from toroid.backend.services.minima import json_object

    if sidecar is not None:
        raise Invalid("a .pt2 program carries its own architecture: send it without a sidecar, with the form fields "
                      "dataset (and dataset_options, name)")
    architecture = fields.get("architecture", "").strip()
    if architecture not in ("", EXPORT):
        raise Invalid(f"the file is a torch.export program, which is its own architecture: leave architecture empty "
                      f"(or '{EXPORT}'), not {architecture!r}")
    if json_object(fields.get("config", ""), "config"):
        raise Invalid("a .pt2 program takes no config: its graph and weights are in the file")
    if fields.get("key_map", "").strip():
        raise Invalid("key_map renames state_dict keys; a .pt2 program names its own weights: leave it out")
    dataset = fields.get("dataset", "").strip()
    if not dataset:
        raise Invalid("missing form field 'dataset': name the dataset the program reads (GET /api/datasets)")
    name = fields.get("name", "").strip() or clean_name(PurePath(filename or "").stem)[:200] or "program"
    check_name(name, "name")
    return {"dataset": dataset, "dataset_options": json_object(fields.get("dataset_options", ""), "dataset_options"),
            "name": name}


def create_from_program(fields: dict[str, str], data: bytes, sidecar: bytes | None, filename: str | None,
                        owner: str | None = None) -> dict:
    """Check a ``.pt2`` upload completely, then store it like any upload (``minima.store_upload``)."""
    from toroid.backend.services.minima import check_evaluation_cost, store_upload
    from toroid.worker.landscape.pt2 import program_module, save_pt2_bytes

    spec = program_spec(fields, sidecar, filename)
    spec["dataset"], options, input_shape, num_classes = resolve_dataset(spec["dataset"], spec["dataset_options"])
    spec["dataset_options"] = options
    manifest, program = read_program(data, CHECKPOINT_SIZE_FACTOR * len(data) + CHECKPOINT_SLACK_BYTES)
    size = sum(math.prod(t.shape) for t in (*manifest.parameters, *manifest.buffers))
    if size > MAX_PARAMETERS:
        raise Invalid(f"the program has {size:,} parameters and buffers; the service accepts at most "
                      f"{MAX_PARAMETERS:,}")
    module = program_module(program)
    check_program(manifest, module, input_shape, num_classes, spec["dataset"])
    raw = {k: v.detach().clone() for k, v in module.state_dict().items()}
    what = f"the program {spec['name']!r}"
    state = check_state_dict(raw, {k: v.to("meta") for k, v in raw.items()}, what)
    check_normalized_form(module, what)
    cost = check_evaluation_cost(spec, raw)
    try:
        structure = structure_hash(module)
        symmetries = symmetry_summary(module)
    except ValueError as exc:
        raise Invalid(f"the symmetries of {what} cannot be derived: {exc}") from exc

    program_bytes = save_pt2_bytes(program)
    checkpoint = state_dict_bytes(state)
    minimum = Minimum(
        id=new_id(), name=spec["name"], architecture=EXPORT, config={"structure": structure}, structure=structure,
        dataset=spec["dataset"], dataset_options=clean_json(options), sampler=None, seed=None,
        train_error=None, test_error=None,
        provenance=clean_json({"program": {"ops": sorted(manifest.ops)[:200], "nodes": manifest.num_nodes,
                                           "exported_with_torch": manifest.torch_version,
                                           "dropped": list(manifest.dropped)[:50]},
                               "symmetries": symmetries}),
        checkpoint_sha256=hashlib.sha256(checkpoint).hexdigest(),
        program_sha256=hashlib.sha256(program_bytes).hexdigest(), source="upload", created_at=utcnow(), owner=owner,
    )
    return store_upload(minimum, checkpoint, owner, program=program_bytes, cost=cost)
