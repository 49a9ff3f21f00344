"""Exported programs (torch.export): how to recognize them, and the values the ATen-graph builder
traces through them (docs/method.md §1, "Exported programs").

A traced tensor records where its units lie: along dimension ``dim``, ``block`` consecutive entries
per unit, the ``parts`` (groups, or data columns of a concatenation) one after the other. Shapes
come from ``node.meta["val"]`` and may be symbolic (a dynamic batch size): products of dimensions
are compared as expressions. The builder itself is :mod:`toroid.worker.landscape.graph_aten`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from toroid.worker.landscape.graph_units import Producer, ResidualAdd, Unsupported, scale_reason

__all__ = [
    "BATCHNORM_PACKETS",
    "Part",
    "Traced",
    "aten_packet",
    "as_int",
    "bind",
    "has_exported_batchnorm",
    "is_exported",
    "merged_part",
    "reshape_layout",
    "shape_of",
    "split_name",
]


def is_exported(model: nn.Module) -> bool:
    """True for a module made by ``torch.export`` (``ExportedProgram.module()``): a GraphModule whose
    graph calls ATen operator overloads. Its train / eval mode is fixed at export."""
    if not isinstance(model, fx.GraphModule):
        return False
    return any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) for n in model.graph.nodes)


def aten_packet(name: str) -> Any:
    """The ATen operator overload packet ``torch.ops.aten.<name>`` (None when this torch has none)."""
    try:
        return getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None


BATCHNORM_PACKETS = [p for p in map(aten_packet, (
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "_batch_norm_with_update", "_batch_norm_with_update_functional",
    "_batch_norm_no_update", "cudnn_batch_norm", "miopen_batch_norm")) if p is not None]


def has_exported_batchnorm(model: nn.Module) -> bool:
    """True when an exported program normalizes with BatchNorm (statistics fixed at export)."""
    return is_exported(model) and any(
        n.op == "call_function" and getattr(n.target, "overloadpacket", None) in BATCHNORM_PACKETS
        for n in model.graph.nodes
    )


# --------------------------------------------------------------------------------------------------
# traced values


@dataclass(frozen=True)
class Part:
    """Consecutive units of one group (``group`` None: data columns, e.g. a concatenated input)."""

    group: int | None
    size: int
    fresh: Producer | None = None  # the raw output of this producer (nothing but its bias applied yet)
    scale_why: str | None = None  # why a positive per-unit scale does not reach the consumers
    flip_why: str | None = None


@dataclass(frozen=True)
class Traced:
    """A traced tensor: its units lie along ``dim``, ``block`` entries each, the ``parts`` in order
    (no parts: data or an opaque value); or a parameter (``param``, possibly transposed); or the
    statistics output of the BatchNorm ``stat_of``. ``flattened``: reshaped since its producers, as
    the module tracer's flatten (each unit a block of columns, possibly of one column)."""

    parts: tuple[Part, ...] = ()
    dim: int = 0
    block: int = 1
    flattened: bool = False
    param: str | None = None
    transposed: bool = False
    stat_of: str | None = None

    @property
    def tracked(self) -> bool:
        return any(p.group is not None for p in self.parts)

    @property
    def units(self) -> int:
        return sum(p.size for p in self.parts)

    def with_whys(self, scale: str | None, flip: str | None) -> Traced:
        return replace(self, parts=tuple(
            replace(p, fresh=None, scale_why=scale_reason(p.scale_why, scale), flip_why=p.flip_why or flip)
            for p in self.parts))


def merged_part(group: int | None, x: Part, y: Part, residual: bool, scale: str, flip: str | None) -> Part:
    """The part where ``x`` and ``y`` meet entry by entry (a residual add when ``residual``, or a
    product): ``scale`` / ``flip`` why a per-unit scale / a sign flip stops there."""
    why = scale_reason(x.scale_why, y.scale_why, ResidualAdd(scale) if residual else scale)
    return Part(group, x.size, None, why, x.flip_why or y.flip_why or flip)


def bind(node: fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    out: dict[str, Any] = {}
    for i, a in enumerate(node.target._schema.arguments):
        if i < len(node.args) and not a.kwarg_only:
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        else:
            out[a.name] = a.default_value if a.has_default_value() else None
    return out


def shape_of(x: Any) -> tuple:
    val = x.meta.get("val") if isinstance(x, fx.Node) else None
    if not isinstance(val, torch.Tensor):
        raise Unsupported("its shape is unknown")
    return tuple(val.shape)


def as_int(s: Any) -> int | None:
    if isinstance(s, int):
        return s
    expr = getattr(getattr(s, "node", None), "expr", None)
    return int(expr) if expr is not None and expr.is_number else None


def _expr(dims: tuple) -> Any:
    """The product of ``dims`` (ints or symbolic sizes) as an int or a sympy expression."""
    out: Any = 1
    for s in dims:
        out = out * (s if isinstance(s, int) else s.node.expr)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    diff = a - b
    return bool(diff.expand() == 0) if hasattr(diff, "expand") else diff == 0


def _concrete(dims: tuple) -> int | None:
    values = [as_int(s) for s in dims]
    return None if any(v is None for v in values) else math.prod(values)


def reshape_layout(t: Traced, before: tuple, after: tuple) -> Traced:
    """Where the units are after a view / reshape / flatten / (un)squeeze, if each unit's entries stay
    together: unit k of every leading index is the contiguous range [k E, (k + 1) E) of the trailing
    entries, E = block * (product of the dims after the unit dim)."""
    n, prefix, tail = t.units, _expr(before[: t.dim]), _concrete(before[t.dim + 1:])
    if tail is not None:
        extent = t.block * tail
        for d in range(len(after)):
            size, rest = as_int(after[d]), _concrete(after[d + 1:])
            if size is None or rest is None or size % n or not _same(_expr(after[:d]), prefix):
                continue
            if size // n * rest == extent:
                return replace(t, dim=d, block=size // n)
    raise Unsupported("the reshape does not keep each unit's entries together")


def split_name(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr
