"""Network states: state dicts, loading them in place, linear combinations, BatchNorm recalibration.

The bottom layer of the evaluator (docs/method.md §7): every measure handles networks as
state dicts (name -> tensor). :func:`load_state` copies one into a reusable working model,
:func:`combine_states` forms the per-unit linear combinations of a few anchor networks that paths,
sections and tori are made of, and :func:`recalibrate_bn` recomputes BatchNorm running statistics
from the training data (deterministic full pass, cumulative average).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from toroid.worker.landscape.graph_aten import has_exported_batchnorm, is_exported

__all__ = [
    "EXPORTED_BN_MESSAGE",
    "as_state",
    "batchnorm_modules",
    "combine_states",
    "has_batchnorm",
    "is_exported",
    "load_state",
    "recalibrate_bn",
    "set_mode",
]

#: Why BatchNorm statistics cannot be recomputed for a program made by ``torch.export``.
EXPORTED_BN_MESSAGE = "the BatchNorm statistics of an exported program are fixed at export; use bn='interpolate'"

BNMode = Literal["recompute", "interpolate"]
Coefficients = Mapping[str, Tensor]


def as_state(network: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict of ``network`` (a module or already a mapping of name -> tensor)."""
    if isinstance(network, nn.Module):
        return network.state_dict()
    if isinstance(network, Mapping):
        return dict(network)
    raise ValueError(
        f"expected an nn.Module or a state dict (mapping of name -> tensor), got {type(network).__name__}"
    )


def set_mode(model: nn.Module, train: bool) -> nn.Module:
    """``model.train(train)``, except for exported programs (``torch.export``): their mode was fixed
    at export and torch cannot switch it, so they are returned as they are."""
    if not is_exported(model):
        model.train(train)
    return model


def batchnorm_modules(model: nn.Module) -> list[_BatchNorm]:
    """BatchNorm modules of ``model`` that keep running statistics (to recompute them).

    Raises ``ValueError`` for an exported program with BatchNorm: its statistics are fixed at export.
    """
    if is_exported(model):
        if has_exported_batchnorm(model):
            raise ValueError(EXPORTED_BN_MESSAGE)
        return []
    return [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` has BatchNorm layers with running statistics (an exported program: any
    BatchNorm, whose statistics cannot be recomputed; :func:`batchnorm_modules` says so)."""
    if is_exported(model):
        return has_exported_batchnorm(model)
    return bool(batchnorm_modules(model))


@torch.no_grad()
def load_state(model: nn.Module, state: Mapping[str, Tensor], *, allow_extra: bool = False) -> nn.Module:
    """Copy ``state`` into the parameters and buffers of ``model`` in place (no reallocation).

    Every entry of ``model.state_dict()`` must be present in ``state`` with the same shape;
    extra entries in ``state`` are an error unless ``allow_extra``.
    """
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    if missing:
        raise ValueError(f"state is missing {len(missing)} entries of the model, e.g. {missing[:5]}")
    if not allow_extra:
        extra = [k for k in state if k not in target]
        if extra:
            raise ValueError(f"state has {len(extra)} entries the model does not have, e.g. {extra[:5]}")
    for key, dst in target.items():
        src = state[key]
        if src.shape != dst.shape:
            raise ValueError(
                f"shape mismatch for {key!r}: state has {tuple(src.shape)}, model {tuple(dst.shape)}"
            )
        dst.copy_(src)
    return model


def _equal_chunks(n: int, batch_size: int) -> list[slice]:
    """Split range(n) into ceil(n / batch_size) contiguous chunks whose sizes differ by at most one."""
    if n == 0:
        return []
    count = max(1, math.ceil(n / max(1, batch_size)))
    base, rest = divmod(n, count)
    slices, start = [], 0
    for i in range(count):
        size = base + (1 if i < rest else 0)
        slices.append(slice(start, start + size))
        start += size
    return slices


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x_train: Tensor, batch_size: int | None = None) -> nn.Module:
    """Recompute the BatchNorm running statistics of ``model`` from training inputs, in place.

    docs/method.md §7 leaves BN statistics along paths open; Toroid recomputes them.  Every
    BN layer's statistics are reset and re-estimated in one deterministic pass over
    ``x_train`` (in its order) with ``momentum=None``, i.e. the cumulative average of the
    per-batch statistics.  Batches have (almost) equal sizes, so with a single batch the
    statistics are the exact full-data train-mode statistics.  The model is returned in eval
    mode; momentum values are restored.  An exported program (``torch.export``) with BatchNorm is
    refused with a ``ValueError``: its statistics are fixed at export (use ``bn="interpolate"``).
    """
    bns = batchnorm_modules(model)
    set_mode(model, False)
    if not bns:
        return model
    device = _model_device(model)
    with _cumulative_bn_statistics(model, bns):
        for sl in _equal_chunks(len(x_train), batch_size or len(x_train)):
            model(x_train[sl].to(device))
    return model


@contextmanager
def _cumulative_bn_statistics(model: nn.Module, bns: Sequence[_BatchNorm]) -> Iterator[None]:
    """Put BN layers in cumulative-statistics train mode for one pass, then restore them."""
    momenta = [m.momentum for m in bns]
    set_mode(model, False)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield None
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
            m.eval()


def combine_states(
    states: Sequence[Mapping[str, Tensor]], coefs: Coefficients, keys: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """sum_m coefs[key][m] (.) states[m][key] for each key (of ``keys``, default all of states[0]).

    ``coefs[key]`` has shape (M,) (one coefficient per state) or (M, rows) (one per state and
    unit, i.e. per slice along dim 0).  Coefficients are given in float64 and applied in the
    tensor's dtype (a coefficient 1 or 0 reproduces a state exactly).  Keys without
    coefficients are taken from ``states[0]`` (not copied).
    """
    m_count = len(states)
    out: dict[str, Tensor] = {}
    for k in keys if keys is not None else list(states[0].keys()):
        ref = states[0][k]
        c = coefs.get(k)
        if c is None:
            out[k] = ref
            continue
        c = torch.as_tensor(c, dtype=torch.float64)
        if c.dim() == 0 or c.dim() > 2 or c.shape[0] != m_count:
            raise ValueError(f"coefficients for {k!r} must have shape (M,) or (M, rows) with M={m_count}")
        if c.dim() == 2 and (ref.dim() == 0 or c.shape[1] != ref.shape[0]):
            raise ValueError(
                f"per-unit coefficients for {k!r} have {c.shape[1]} rows, the tensor has shape {tuple(ref.shape)}"
            )
        if c.dim() == 1:  # one scalar per state: scaled adds, no coefficient tensors
            weights = [float(v) for v in c]
            total = torch.mul(states[0][k], weights[0])
            for i in range(1, m_count):
                total.add_(states[i][k], alpha=weights[i])
        else:  # one coefficient per state and unit (slice along dim 0)
            per_unit = c.to(device=ref.device, dtype=ref.dtype).reshape(m_count, -1, *([1] * (ref.dim() - 1)))
            total = torch.mul(states[0][k], per_unit[0])
            for i in range(1, m_count):
                total.addcmul_(states[i][k], per_unit[i])
        out[k] = total
    return out
