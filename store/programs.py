"""Exported programs (``.pt2``) as minima: the network of a minimum that a researcher exported with ``torch.export``.

Such a minimum has the architecture ``export``. Its program (the graph, sanitized by
``toroid.worker.landscape.pt2.load_pt2`` and saved again) is an artifact named by ``Minimum.program_sha256``; its
weights are the checkpoint, as for every minimum, so normalized or aligned copies are ordinary checkpoints of the
same program. Its config is ``{"structure": <hash>}``: the sha256 of the network's structure (every state_dict key
with its shape and dtype, and the unit graph the symmetry code derives from the program, docs/method.md §1). Minima
whose structure and dataset agree form one family (``toroid.store.families``), whatever file they came from, so
their distances, paths and tori are defined.

A program takes the batch as a dynamic dimension (``torch.export.Dim``), one input of the dataset's shape, and
gives one logit per class; ``check_program`` tells the researcher how to export it otherwise (docs/models.md).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from toroid.store.errors import Invalid

__all__ = ["EXPORT", "check_program", "program_model", "read_program", "structure_hash", "symmetry_summary"]

EXPORT = "export"
EXPORT_ADVICE = ("export the model with a dynamic batch dimension: torch.export.save(torch.export.export(model.eval(), "
                 "(x,), dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2') (docs/models.md)")
#: Programs kept loaded per process (loading one parses its graph: tens of milliseconds to seconds).
CACHED_PROGRAMS = 8
_cache: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


class ProgramError(Invalid):
    """An uploaded ``.pt2`` cannot be used (the message says why and how to export it)."""


def read_program(data: bytes, max_bytes: int) -> tuple[Any, Any]:
    """``(manifest, program)`` of an uploaded archive: inspected before anything is deserialized, then loaded from
    the vouched entries only (``toroid.worker.landscape.pt2``). Raises ``ProgramError``."""
    from toroid.worker.landscape.pt2 import load_pt2

    try:
        return load_pt2(data, max_bytes=max_bytes, with_manifest=True)
    except ValueError as exc:
        raise ProgramError(str(exc)) from exc


def check_program(manifest: Any, module: nn.Module, input_shape: tuple[int, ...], num_classes: int,
                  dataset: str) -> None:
    """One input ``(batch, *input_shape)`` with a dynamic batch, and ``num_classes`` logits out (two samples are
    run: the output shape is the program's own answer)."""
    inputs = list(manifest.inputs)
    if len(inputs) != 1:
        raise ProgramError(f"the program takes {len(inputs)} inputs; Toroid feeds one tensor of dataset {dataset!r} "
                           f"(shape (batch, {', '.join(map(str, input_shape))})); export a model with one input")
    shape = tuple(inputs[0].shape)
    if len(shape) != len(input_shape) + 1 or tuple(shape[1:]) != tuple(input_shape):
        raise ProgramError(f"the program's input has shape {shape} but dataset {dataset!r} gives inputs of shape "
                           f"(batch, {', '.join(map(str, input_shape))}); export it with an input of that shape")
    if not isinstance(shape[0], str):
        raise ProgramError(f"the program's batch dimension is fixed at {shape[0]}, so it cannot read the dataset in "
                           f"batches; {EXPORT_ADVICE}")
    try:
        with torch.no_grad():
            out = module(torch.zeros((2, *input_shape)))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProgramError(f"the program does not run on two inputs of dataset {dataset!r}: {first}; "
                           f"{EXPORT_ADVICE}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ProgramError(f"the program maps 2 inputs to an output of shape {got}; dataset {dataset!r} needs "
                           f"(2, {num_classes}): one logit per class")


def structure_hash(module: nn.Module) -> str:
    """sha256 of the network's structure: its state_dict layout (key, shape, dtype) and its unit graph."""
    from toroid.worker.landscape.graph import unit_graph

    layout = [(k, list(t.shape), str(t.dtype)) for k, t in module.state_dict().items()]
    graph = unit_graph(module)
    groups = [{"size": g.size, "producers": [p.module for p in g.producers], "followers": list(g.followers),
               "consumers": [(c.module, c.flattened, c.fixed) for c in g.consumers], "output": g.output,
               "residual": g.residual, "permutable": g.permutable, "rescalable": g.rescalable}
              for g in graph.groups]
    text = json.dumps({"layout": layout, "groups": groups, "binary": graph.binary}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def symmetry_summary(module: nn.Module) -> dict[str, Any]:
    """What the symmetry code removes from this network, group by group (``describe_symmetries`` of the core)."""
    from toroid.worker.landscape import graph

    describe = getattr(graph, "describe_symmetries", None)
    if describe is not None:
        return describe(module)
    groups = graph.unit_graph(module).groups
    return {"groups": [{"name": g.name, "size": g.size, "permuted": g.permutable, "rescaled": g.rescalable,
                        "flipped": False, "reasons": []} for g in groups], "unsupported": []}


def _program(sha: str) -> Any:
    from toroid.store.artifacts import get_store
    from toroid.worker.landscape.pt2 import load_pt2

    with _lock:
        if sha in _cache:
            _cache.move_to_end(sha)
            return _cache[sha]
    program = load_pt2(get_store().get_bytes(sha))  # stored only after the same checks: re-checked all the same
    with _lock:
        _cache[sha] = program
        while len(_cache) > CACHED_PROGRAMS:
            _cache.popitem(last=False)
    return program


def program_model(program_sha256: str, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The runnable network of a stored program with ``state`` loaded (strict)."""
    from toroid.worker.landscape.pt2 import program_module

    module = program_module(_program(program_sha256))  # a copy: the cached program keeps its own tensors
    module.load_state_dict(dict(state), strict=True)
    return module
