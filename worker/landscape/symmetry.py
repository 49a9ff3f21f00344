"""Symmetry removal: the unit graph, scale removal (normalize) and permutation / sign removal (align).

docs/method.md §2 (Algorithm 1, normalization), sec. 3 (Algorithm 2, alignment), sec. 4 (binary
networks). The implementation is architecture-agnostic:

1. **Unit graph.** The model is traced with ``torch.fx``. Every node is handled by ONE table of
   per-operation handlers (``MODULE_HANDLERS`` for leaf modules, ``FUNCTION_HANDLERS`` for
   functions and tensor methods), in the spirit of ZipIt's merge engine: a Linear / Conv
   *produces* a new group of hidden units and *consumes* the group its input carries;
   BatchNorm *follows* the group; ReLU, pooling, flatten, sign pass it through while recording
   whether they commute with positive rescaling / sign flips; a residual ``add`` merges two
   groups into one residual stream (they must share one permutation). An operation the table
   does not know raises a ``ValueError`` naming it.
2. **Moves.** Three moves act on a group, each on every tensor the group touches (producer rows
   and biases, BatchNorm parameters and running statistics, consumer input columns, through a
   flatten as blocks of columns): ``permute``, ``flip`` (binary networks) and ``rescale``.
   :func:`normalize` and :func:`align` are short loops of these moves over the graph.

Every function returns a NEW model; its inputs are never modified.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .nets import BinaryConv2d, BinaryLinear, CommitteeOutput, Sign

__all__ = [
    "FUNCTION_HANDLERS",
    "MODULE_HANDLERS",
    "Consumer",
    "Producer",
    "SphereBlock",
    "UnitGraph",
    "UnitGroup",
    "UnitMatch",
    "align",
    "align_permutations",
    "apply_symmetry",
    "is_binary",
    "normalize",
    "random_symmetry",
    "sphere_blocks",
    "unit_graph",
]


# --------------------------------------------------------------------------------------------------
# data structures


@dataclass
class Producer:
    """A Linear / Conv module whose output units (dim 0 of its weight) form a unit group."""

    module: str
    input_group: int | None = None  # index of the group its input columns belong to (None: data)
    bn: str | None = None  # the BatchNorm applied directly to its output (rescales with the unit)
    binary: bool = False


@dataclass
class Consumer:
    """A module reading a unit group: a weighted layer (dim 1 of its weight, in blocks of
    ``in_features // group size`` columns after a flatten) or a fixed read-out (``fixed``)."""

    module: str
    flattened: bool = False
    fixed: bool = False


@dataclass
class UnitGroup:
    """Hidden units that move together under the symmetries.

    A plain layer is one group; the layers writing into one residual stream form one group.
    ``rescalable``: positive rescaling of each unit is a symmetry that moves legally into the
    consumers (single producer, only ReLU / pooling / flatten / BatchNorm-after-producer in between,
    no residual add). ``flippable``: sign flips are a symmetry (only odd operations in between and
    weighted consumers). ``output``: the last layer, never permuted, scaled as one vector.
    """

    name: str
    size: int
    producers: list[Producer] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    rescalable: bool = True
    flippable: bool = True
    permutable: bool = True
    output: bool = False
    residual: bool = False


@dataclass
class UnitGraph:
    """The unit groups of a model in bottom-up (topological) order, and whether it is binary."""

    groups: list[UnitGroup]
    binary: bool

    def group(self, name: str) -> UnitGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(f"no unit group {name!r}; groups: {[g.name for g in self.groups]}")


@dataclass(frozen=True)
class SphereBlock:
    """A weight tensor living on spheres after :func:`normalize` (docs/method.md §2).

    ``per_unit``: each slice along dim 0, flattened, is one hidden unit on the unit sphere.
    Otherwise the whole tensor is one vector on the sphere of radius ``sqrt(H_L)`` (the last layer).
    """

    param: str
    per_unit: bool
    radius: float
    group: str


@dataclass
class UnitMatch:
    """Result of aligning one group: aligned unit ``k`` is the other model's unit ``perm[k]``
    (times ``signs[k]`` for binary networks; ``signs`` is ``None`` when no flip is possible)."""

    perm: np.ndarray
    signs: np.ndarray | None = None
    similarity: float = 0.0  # mean matched similarity C[k, perm[k]] (cosine; binary: overlap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "perm": [int(i) for i in self.perm],
            "signs": None if self.signs is None else [int(s) for s in self.signs],
            "similarity": float(self.similarity),
        }


# --------------------------------------------------------------------------------------------------
# tracing: the per-operation handler table


@dataclass(frozen=True)
class _Flow:
    """What a traced value carries along its channel dimension (dim 1)."""

    group: int | None = None  # unit group of the channels (None: data, or not a feature map)
    fresh: Producer | None = None  # the raw output of this producer (no op applied yet)
    flattened: bool = False
    scale_ok: bool = True  # all ops since the producer commute with positive per-unit scale
    flip_ok: bool = True  # all ops since the producer are odd (commute with sign flips)


class _Builder:
    """Mutable state while walking the fx graph."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.groups: list[UnitGroup] = []
        self.parent: list[int] = []

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def new_group(self, name: str, size: int) -> int:
        self.groups.append(UnitGroup(name=name, size=size))
        self.parent.append(len(self.groups) - 1)
        return len(self.groups) - 1

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        keep, drop = min(ra, rb), max(ra, rb)
        ga, gb = self.groups[keep], self.groups[drop]
        if ga.size != gb.size:
            raise ValueError(f"residual add of groups {ga.name!r} ({ga.size}) and {gb.name!r} ({gb.size})")
        ga.producers += gb.producers
        ga.followers += gb.followers
        ga.consumers += gb.consumers
        ga.rescalable = False
        ga.flippable = ga.flippable and gb.flippable
        ga.permutable = ga.permutable and gb.permutable
        ga.residual = True
        self.parent[drop] = keep
        return keep

    def g(self, flow: _Flow) -> UnitGroup | None:
        return None if flow.group is None else self.groups[self.find(flow.group)]


def _consume(b: _Builder, flow: _Flow, consumer: Consumer, in_size: int) -> None:
    group = b.g(flow)
    if group is None:
        return
    if flow.flattened:
        if in_size % group.size:
            raise ValueError(
                f"module {consumer.module!r} reads {in_size} flattened inputs from group {group.name!r} "
                f"of {group.size} units (not a multiple)"
            )
    elif in_size != group.size:
        raise ValueError(f"module {consumer.module!r} reads {in_size} inputs but group {group.name!r} has {group.size}")
    consumer.flattened = flow.flattened
    group.consumers.append(consumer)
    group.rescalable &= flow.scale_ok
    group.flippable &= flow.flip_ok and not consumer.fixed


def _h_producer(b: _Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    if isinstance(module, nn.Linear):
        n_in, n_out = module.in_features, module.out_features
    else:
        assert isinstance(module, nn.modules.conv._ConvNd)
        if module.groups != 1 or module.transposed:
            raise ValueError(f"module {name!r}: grouped or transposed convolutions are not supported")
        n_in, n_out = module.in_channels, module.out_channels
    flow = flows[0]
    _consume(b, flow, Consumer(name), n_in)
    binary = bool(getattr(module, "binary", False))
    producer = Producer(name, None if flow.group is None else flow.group, binary=binary)
    gid = b.new_group(name, n_out)
    b.groups[gid].producers.append(producer)
    if binary:
        b.groups[gid].rescalable = False
    return _Flow(group=gid, fresh=producer)


def _h_batchnorm(b: _Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    flow = flows[0]
    group = b.g(flow)
    if group is None:
        return _Flow()
    if module.num_features != group.size:
        raise ValueError(f"BatchNorm {name!r} has {module.num_features} features, group {group.name!r} {group.size}")
    group.followers.append(name)
    group.flippable = False  # BN's shift breaks oddness
    if flow.fresh is not None and flow.fresh.bn is None:
        flow.fresh.bn = name
    else:  # BN after a nonlinearity or on a residual stream: the scale cannot move through it
        group.rescalable = False
    return _Flow(group=flow.group, flattened=flow.flattened, scale_ok=flow.scale_ok, flip_ok=False)


def _passthrough(scale_ok: bool, flip_ok: bool) -> Callable[..., _Flow]:
    def handler(b: _Builder, name: str, module: Any, flows: list[_Flow]) -> _Flow:
        flow = flows[0]
        return _Flow(
            group=flow.group,
            flattened=flow.flattened,
            scale_ok=flow.scale_ok and scale_ok,
            flip_ok=flow.flip_ok and flip_ok,
        )

    return handler


def _h_flatten(b: _Builder, name: str, module: Any, flows: list[_Flow]) -> _Flow:
    flow = flows[0]
    return _Flow(group=flow.group, flattened=True, scale_ok=flow.scale_ok, flip_ok=flow.flip_ok)


def _h_committee(b: _Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    assert isinstance(module, CommitteeOutput)
    _consume(b, flows[0], Consumer(name, fixed=True), module.units)
    return _Flow()


def _h_add(b: _Builder, name: str, module: Any, flows: list[_Flow]) -> _Flow:
    tensors = [f for f in flows if f is not None]
    if not tensors:
        return _Flow()
    if len(tensors) < 2:  # adding a constant: the units keep their identity but lose scale/sign freedom
        x = tensors[0]
        if (gr := b.g(x)) is not None:
            gr.rescalable = gr.flippable = False
        return _Flow(group=x.group, flattened=x.flattened, scale_ok=False, flip_ok=False)
    x, y = tensors[0], tensors[1]
    if x.group is None or y.group is None:
        for f in (x, y):
            if (gr := b.g(f)) is not None:
                gr.permutable = gr.rescalable = gr.flippable = False
        return _Flow()
    if x.flattened != y.flattened:
        raise ValueError(f"residual add {name!r} mixes flattened and unflattened inputs")
    gid = b.union(x.group, y.group)
    return _Flow(group=gid, flattened=x.flattened, scale_ok=False, flip_ok=x.flip_ok and y.flip_ok)


def _h_ignore(b: _Builder, name: str, module: Any, flows: list[_Flow]) -> _Flow:
    return _Flow()


# One table: module type -> handler. Lookup walks the module's MRO, so BinaryLinear uses the
# Linear handler (its ``binary`` attribute marks it) and subclasses of the torch layers work.
MODULE_HANDLERS: dict[type, Callable[..., _Flow]] = {
    nn.Linear: _h_producer,
    nn.Conv1d: _h_producer,
    nn.Conv2d: _h_producer,
    nn.Conv3d: _h_producer,
    nn.BatchNorm1d: _h_batchnorm,
    nn.BatchNorm2d: _h_batchnorm,
    nn.BatchNorm3d: _h_batchnorm,
    nn.ReLU: _passthrough(scale_ok=True, flip_ok=False),
    nn.MaxPool1d: _passthrough(scale_ok=True, flip_ok=False),
    nn.MaxPool2d: _passthrough(scale_ok=True, flip_ok=False),
    nn.AvgPool1d: _passthrough(scale_ok=True, flip_ok=True),
    nn.AvgPool2d: _passthrough(scale_ok=True, flip_ok=True),
    nn.AdaptiveAvgPool1d: _passthrough(scale_ok=True, flip_ok=True),
    nn.AdaptiveAvgPool2d: _passthrough(scale_ok=True, flip_ok=True),
    nn.Dropout: _passthrough(scale_ok=True, flip_ok=True),
    nn.Identity: _passthrough(scale_ok=True, flip_ok=True),
    # sign(c x) = sign(x): a positive scale does not pass through to the consumers
    Sign: _passthrough(scale_ok=False, flip_ok=True),
    nn.Flatten: _h_flatten,
    CommitteeOutput: _h_committee,
}

# Functions (call_function targets) and tensor methods (call_method names).
FUNCTION_HANDLERS: dict[Any, Callable[..., _Flow]] = {
    F.relu: _passthrough(scale_ok=True, flip_ok=False),
    torch.relu: _passthrough(scale_ok=True, flip_ok=False),
    "relu": _passthrough(scale_ok=True, flip_ok=False),
    F.max_pool1d: _passthrough(scale_ok=True, flip_ok=False),
    F.max_pool2d: _passthrough(scale_ok=True, flip_ok=False),
    F.avg_pool1d: _passthrough(scale_ok=True, flip_ok=True),
    F.avg_pool2d: _passthrough(scale_ok=True, flip_ok=True),
    F.adaptive_avg_pool1d: _passthrough(scale_ok=True, flip_ok=True),
    F.adaptive_avg_pool2d: _passthrough(scale_ok=True, flip_ok=True),
    F.dropout: _passthrough(scale_ok=True, flip_ok=True),
    torch.sign: _passthrough(scale_ok=False, flip_ok=True),
    "sign": _passthrough(scale_ok=False, flip_ok=True),
    torch.flatten: _h_flatten,
    "flatten": _h_flatten,
    "view": _h_flatten,
    "reshape": _h_flatten,
    operator.add: _h_add,
    operator.iadd: _h_add,
    torch.add: _h_add,
    "add": _h_add,
    "size": _h_ignore,
    getattr: _h_ignore,
}


def _module_handler(module: nn.Module) -> Callable[..., _Flow] | None:
    for cls in type(module).__mro__:
        if cls in MODULE_HANDLERS:
            return MODULE_HANDLERS[cls]
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (BinaryLinear, BinaryConv2d, Sign, CommitteeOutput)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _check_flatten_args(node: fx.Node) -> None:
    """Only flattening from dim 1 (keeping the batch dim) is a legal channel->block map."""
    if node.target in (torch.flatten, "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        if start != 1:
            raise ValueError(f"node {node.name!r}: only flatten(x, 1) is supported in the unit graph")
    elif node.target in ("view", "reshape"):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if len(shape) != 2 or shape[1] != -1:
            raise ValueError(f"node {node.name!r}: only x.view(batch, -1) / reshape(batch, -1) is supported")


def _build_graph(model: nn.Module) -> UnitGraph:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from exc
    modules = dict(model.named_modules())
    b = _Builder(model)
    flows: dict[fx.Node, _Flow | None] = {}
    output_flow: _Flow | None = None

    def flow_of(a: Any) -> _Flow | None:
        return flows.get(a) if isinstance(a, fx.Node) else None

    for node in graph.nodes:
        if node.op == "placeholder":
            flows[node] = _Flow()
        elif node.op == "get_attr":
            flows[node] = _Flow()
        elif node.op == "call_module":
            module = modules[node.target]
            handler = _module_handler(module)
            if handler is None:
                raise ValueError(
                    f"unit graph: module {node.target!r} of type {type(module).__name__} is not in the handler "
                    f"table; supported modules: {sorted(c.__name__ for c in MODULE_HANDLERS)}"
                )
            if isinstance(module, nn.Flatten) and module.start_dim != 1:
                raise ValueError(f"module {node.target!r}: only Flatten(start_dim=1) is supported")
            flows[node] = handler(b, node.target, module, [flow_of(node.args[0])])
        elif node.op in ("call_function", "call_method"):
            handler = FUNCTION_HANDLERS.get(node.target)
            if handler is None:
                target = getattr(node.target, "__name__", str(node.target))
                raise ValueError(
                    f"unit graph: operation {target!r} (node {node.name!r}) is not in the handler table; "
                    "supported: relu, max/avg pooling, flatten, view(batch, -1), residual add, sign, dropout"
                )
            _check_flatten_args(node)
            args = [flow_of(a) for a in node.args]
            if handler is _h_add:
                flows[node] = handler(b, node.name, None, args)
            elif handler is _h_ignore:
                flows[node] = None
            else:
                if args[0] is None:
                    raise ValueError(f"node {node.name!r}: operation applied to a non-tensor value")
                flows[node] = handler(b, node.name, None, args)
        elif node.op == "output":
            output_flow = flow_of(node.args[0])
    # finalize: one group per union-find root, in order of first appearance (bottom-up)
    roots = sorted({b.find(i) for i in range(len(b.groups))})
    index = {r: k for k, r in enumerate(roots)}
    groups = [b.groups[r] for r in roots]
    if output_flow is not None and output_flow.group is not None:
        out = b.groups[b.find(output_flow.group)]
        out.output = True
        out.permutable = out.rescalable = out.flippable = False
    for g in groups:
        for p in g.producers:
            p.input_group = None if p.input_group is None else index[b.find(p.input_group)]
        if g.residual:
            first = g.producers[0].module
            g.name = f"stream:{first}"
        if len(g.producers) != 1:
            g.rescalable = False
    binary = any(getattr(m, "binary", False) for m in model.modules())
    return UnitGraph(groups=groups, binary=binary)


_GRAPH_CACHE: dict[tuple, UnitGraph] = {}
_GRAPH_LOCK = threading.Lock()


def _structure_key(model: nn.Module) -> tuple:
    cls = type(model)
    mods = tuple((n, type(m).__qualname__) for n, m in model.named_modules())
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return (cls.__module__, cls.__qualname__, mods, shapes)


def unit_graph(model: nn.Module) -> UnitGraph:
    """The unit graph of ``model`` (traced with torch.fx; cached per model structure).

    Returns a fresh copy each call, so callers may modify it.
    """
    key = _structure_key(model)
    with _GRAPH_LOCK:
        cached = _GRAPH_CACHE.get(key)
    if cached is None:
        cached = _build_graph(model)
        with _GRAPH_LOCK:
            _GRAPH_CACHE[key] = cached
    return copy.deepcopy(cached)


def is_binary(model: nn.Module) -> bool:
    """True when ``model`` has binary (sign-of-latent-weight) layers (docs/method.md §4)."""
    return any(getattr(m, "binary", False) for m in model.modules())


# --------------------------------------------------------------------------------------------------
# moves on a group: permute, flip, rescale


def _tensor(model: nn.Module, module: str, attr: str) -> torch.Tensor | None:
    return getattr(model.get_submodule(module), attr, None)


def _column_index(perm: torch.Tensor, block: int) -> torch.Tensor:
    return (perm[:, None] * block + torch.arange(block, device=perm.device)).reshape(-1)


def _block(model: nn.Module, consumer: Consumer, size: int) -> int:
    w = _tensor(model, consumer.module, "weight")
    assert w is not None
    return w.shape[1] // size if consumer.flattened else 1


@torch.no_grad()
def _permute_group(model: nn.Module, group: UnitGroup, perm: torch.Tensor) -> None:
    """Unit ``k`` of the group becomes old unit ``perm[k]`` everywhere (docs/method.md §3)."""
    for p in group.producers:
        for attr in ("weight", "bias"):
            t = _tensor(model, p.module, attr)
            if t is not None:
                t.data = t.index_select(0, perm.to(t.device))
    for bn in group.followers:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            t = _tensor(model, bn, attr)
            if t is not None:
                t.data = t.index_select(0, perm.to(t.device))
    for c in group.consumers:
        if c.fixed:
            continue
        w = _tensor(model, c.module, "weight")
        assert w is not None
        idx = _column_index(perm.to(w.device), _block(model, c, group.size))
        w.data = w.index_select(1, idx)


def _unit_shape(t: torch.Tensor, dim: int) -> list[int]:
    shape = [1] * t.dim()
    shape[dim] = -1
    return shape


@torch.no_grad()
def _flip_group(model: nn.Module, group: UnitGroup, signs: torch.Tensor) -> None:
    """Multiply unit ``k``'s incoming and outgoing weights by ``signs[k]`` (docs/method.md §4)."""
    for p in group.producers:
        for attr in ("weight", "bias"):
            t = _tensor(model, p.module, attr)
            if t is not None:
                t.mul_(signs.to(t).view(_unit_shape(t, 0)))
    for c in group.consumers:
        w = _tensor(model, c.module, "weight")
        assert w is not None and not c.fixed
        s = signs.to(w).repeat_interleave(_block(model, c, group.size))
        w.mul_(s.view(_unit_shape(w, 1)))


@torch.no_grad()
def _rescale_group(model: nn.Module, group: UnitGroup, c: torch.Tensor, bn_mode: str = "push") -> None:
    """Multiply unit ``k``'s incoming weights by ``c[k] > 0`` and compensate downstream.

    Incoming weights and bias scale by ``c``. A BatchNorm right after the producer gets
    running_mean * c, running_var * c^2 (its normalized output is unchanged, exactly up to eps);
    with ``bn_mode="push"`` (docs/method.md §2) its affine weight and bias also scale by ``c``, so the
    unit's output is multiplied by ``c`` and the consumers' input columns by ``1 / c``; with
    ``bn_mode="absorb"`` (or a BatchNorm without affine parameters) the BatchNorm absorbs the scale
    and the consumers are left alone. Without BatchNorm the consumers always get ``1 / c``.
    """
    (p,) = group.producers
    for attr in ("weight", "bias"):
        t = _tensor(model, p.module, attr)
        if t is not None:
            t.mul_(c.to(t).view(_unit_shape(t, 0)))
    out_factor = c
    if p.bn is not None:
        bn = model.get_submodule(p.bn)
        if bn.running_mean is not None:
            bn.running_mean.mul_(c.to(bn.running_mean))
            bn.running_var.mul_((c * c).to(bn.running_var))
        if bn.affine and bn_mode == "push":
            for t in (bn.weight, bn.bias):
                t.mul_(c.to(t))
        else:
            out_factor = torch.ones_like(c)
    for cons in group.consumers:
        if cons.fixed:
            continue
        w = _tensor(model, cons.module, "weight")
        assert w is not None
        inv = (1.0 / out_factor).to(w).repeat_interleave(_block(model, cons, group.size))
        w.mul_(inv.view(_unit_shape(w, 1)))


# --------------------------------------------------------------------------------------------------
# normalize (docs/method.md §2, Algorithm 1)


def _unit_norms(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    (p,) = group.producers
    w = _tensor(model, p.module, "weight")
    assert w is not None
    return torch.linalg.vector_norm(w.detach().flatten(1), dim=1, dtype=torch.float64)


BN_MODES = ("push", "absorb")


def normalize(model: nn.Module, *, bn_mode: str = "push") -> nn.Module:
    """Remove the positive-rescaling symmetry (docs/method.md §2, Algorithm 1). Returns a new model.

    Bottom-up over the unit groups: every rescalable hidden unit ``k`` gets ``n_k = ||w_k||`` (its
    incoming weights, bias excluded) and is rescaled by ``c = 1 / n_k``: incoming weights and bias
    times ``c``, a following BatchNorm as in :func:`_rescale_group`, the next layer's input columns
    (through a flatten: all columns of that channel) times ``n_k``. Layer ``l + 1``'s norms are taken
    after layer ``l``'s scale was pushed into it. Finally the last layer (weights and bias) is
    scaled so that ``||W_L||_F = sqrt(H_L)``, which multiplies all logits by one positive factor.

    Residual streams and units behind a nonlinearity-then-BatchNorm are not rescaled (their scale
    cannot legally move); they stay free parameters (see :func:`sphere_blocks`). Binary networks
    have no scale symmetry (docs/method.md §4): they are returned as an unchanged copy.
    Units with an all-zero weight vector (n_k = 0) are left as they are.

    ``bn_mode`` (the paper is silent on the detail): ``"push"`` (default, docs/method.md §2) scales a
    following BatchNorm's affine weight and bias with the unit and pushes ``n_k`` into the next
    layer; ``"absorb"`` lets the BatchNorm absorb the scale (only its running statistics change), so
    the BatchNorm affine parameters and the next layer stay as they are.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode={bn_mode!r} is not one of {list(BN_MODES)}")
    graph = unit_graph(model)
    new = copy.deepcopy(model)
    if graph.binary:
        return new
    for group in graph.groups:
        if group.output:
            if len(group.producers) != 1 or group.producers[0].bn is not None:
                continue
            (p,) = group.producers
            w = _tensor(new, p.module, "weight")
            assert w is not None
            norm = float(torch.linalg.vector_norm(w.detach(), dtype=torch.float64))
            if norm > 0:
                factor = math.sqrt(w.shape[0]) / norm
                with torch.no_grad():
                    for attr in ("weight", "bias"):
                        t = _tensor(new, p.module, attr)
                        if t is not None:
                            t.mul_(factor)
        elif group.rescalable:
            norms = _unit_norms(new, group)
            c = torch.where(norms > 0, 1.0 / norms.clamp_min(1e-300), torch.ones_like(norms))
            _rescale_group(new, group, c, bn_mode)
    return new


def sphere_blocks(model: nn.Module) -> list[SphereBlock]:
    """The weight tensors that live on spheres after :func:`normalize` (docs/method.md §2).

    One per-unit block (radius 1) for the producer weight of every rescalable hidden group, and
    one whole-tensor block of radius ``sqrt(H_L)`` for the last layer's weight. Every other floating
    ``state_dict`` entry (biases, BatchNorm affine, residual-stream convolutions) is a free
    parameter. Binary networks return ``[]`` (they are not normalized; docs/method.md §4).
    """
    graph = unit_graph(model)
    if graph.binary:
        return []
    blocks = []
    for g in graph.groups:
        if g.output and len(g.producers) == 1 and g.producers[0].bn is None:
            w = _tensor(model, g.producers[0].module, "weight")
            assert w is not None
            blocks.append(SphereBlock(f"{g.producers[0].module}.weight", False, math.sqrt(w.shape[0]), g.name))
        elif g.rescalable and not g.output:
            blocks.append(SphereBlock(f"{g.producers[0].module}.weight", True, 1.0, g.name))
    return blocks


# --------------------------------------------------------------------------------------------------
# align (docs/method.md §3, Algorithm 2; sec. 4 for binary networks)


def _unit_rows(model: nn.Module, p: Producer) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened incoming weights of the producer's units and the factors making them unit vectors
    (binary producers: the +-1 weights, factor 1 / sqrt(fan-in))."""
    w = _tensor(model, p.module, "weight")
    assert w is not None
    rows = w.detach().flatten(1)
    if p.binary:
        rows = torch.where(rows >= 0, 1.0, -1.0).to(rows.dtype)
        return rows, torch.full((rows.shape[0],), 1.0 / math.sqrt(rows.shape[1]), dtype=rows.dtype)
    return rows, 1.0 / torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-30)


def _similarity(reference: nn.Module, model: nn.Module, p: Producer) -> torch.Tensor:
    """Cosine similarity ``C[i, j]`` of reference unit ``i`` and model unit ``j`` (docs/method.md §3)."""
    ra, fa = _unit_rows(reference, p)
    rb, fb = _unit_rows(model, p)
    return (ra @ rb.T) * fa[:, None] * fb.to(fa)[None, :]


def _check_same_structure(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError(
            "the two models have different architectures (state_dict keys or shapes differ); "
            "alignment needs two networks of the same architecture"
        )


def align_permutations(
    reference: nn.Module, model: nn.Module, *, max_sweeps: int = 5
) -> tuple[nn.Module, dict[str, UnitMatch]]:
    """Align ``model`` to ``reference`` (docs/method.md §3, Algorithm 2; sec. 4). Returns a new model
    and, per unit group, the :class:`UnitMatch` applied.

    Bottom-up over the hidden groups: ``C[i, j]`` = cosine similarity between the flattened
    incoming weights of reference unit ``i`` and model unit ``j`` (biases ignored; computed
    explicitly, so the inputs need not be normalized; for normalized networks it is the plain dot
    product of the paper); ``perm = linear_sum_assignment(C, maximize=True)``; the model's units
    are permuted (rows, biases, BatchNorm parameters and running statistics) and so are the next
    layers' inputs (through a flatten: whole channel blocks). The last layer is never permuted.

    Binary networks (sec. 4): ``C`` is the overlap of the +-1 weights, matching is on ``|C|`` and
    unit ``k`` is flipped (incoming and outgoing weights) when ``C[k, perm[k]] < 0``; groups whose
    flip is not a symmetry (the committee machine's fixed +1 read-out) match on ``C``.

    Residual networks (a Toroid extension, Git Re-Basin style): all layers writing into one
    residual stream share one permutation, found from the summed similarity matrices. A stream's
    later writers read groups that are themselves aligned only after the stream, so the first
    sweep uses the writers whose inputs are already aligned, and further sweeps (at most
    ``max_sweeps``) re-solve every group with all writers until nothing changes. Networks without
    such cycles are aligned in exactly one bottom-up sweep, as in the paper.
    """
    _check_same_structure(reference, model)
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps must be >= 1, got {max_sweeps}")
    graph = unit_graph(reference)
    new = copy.deepcopy(model)
    binary = graph.binary
    active = [i for i, g in enumerate(graph.groups) if g.permutable and not g.output and g.size > 1]
    done = {i for i, g in enumerate(graph.groups) if i not in active}
    result: dict[str, UnitMatch] = {}
    totals: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    for sweep in range(max_sweeps):
        changed = False
        skipped = False
        for i in active:
            group = graph.groups[i]
            producers = group.producers
            if sweep == 0:
                producers = [p for p in producers if p.input_group is None or p.input_group in done]
                skipped |= len(producers) < len(group.producers)
                if not producers:
                    continue
            sim = None
            for p in producers:
                term = _similarity(reference, new, p)
                sim = term if sim is None else sim + term
            assert sim is not None
            sim_np = sim.double().cpu().numpy() / len(producers)
            flip = binary and group.flippable
            _, cols = linear_sum_assignment(np.abs(sim_np) if flip else sim_np, maximize=True)
            matched = sim_np[np.arange(group.size), cols]
            signs = np.where(matched < 0, -1, 1).astype(np.int64) if flip else None
            perm_t = torch.as_tensor(cols, dtype=torch.long)
            is_identity = bool(np.all(cols == np.arange(group.size))) and (signs is None or bool(np.all(signs > 0)))
            if not is_identity:
                changed = True
                _permute_group(new, group, perm_t)
                if signs is not None:
                    _flip_group(new, group, torch.as_tensor(signs, dtype=torch.float64))
            prev_perm, prev_signs = totals.get(i, (np.arange(group.size), None))
            total_perm = prev_perm[cols]
            if signs is None:
                total_signs = prev_signs
            else:
                base = np.ones(group.size, dtype=np.int64) if prev_signs is None else prev_signs[cols]
                total_signs = base * signs
            totals[i] = (total_perm, total_signs)
            result[group.name] = UnitMatch(
                total_perm, total_signs, float(np.abs(matched).mean() if flip else matched.mean())
            )
            done.add(i)
        if sweep == 0 and not skipped:  # no residual cycles: the paper's single bottom-up pass
            break
        if sweep > 0 and not changed:
            break
    return new, result


def align(reference: nn.Module, model: nn.Module, *, max_sweeps: int = 5) -> nn.Module:
    """``model`` aligned to ``reference``: a new model (see :func:`align_permutations`)."""
    return align_permutations(reference, model, max_sweeps=max_sweeps)[0]


# --------------------------------------------------------------------------------------------------
# explicit symmetry moves (for tests, benchmarks and demonstrations)


def apply_symmetry(
    model: nn.Module,
    permutations: Mapping[str, Any] | None = None,
    signs: Mapping[str, Any] | None = None,
    scales: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Apply symmetry moves to named unit groups; returns a new model computing the same function.

    ``permutations[g]``: new unit ``k`` = old unit ``perm[k]``; ``signs[g]``: +-1 per unit (only for
    groups where a flip is a symmetry); ``scales[g]``: positive factor per unit (only rescalable
    groups). Raises ``ValueError`` for moves that are not symmetries of that group.
    """
    graph = unit_graph(model)
    new = copy.deepcopy(model)
    names = {g.name: g for g in graph.groups}
    for kind, moves in (("permutations", permutations), ("signs", signs), ("scales", scales)):
        for name in moves or {}:
            if name not in names:
                raise ValueError(f"{kind}: no unit group {name!r}; groups: {sorted(names)}")
    for group in graph.groups:
        if scales and group.name in scales:
            if not group.rescalable:
                raise ValueError(f"group {group.name!r}: positive rescaling is not a symmetry there")
            c = torch.as_tensor(np.asarray(scales[group.name], dtype=np.float64))
            if c.shape != (group.size,) or not bool((c > 0).all()):
                raise ValueError(f"scales[{group.name!r}] must hold {group.size} positive factors")
            _rescale_group(new, group, c)
        if permutations and group.name in permutations:
            if not group.permutable or group.output:
                raise ValueError(f"group {group.name!r} cannot be permuted (last layer or fixed input)")
            perm = np.asarray(permutations[group.name], dtype=np.int64)
            if sorted(perm.tolist()) != list(range(group.size)):
                raise ValueError(f"permutations[{group.name!r}] is not a permutation of {group.size} units")
            _permute_group(new, group, torch.as_tensor(perm))
        if signs and group.name in signs:
            if not (group.flippable and graph.binary):
                raise ValueError(f"group {group.name!r}: sign flips are not a symmetry there")
            s = np.asarray(signs[group.name], dtype=np.float64)
            if s.shape != (group.size,) or not np.all(np.abs(s) == 1):
                raise ValueError(f"signs[{group.name!r}] must hold {group.size} values +-1")
            _flip_group(new, group, torch.as_tensor(s))
    return new


def random_symmetry(
    model: nn.Module,
    seed: int = 0,
    *,
    permute: bool = True,
    flip: bool = True,
    rescale: tuple[float, float] | None = None,
) -> tuple[nn.Module, dict[str, dict[str, list]]]:
    """A random element of the symmetry group applied to ``model`` (same function, new parameters).

    Every permutable hidden group gets a random permutation; for binary networks every flippable
    group random signs (``flip``); with ``rescale=(low, high)`` every rescalable group random
    log-uniform positive factors. Returns the new model and the moves applied (JSON-able).
    """
    graph = unit_graph(model)
    rng = np.random.default_rng(seed)
    perms: dict[str, list[int]] = {}
    signs: dict[str, list[int]] = {}
    scales: dict[str, list[float]] = {}
    for g in graph.groups:
        if g.output:
            continue
        if permute and g.permutable:
            perms[g.name] = rng.permutation(g.size).tolist()
        if flip and graph.binary and g.flippable:
            signs[g.name] = rng.choice([-1, 1], size=g.size).tolist()
        if rescale is not None and g.rescalable:
            low, high = rescale
            scales[g.name] = np.exp(rng.uniform(math.log(low), math.log(high), size=g.size)).tolist()
    new = apply_symmetry(model, perms, signs, scales)
    return new, {"permutations": perms, "signs": signs, "scales": scales}
