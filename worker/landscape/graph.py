"""The unit graph of a network: which hidden units move together under its symmetries.

docs/method.md §1. The model is traced with ``torch.fx`` and every node is handled by ONE
table of per-operation handlers (``MODULE_HANDLERS`` for leaf modules, ``FUNCTION_HANDLERS`` for
functions and tensor methods), in the spirit of ZipIt's merge engine: a Linear / Conv *produces* a
new group of hidden units and *consumes* the group its input carries; BatchNorm *follows* the
group; ReLU, pooling, flatten, sign pass it through while recording whether they commute with
positive rescaling / sign flips; a residual ``add`` merges two groups into one residual stream
(they must share one permutation). An operation the table does not know raises a ``ValueError``
naming it.

The graph also answers the questions that depend on the architecture alone: whether a network is
binary (:func:`is_binary`, docs/method.md §4) and which weight tensors live on spheres once the
scale symmetry is removed (:func:`sphere_blocks`, docs/method.md §2). The moves that act on the
graph (normalize, align, explicit symmetries) are in :mod:`toroid.worker.landscape.symmetry`.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.nets import BinaryConv2d, BinaryLinear, CommitteeOutput, Sign

__all__ = [
    "FUNCTION_HANDLERS",
    "MODULE_HANDLERS",
    "Consumer",
    "Producer",
    "SphereBlock",
    "UnitGraph",
    "UnitGroup",
    "is_binary",
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
    """A weight tensor living on spheres after normalization (docs/method.md §2).

    ``per_unit``: each slice along dim 0, flattened, is one hidden unit on the unit sphere.
    Otherwise the whole tensor is one vector on the sphere of radius ``sqrt(H_L)`` (the last layer).
    """

    param: str
    per_unit: bool
    radius: float
    group: str


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
    return UnitGraph(groups=groups, binary=is_binary(model))


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


# --------------------------------------------------------------------------------------------------
# properties of the graph


def is_binary(model: nn.Module) -> bool:
    """True when ``model`` has binary (sign-of-latent-weight) layers (docs/method.md §4)."""
    return any(getattr(m, "binary", False) for m in model.modules())


def sphere_blocks(model: nn.Module) -> list[SphereBlock]:
    """The weight tensors that live on spheres after
    :func:`~toroid.worker.landscape.symmetry.normalize` (docs/method.md §2).

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
            w = model.get_submodule(g.producers[0].module).weight
            blocks.append(SphereBlock(f"{g.producers[0].module}.weight", False, math.sqrt(w.shape[0]), g.name))
        elif g.rescalable and not g.output:
            blocks.append(SphereBlock(f"{g.producers[0].module}.weight", True, 1.0, g.name))
    return blocks
