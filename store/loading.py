"""Checkpoints to models: reading uploads, checking them against an architecture, and building the model of a
stored minimum. The one place, below both the API and the workers, where a checkpoint becomes a network.

* ``read_checkpoint`` parses uploaded bytes (safetensors, or a torch state_dict read with ``weights_only=True``);
* ``template_state`` gives an architecture's state_dict layout without allocating it; ``check_state_dict``
  compares an upload with it key by key;
* ``load_model`` builds an architecture and loads a state_dict; ``minimum_inputs`` / ``minimum_model`` do it for
  a stored minimum (its dataset's shape, its checkpoint from the artifact store).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from toroid.store.artifacts import get_store
from toroid.store.errors import Invalid
from toroid.store.models import Minimum

__all__ = [
    "MAX_PARAMETERS",
    "CheckpointError",
    "check_state_dict",
    "load_model",
    "minimum_dataset",
    "minimum_model",
    "minimum_shape",
    "read_checkpoint",
    "template_state",
]

#: Largest network (parameters + buffers) the service accepts, so that a typo such as widths [10**9] is a clear
#: 422 instead of an out-of-memory crash (400 million float32 = 1.6 GB).
MAX_PARAMETERS = 400_000_000


class CheckpointError(Invalid):
    """An uploaded checkpoint cannot be read or does not fit its declared architecture (the message says why)."""


def read_checkpoint(data: bytes) -> dict[str, torch.Tensor]:
    """Parse an uploaded checkpoint: safetensors, or a torch ``state_dict`` read with ``weights_only=True``.

    The format is recognized from the bytes, never from a file name (``toroid.worker.landscape.io.parse_checkpoint``).
    ``torch.load(weights_only=True)`` refuses any pickle that references code (``os.system``, arbitrary classes)
    *before* anything is executed, so a malicious ``.pt`` file is rejected without side effects.
    Raises ``CheckpointError`` with the reason.
    """
    from toroid.worker.landscape.io import parse_checkpoint

    if not data:
        raise CheckpointError("the checkpoint file is empty")
    try:
        return parse_checkpoint(data)
    except ValueError as exc:
        raise CheckpointError(f"{exc}; upload model.state_dict() saved with safetensors or torch.save") from exc


def template_state(architecture: str, config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state_dict layout (meta tensors: shapes and dtypes, no memory) of an architecture, and its full config.

    Raises ``ValueError`` (from the architecture registry, naming valid choices) for unknown names or config keys,
    and for networks above ``MAX_PARAMETERS``.
    """
    from toroid.worker.landscape.nets import build_model, model_spec

    with torch.device("meta"):
        model = build_model(architecture, dict(config), (tuple(input_shape), int(num_classes)))
    state = dict(model.state_dict())
    size = sum(t.numel() for t in state.values())
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"architecture {architecture!r} with config {dict(config)} has {size:,} parameters and buffers; "
            f"the service accepts at most {MAX_PARAMETERS:,}: choose smaller widths"
        )
    spec = model_spec(model) or {}
    return state, dict(spec.get("config", config))


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def check_state_dict(state: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
                     ) -> dict[str, torch.Tensor]:
    """Check that ``state`` has exactly the keys and shapes of ``template``; return it in the template's dtypes.

    The message of the ``CheckpointError`` names the first mismatch in the architecture's own key order
    (key, expected shape, got shape), then what else is wrong. ``what`` describes the declared architecture.
    """
    problems: list[str] = []
    for key, expected in template.items():
        got = state.get(key)
        if got is None:
            problems.append(f"key {key!r} is missing (expected shape {_shape(expected)})")
        elif _shape(got) != _shape(expected):
            problems.append(f"key {key!r}: expected shape {_shape(expected)}, got shape {_shape(got)}")
        elif expected.is_floating_point() != got.is_floating_point():
            kind = "floating point" if expected.is_floating_point() else "integer"
            problems.append(f"key {key!r}: expected {kind} values, got dtype {got.dtype}")
    unexpected = [key for key in state if key not in template]
    problems.extend(f"unexpected key {key!r} (shape {_shape(state[key])})" for key in unexpected)
    if problems:
        others = "; ".join(problems[1:4]) + ("; ..." if len(problems) > 4 else "")
        more = f" ({len(problems) - 1} more problem(s): {others})" if len(problems) > 1 else ""
        raise CheckpointError(
            f"the checkpoint does not match {what}: {problems[0]}{more}. "
            f"The architecture expects the keys {list(template)[:8]}{' ...' if len(template) > 8 else ''}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, expected in template.items():
        tensor = state[key]
        if tensor.is_floating_point():
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"key {key!r} contains NaN or infinite values")
            tensor = tensor.to(expected.dtype)
        else:
            tensor = tensor.to(expected.dtype)
        out[key] = tensor.contiguous()
    return out


def load_model(architecture: str, config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int,
               state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build the architecture on the CPU and load ``state`` (strict); eval mode."""
    from toroid.worker.landscape.nets import build_model

    model = build_model(architecture, dict(config), (tuple(input_shape), int(num_classes)))
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def minimum_dataset(minimum: Minimum):
    """The dataset a minimum was trained / uploaded on (``toroid.worker.landscape.data.Dataset``)."""
    from toroid.worker.landscape.data import load_dataset

    return load_dataset(minimum.dataset, **(minimum.dataset_options or {}))


def minimum_shape(minimum: Minimum) -> SimpleNamespace:
    """The input shape and class count of a minimum's dataset, read without loading the data."""
    from toroid.worker.landscape.data import dataset_info

    input_shape, num_classes = dataset_info(minimum.dataset, **(minimum.dataset_options or {}))
    return SimpleNamespace(input_shape=tuple(input_shape), num_classes=int(num_classes))


def minimum_model(minimum: Minimum, dataset: Any = None) -> nn.Module:
    """The network of a stored minimum, its checkpoint loaded from the artifact store; ``dataset`` (or anything
    with ``input_shape`` and ``num_classes``) saves reading the dataset's shape again."""
    shape = dataset if dataset is not None else minimum_shape(minimum)
    state = get_store().get_state_dict(minimum.checkpoint_sha256)
    return load_model(minimum.architecture, minimum.config or {}, shape.input_shape, shape.num_classes, state)
