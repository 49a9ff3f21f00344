"""Checkpoints to models: reading uploads, checking them against an architecture, and building the model of a
stored minimum. The one place, below both the API and the workers, where a checkpoint becomes a network.

* ``read_checkpoint`` parses uploaded bytes (safetensors, or a torch state_dict read with ``weights_only=True``);
* ``template_state`` gives an architecture's state_dict layout without allocating it; ``check_state_dict``
  compares an upload with it key by key;
* ``load_model`` builds an architecture and loads a state_dict; ``minimum_inputs`` / ``minimum_model`` do it for
  a stored minimum (its dataset's shape, its checkpoint from the artifact store).

Decoding is bounded (docs/operations.md, "Limits"): with the template of the declared architecture,
``read_checkpoint`` refuses files that declare more than ``CHECKPOINT_SIZE_FACTOR`` times the architecture's bytes
(plus ``CHECKPOINT_SLACK_BYTES``) before decompressing anything, zip bombs and views into larger storages;
``check_state_dict`` refuses weights above ``MAX_WEIGHT_MAGNITUDE`` and weights whose normalized form
(docs/method.md §2) is not finite, since distances, geodesic paths and tori of the whole family would fail on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from toroid.store.artifacts import get_store
from toroid.store.errors import Invalid
from toroid.store.models import Minimum

__all__ = [
    "CHECKPOINT_SIZE_FACTOR",
    "CHECKPOINT_SLACK_BYTES",
    "MAX_PARAMETERS",
    "MAX_WEIGHT_MAGNITUDE",
    "CheckpointError",
    "TemplateState",
    "check_normalized_form",
    "check_state_dict",
    "checkpoint_limits",
    "load_model",
    "minimum_dataset",
    "minimum_model",
    "minimum_shape",
    "read_checkpoint",
    "template_bytes",
    "template_state",
]

#: Largest network (parameters + buffers) the service accepts, so that a typo such as widths [10**9] is a clear
#: 422 instead of an out-of-memory crash (400 million float32 = 1.6 GB).
MAX_PARAMETERS = 400_000_000


#: An upload may declare at most this many times the bytes of its architecture's tensors (in the architecture's
#: dtypes), plus ``CHECKPOINT_SLACK_BYTES``: a float64 copy (2x) or a training checkpoint with Adam's two moment
#: buffers under "state_dict" (3x) fits; more is not this architecture's weights (or is a decompression bomb).
CHECKPOINT_SIZE_FACTOR = 4
#: Room for the archive's own records (pickle, version) and for small checkpoints.
CHECKPOINT_SLACK_BYTES = 1 << 20
#: Largest magnitude of any floating value of an upload. The service computes per-unit norms, inner products of
#: units (alignment) and sums of squared differences (distances) in float32, whose largest value is 3.4e38:
#: with |w| <= 1e6 and at most MAX_PARAMETERS (4e8) terms those stay below 1e22. Trained weights are far smaller.
MAX_WEIGHT_MAGNITUDE = 1e6


class CheckpointError(Invalid):
    """An uploaded checkpoint cannot be read or does not fit its declared architecture (the message says why)."""


class TemplateState(dict):
    """An architecture's state_dict layout (meta tensors) that remembers what it was built from, so that
    ``check_state_dict`` can build the network and check its normalized form."""

    architecture: str
    config: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int


def template_bytes(template: Mapping[str, torch.Tensor]) -> int:
    """The bytes of an architecture's tensors in its own dtypes (a template holds no memory: it is computed)."""
    return sum(t.numel() * t.element_size() for t in template.values())


def checkpoint_limits(template: Mapping[str, torch.Tensor] | None, data: bytes) -> tuple[int, int | None]:
    """``(max_bytes, max_entries)`` a checkpoint may declare: from the architecture's template
    (``CHECKPOINT_SIZE_FACTOR`` x its bytes + ``CHECKPOINT_SLACK_BYTES``; ``CHECKPOINT_SIZE_FACTOR`` x its tensors +
    64 entries), or without one from the file itself (``torch.save`` stores tensors uncompressed, so
    ``CHECKPOINT_SIZE_FACTOR`` x its length + the slack)."""
    if template is None:
        return CHECKPOINT_SIZE_FACTOR * len(data) + CHECKPOINT_SLACK_BYTES, None
    return (CHECKPOINT_SIZE_FACTOR * template_bytes(template) + CHECKPOINT_SLACK_BYTES,
            CHECKPOINT_SIZE_FACTOR * len(template) + 64)


def read_checkpoint(data: bytes, template: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Parse an uploaded checkpoint: safetensors, or a torch ``state_dict`` read with ``weights_only=True``.

    The format is recognized from the bytes, never from a file name (``toroid.worker.landscape.io.parse_checkpoint``).
    ``torch.load(weights_only=True)`` refuses any pickle that references code (``os.system``, arbitrary classes)
    *before* anything is executed, so a malicious ``.pt`` file is rejected without side effects.
    Before decoding, the sizes the file declares are checked against ``checkpoint_limits(template, data)`` (give the
    declared architecture's ``template``: the tightest bound); zip bombs and tensors that are views into larger
    storages are refused. Raises ``CheckpointError`` with the reason.
    """
    from toroid.worker.landscape.io import parse_checkpoint

    if not data:
        raise CheckpointError("the checkpoint file is empty")
    max_bytes, max_entries = checkpoint_limits(template, data)
    try:
        return parse_checkpoint(data, max_bytes=max_bytes, max_entries=max_entries)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc


def template_state(architecture: str, config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int
                   ) -> tuple[TemplateState, dict[str, Any]]:
    """The state_dict layout (meta tensors: shapes and dtypes, no memory) of an architecture, and its full config.
    The layout is a ``TemplateState``: a dict that also remembers the architecture, config and dataset shape.

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
    full = dict(spec.get("config", config))
    template = TemplateState(state)
    template.architecture, template.config = architecture, full
    template.input_shape, template.num_classes = tuple(input_shape), int(num_classes)
    return template, full


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def check_state_dict(state: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
                     ) -> dict[str, torch.Tensor]:
    """Check that ``state`` has exactly the keys and shapes of ``template``; return it in the template's dtypes.

    The message of the ``CheckpointError`` names the first mismatch in the architecture's own key order
    (key, expected shape, got shape), then what else is wrong. ``what`` describes the declared architecture.
    Floating values must be finite and at most ``MAX_WEIGHT_MAGNITUDE`` in magnitude; with a ``TemplateState``
    (what ``template_state`` returns) the network is built and its normalized form must be finite
    (``check_normalized_form``).
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
            largest = float(tensor.detach().abs().max()) if tensor.numel() else 0.0
            if largest > MAX_WEIGHT_MAGNITUDE:
                raise CheckpointError(
                    f"key {key!r} holds a value of magnitude {largest:.3g}, above the limit of "
                    f"{MAX_WEIGHT_MAGNITUDE:.0e}: unit norms, alignments and distances are computed in float32 and "
                    "would overflow (trained weights are far smaller; was the checkpoint scaled or corrupted?)"
                )
        out[key] = tensor.to(expected.dtype).contiguous()
    if isinstance(template, TemplateState):
        check_normalized_form(load_model(template.architecture, template.config, template.input_shape,
                                         template.num_classes, out), what)
    return out


def check_normalized_form(model: nn.Module, what: str = "the network") -> None:
    """Refuse a network whose normalized form (docs/method.md §2) is not finite.

    ``normalize`` rescales every hidden unit to norm 1 and pushes its norm ``n_k`` into the next layer, so the
    norms multiply along the layers (and a following BatchNorm's running variance takes ``1 / n_k**2``); the
    distances, geodesic paths and tori of every minimum of the family are computed from that form in float32. This
    computes it exactly as the worker does (the per-unit norms in float64) and checks every value is finite.
    """
    from toroid.worker.landscape.symmetry import normalize

    with torch.no_grad():
        normalized = normalize(model)
        for key, tensor in normalized.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                norms = _largest_unit_norm(model)
                raise CheckpointError(
                    f"the normalized form of {what} is not finite at key {key!r}: normalization multiplies the "
                    f"per-unit norms along the layers (the largest unit norm here is {norms:.3g}) and the product "
                    "leaves float32's range (3.4e38), so distances, geodesic paths and tori of these weights are "
                    "undefined. Trained networks have unit norms of order 1: check the checkpoint"
                )


def _largest_unit_norm(model: nn.Module) -> float:
    largest = 0.0
    for tensor in model.state_dict().values():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            norms = torch.linalg.vector_norm(tensor.detach().flatten(1), dim=1, dtype=torch.float64)
            largest = max(largest, float(norms.max()) if norms.numel() else 0.0)
    return largest if math.isfinite(largest) else math.inf


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
    if minimum.program_sha256:  # an exported program (toroid.store.programs)
        from toroid.store.programs import program_model

        return program_model(minimum.program_sha256, state)
    return load_model(minimum.architecture, minimum.config or {}, shape.input_shape, shape.num_classes, state)
