"""The unit graph of a network: which hidden units move together under its symmetries.

docs/method.md §1. An ordinary ``nn.Module`` is traced with ``torch.fx`` and every node is handled
by ONE table of per-operation handlers (``MODULE_HANDLERS`` for leaf modules, ``FUNCTION_HANDLERS``
for functions and tensor methods), in the spirit of ZipIt's merge engine: a Linear / Conv
*produces* a new group of hidden units and *consumes* the group its input carries; BatchNorm and
LayerNorm *follow* the group; activations, pooling, flatten and sign pass it through while
recording whether they commute with positive rescaling / sign flips; a residual ``add`` merges two
groups into one residual stream (they must share one permutation). An operation the table does not
know does not stop the trace: the groups flowing into it are frozen (no symmetry of theirs is
removed), its output is opaque like data, and the graph names it (``UnitGraph.unsupported``).
A program exported with ``torch.export`` is read from its ATen graph instead
(:mod:`toroid.worker.landscape.graph_aten`, docs/method.md §1).

The graph also answers the questions that depend on the architecture alone: whether a network is
binary (:func:`is_binary`, docs/method.md §4), which weight tensors live on spheres once the scale
symmetry is removed (:func:`sphere_blocks`, docs/method.md §2), and which symmetries are removed,
in words (:func:`describe_symmetries`). The moves that act on the graph (normalize, align,
explicit symmetries) are in :mod:`toroid.worker.landscape.symmetry`.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape import graph_aten
from toroid.worker.landscape.graph_aten import is_exported
from toroid.worker.landscape.graph_units import (
    NOT_HOMOGENEOUS,
    NOT_ODD,
    Builder,
    Consumer,
    Producer,
    ResidualAdd,
    SphereBlock,
    UnitGraph,
    UnitGroup,
    Unsupported,
    scale_reason,
)
from toroid.worker.landscape.nets import BinaryConv2d, BinaryLinear, CommitteeOutput, Sign

__all__ = [
    "FUNCTION_HANDLERS",
    "MODULE_HANDLERS",
    "Consumer",
    "Producer",
    "SphereBlock",
    "UnitGraph",
    "UnitGroup",
    "describe_symmetries",
    "is_binary",
    "is_exported",
    "sphere_blocks",
    "unit_graph",
]

# --------------------------------------------------------------------------------------------------
# tracing: the per-operation handler table


@dataclass(frozen=True)
class _Flow:
    """What a traced value carries along its channel dimension (dim 1)."""

    group: int | None = None  # unit group of the channels (None: data, or not a feature map)
    fresh: Producer | None = None  # the raw output of this producer (no op applied yet)
    flattened: bool = False
    scale_why: str | None = None  # why a positive per-unit scale does not reach the consumers (None: it does)
    flip_why: str | None = None  # why a sign flip does not (None: all ops since the producer are odd)
    param: str | None = None  # a parameter / buffer read with get_attr


def _label(name: str, obj: Any) -> str:
    """How the notes name an operation: ``GELU 'act'`` for a module, ``gelu (node 'gelu')`` otherwise."""
    if isinstance(obj, fx.Node):
        return f"{_target_name(obj.target)} (node {name!r})"
    if isinstance(obj, nn.Module):
        return f"{type(obj).__name__} {name!r}"
    return repr(name)


_MODULE_ALIASES = {
    "torch._C._fft": "torch.fft",
    "torch._C._nn": "torch.nn.functional",
    "torch._C._linalg": "torch.linalg",
    "torch._C._special": "torch.special",
    "_operator": "operator",
}


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return f"Tensor.{target}"
    module = getattr(target, "__module__", None) or ""
    module = _MODULE_ALIASES.get(module, "torch" if module.startswith("torch._C") else module)
    name = getattr(target, "__name__", str(target))
    if module == "torch.fft" and name.startswith("fft_"):
        name = name[4:]
    return f"{module}.{name}" if module else name


def _consume(b: Builder, flow: _Flow, consumer: Consumer, in_size: int) -> None:
    if flow.group is None:
        return
    group = b.root(flow.group)
    if flow.flattened:
        if in_size % group.size:
            raise Unsupported(f"it reads {in_size} flattened inputs from group {group.name!r} of {group.size} units")
    elif in_size != group.size:
        raise Unsupported(f"it reads {in_size} inputs but group {group.name!r} has {group.size} units")
    consumer.flattened = flow.flattened
    b.attach(flow.group, consumer, flow.scale_why, flow.flip_why)


def _h_producer(b: Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    if isinstance(module, nn.Linear):
        n_in, n_out = module.in_features, module.out_features
    else:
        assert isinstance(module, nn.modules.conv._ConvNd)
        if module.groups != 1 or module.transposed:
            raise Unsupported("grouped and transposed convolutions are not in the unit graph")
        n_in, n_out = module.in_channels, module.out_channels
    flow = flows[0]
    _consume(b, flow, Consumer(name), n_in)
    binary = bool(getattr(module, "binary", False))
    producer = Producer(name, flow.group, binary=binary, bias="bias" if module.bias is not None else None)
    gid = b.new_group(name, n_out, producer)
    return _Flow(group=gid, fresh=producer)


def _h_batchnorm(b: Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    flow = flows[0]
    if flow.group is None:
        return _Flow()
    group = b.root(flow.group)
    if module.num_features != group.size:
        raise Unsupported(f"it has {module.num_features} features, group {group.name!r} {group.size} units")
    group.followers.append(name)
    if flow.fresh is not None and flow.fresh.bn is None:
        flow.fresh.bn = name
    else:  # BN after a nonlinearity or on a residual stream: the scale cannot move through it
        b.restrict(flow.group, f"{_label(name, module)} does not directly follow the producer: the scale cannot "
                   "move through it", scale=True)
    flip = f"{_label(name, module)}: its shift is not odd (no sign flips)"
    return _Flow(group=flow.group, flattened=flow.flattened, scale_why=flow.scale_why, flip_why=flow.flip_why or flip)


def _follow_norm(b: Builder, name: str, obj: Any, flow: _Flow, follower: str | None, first_dim: int) -> _Flow:
    """LayerNorm / RMSNorm over the units: permutation-equivariant, its weight and bias follow the
    units; it normalizes across them, so per-unit scale and sign are not symmetries."""
    if flow.group is None:
        return _Flow()
    group = b.root(flow.group)
    if flow.flattened or first_dim != group.size:
        raise Unsupported(f"it normalizes over {first_dim} features, not the {group.size} units of {group.name!r}")
    if follower is not None:
        group.followers.append(follower)
    why = f"{_label(name, obj)} normalizes across the units: per-unit scale is not a symmetry (permutations only)"
    b.restrict(flow.group, why, scale=True, flip=True)
    return _Flow(group=flow.group, scale_why=why, flip_why=why)


def _h_layernorm(b: Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    shape = tuple(module.normalized_shape)
    affine = getattr(module, "weight", None) is not None or getattr(module, "bias", None) is not None
    follower = name if affine else None
    return _follow_norm(b, name, module, flows[0], follower, shape[0])


def _h_fn_layernorm(b: Builder, name: str, node: fx.Node, flows: list[_Flow]) -> _Flow:
    """``F.layer_norm(x, shape, weight, bias)`` with parameters ``<module>.weight`` / ``<module>.bias``."""
    args = [*node.args, None, None, None][:4]
    shape = node.kwargs.get("normalized_shape", args[1])
    modules = set()
    for i, attr in ((2, "weight"), (3, "bias")):
        value = node.kwargs.get(attr, args[i])
        if value is None:
            continue
        if not (isinstance(value, fx.Node) and value.op == "get_attr" and str(value.target).rpartition(".")[2] == attr):
            raise Unsupported("its weight and bias are not parameters named <module>.weight / <module>.bias")
        modules.add(str(value.target).rpartition(".")[0])
    if len(modules) > 1:
        raise Unsupported("its weight and bias belong to different modules")
    if not isinstance(shape, (int, tuple, list)):
        raise Unsupported("its normalized shape is not a constant")
    first = shape if isinstance(shape, int) else shape[0]
    return _follow_norm(b, name, node, flows[0], modules.pop() if modules else None, int(first))


def _passthrough(scale: str | None, flip: str | None) -> Callable[..., _Flow]:
    """An elementwise operation; ``scale`` / ``flip``: why it does not commute with a positive
    per-unit scale / a sign flip (None: it does)."""

    def handler(b: Builder, name: str, obj: Any, flows: list[_Flow]) -> _Flow:
        flow = flows[0]
        return _Flow(
            group=flow.group,
            flattened=flow.flattened,
            scale_why=scale_reason(flow.scale_why, f"{_label(name, obj)}: {scale}" if scale else None),
            flip_why=flow.flip_why or (f"{_label(name, obj)}: {flip}" if flip else None),
        )

    return handler


def _h_hardtanh(b: Builder, name: str, obj: Any, flows: list[_Flow]) -> _Flow:
    """Hardtanh / ReLU6 / clamp saturate (not homogeneous); odd only for symmetric bounds."""
    if isinstance(obj, nn.Module):
        low, high = obj.min_val, obj.max_val
    elif obj.target in (F.relu6, "relu6"):
        low, high = 0.0, 6.0
    else:
        args = [*obj.args, None, None][1:3]
        default = (None, None) if obj.target in (torch.clamp, "clamp") else (-1.0, 1.0)  # F.hardtanh's bounds
        low = obj.kwargs.get("min_val", obj.kwargs.get("min", default[0] if args[0] is None else args[0]))
        high = obj.kwargs.get("max_val", obj.kwargs.get("max", default[1] if args[1] is None else args[1]))
    if low == 0 and high is None:  # clamp(x, min=0) is ReLU
        return _RELU(b, name, obj, flows)
    odd = isinstance(low, (int, float)) and isinstance(high, (int, float)) and low == -high
    return _passthrough(NOT_HOMOGENEOUS, None if odd else NOT_ODD)(b, name, obj, flows)


def _h_mixing(b: Builder, name: str, obj: Any, flows: list[_Flow]) -> _Flow:
    """Softmax / log-softmax: permutation-equivariant, but no per-unit scale or sign symmetry."""
    flow = flows[0]
    if flow.group is None:
        return _Flow()
    why = f"{_label(name, obj)}: not positively homogeneous, permutations only"
    b.restrict(flow.group, why, scale=True, flip=True)
    return _Flow(group=flow.group, flattened=flow.flattened, scale_why=why, flip_why=why)


def _h_flatten(b: Builder, name: str, module: Any, flows: list[_Flow]) -> _Flow:
    flow = flows[0]
    return _Flow(group=flow.group, flattened=True, scale_why=flow.scale_why, flip_why=flow.flip_why)


def _h_committee(b: Builder, name: str, module: nn.Module, flows: list[_Flow]) -> _Flow:
    assert isinstance(module, CommitteeOutput)
    _consume(b, flows[0], Consumer(name, fixed=True), module.units)
    return _Flow()


def _h_add(b: Builder, name: str, obj: Any, flows: list[_Flow]) -> _Flow:
    tensors = [f for f in flows if f is not None]
    if not tensors:
        return _Flow()
    if len(tensors) < 2:  # adding a constant: the units keep their identity but lose scale/sign freedom
        x = tensors[0]
        why = f"{_label(name, obj)} adds a constant"
        return _Flow(group=x.group, flattened=x.flattened, scale_why=scale_reason(x.scale_why, why),
                     flip_why=x.flip_why or why)
    x, y = tensors[0], tensors[1]
    if x.group is None or y.group is None:
        for f in (x, y):
            if f.group is not None:
                b.freeze(f.group, f"{_label(name, obj)} adds a tensor that is not a unit group: not permuted, "
                         "rescaled or flipped")
        return _Flow()
    if x.flattened != y.flattened:
        raise Unsupported("it adds flattened and unflattened inputs")
    gid = b.union(x.group, y.group)
    added = ResidualAdd(f"{_label(name, obj)}: residual add")
    return _Flow(group=gid, flattened=x.flattened, scale_why=scale_reason(x.scale_why, y.scale_why, added),
                 flip_why=x.flip_why or y.flip_why)


def _h_ignore(b: Builder, name: str, module: Any, flows: list[_Flow]) -> None:
    return None


def _h_getitem(b: Builder, name: str, node: Any, flows: list[_Flow]) -> None:
    if flows[0] is not None:
        raise Unsupported("indexing a tensor")
    return None  # an element of a shape


_RELU = _passthrough(None, NOT_ODD)
_MAXPOOL = _passthrough(None, "max pooling is not odd (max(-x) = -min(x))")
_LINEAR_OP = _passthrough(None, None)  # average pooling, dropout, identity: linear, commutes with both
_SMOOTH = _passthrough(NOT_HOMOGENEOUS, NOT_ODD)  # GELU, SiLU, sigmoid, ...
_ODD = _passthrough(NOT_HOMOGENEOUS, None)  # tanh, softsign: odd but not homogeneous
# sign(c x) = sign(x): a positive scale does not pass through to the consumers
_SIGN = _passthrough("sign(c x) = sign(x): the scale does not reach the consumers", None)

# One table: module type -> handler. Lookup walks the module's MRO, so BinaryLinear uses the
# Linear handler (its ``binary`` attribute marks it), ReLU6 the Hardtanh one, and subclasses of the
# torch layers work.
MODULE_HANDLERS: dict[type, Callable[..., _Flow]] = {
    nn.Linear: _h_producer,
    nn.Conv1d: _h_producer,
    nn.Conv2d: _h_producer,
    nn.Conv3d: _h_producer,
    nn.BatchNorm1d: _h_batchnorm,
    nn.BatchNorm2d: _h_batchnorm,
    nn.BatchNorm3d: _h_batchnorm,
    nn.LayerNorm: _h_layernorm,
    nn.RMSNorm: _h_layernorm,
    nn.ReLU: _RELU,
    nn.LeakyReLU: _RELU,  # positively homogeneous for any slope
    nn.Hardtanh: _h_hardtanh,
    nn.GELU: _SMOOTH,
    nn.SiLU: _SMOOTH,
    nn.Sigmoid: _SMOOTH,
    nn.ELU: _SMOOTH,
    nn.SELU: _SMOOTH,
    nn.CELU: _SMOOTH,
    nn.Softplus: _SMOOTH,
    nn.Mish: _SMOOTH,
    nn.Hardswish: _SMOOTH,
    nn.Hardsigmoid: _SMOOTH,
    nn.Tanh: _ODD,
    nn.Softsign: _ODD,
    nn.Softmax: _h_mixing,
    nn.LogSoftmax: _h_mixing,
    nn.MaxPool1d: _MAXPOOL,
    nn.MaxPool2d: _MAXPOOL,
    nn.MaxPool3d: _MAXPOOL,
    nn.AdaptiveMaxPool1d: _MAXPOOL,
    nn.AdaptiveMaxPool2d: _MAXPOOL,
    nn.AvgPool1d: _LINEAR_OP,
    nn.AvgPool2d: _LINEAR_OP,
    nn.AvgPool3d: _LINEAR_OP,
    nn.AdaptiveAvgPool1d: _LINEAR_OP,
    nn.AdaptiveAvgPool2d: _LINEAR_OP,
    nn.AdaptiveAvgPool3d: _LINEAR_OP,
    nn.Dropout: _LINEAR_OP,
    nn.Dropout1d: _LINEAR_OP,
    nn.Dropout2d: _LINEAR_OP,
    nn.Identity: _LINEAR_OP,
    Sign: _SIGN,
    nn.Flatten: _h_flatten,
    CommitteeOutput: _h_committee,
}

# Functions (call_function targets) and tensor methods (call_method names).
FUNCTION_HANDLERS: dict[Any, Callable[..., _Flow | None]] = {
    F.relu: _RELU,
    torch.relu: _RELU,
    "relu": _RELU,
    F.leaky_relu: _RELU,
    F.hardtanh: _h_hardtanh,
    F.relu6: _h_hardtanh,
    torch.clamp: _h_hardtanh,
    "clamp": _h_hardtanh,
    F.gelu: _SMOOTH,
    F.silu: _SMOOTH,
    F.elu: _SMOOTH,
    F.selu: _SMOOTH,
    F.softplus: _SMOOTH,
    F.mish: _SMOOTH,
    F.hardswish: _SMOOTH,
    F.hardsigmoid: _SMOOTH,
    torch.sigmoid: _SMOOTH,
    "sigmoid": _SMOOTH,
    torch.tanh: _ODD,
    "tanh": _ODD,
    F.softsign: _ODD,
    F.softmax: _h_mixing,
    F.log_softmax: _h_mixing,
    torch.softmax: _h_mixing,
    torch.log_softmax: _h_mixing,
    "softmax": _h_mixing,
    "log_softmax": _h_mixing,
    F.layer_norm: _h_fn_layernorm,
    F.max_pool1d: _MAXPOOL,
    F.max_pool2d: _MAXPOOL,
    F.max_pool3d: _MAXPOOL,
    F.avg_pool1d: _LINEAR_OP,
    F.avg_pool2d: _LINEAR_OP,
    F.avg_pool3d: _LINEAR_OP,
    F.adaptive_avg_pool1d: _LINEAR_OP,
    F.adaptive_avg_pool2d: _LINEAR_OP,
    F.adaptive_avg_pool3d: _LINEAR_OP,
    F.dropout: _LINEAR_OP,
    "contiguous": _LINEAR_OP,
    torch.sign: _SIGN,
    "sign": _SIGN,
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
    operator.getitem: _h_getitem,
}

# Handlers that read parameters (get_attr values) in a known role; any other use of a parameter
# makes it foreign: the groups whose moves touch it keep all their symmetries.
_PARAM_AWARE = (_h_fn_layernorm, _h_ignore)


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


def _layout_problem(node: fx.Node, module: nn.Module | None) -> str | None:
    """Only flattening from dim 1 (keeping the batch dim) is a legal channel -> block map."""
    if module is not None:
        return "only Flatten(start_dim=1) is in the unit graph" if isinstance(module, nn.Flatten) and \
            module.start_dim != 1 else None
    if node.target in (torch.flatten, "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        if start != 1:
            return "only flatten(x, 1) is in the unit graph"
    elif node.target in ("view", "reshape"):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if len(shape) != 2 or shape[1] != -1:
            return "only x.view(batch, -1) / x.reshape(batch, -1) is in the unit graph"
    return None


def _build_graph(model: nn.Module) -> UnitGraph:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from exc
    modules = dict(model.named_modules())
    b = Builder(is_binary(model), "torch.fx")
    flows: dict[fx.Node, _Flow | None] = {}
    outputs: list[int] = []

    def flow_of(a: Any) -> _Flow | None:
        return flows.get(a) if isinstance(a, fx.Node) else None

    for node in graph.nodes:
        if node.op == "placeholder":
            flows[node] = _Flow()
        elif node.op == "get_attr":
            flows[node] = _Flow(param=str(node.target))
        elif node.op in ("call_module", "call_function", "call_method"):
            inputs: list[fx.Node] = []
            fx.node.map_arg((node.args, node.kwargs), inputs.append)
            in_flows = [f for f in (flows.get(n) for n in inputs) if f is not None]
            module = modules[node.target] if node.op == "call_module" else None
            handler = _module_handler(module) if module is not None else FUNCTION_HANDLERS.get(node.target)
            name, obj = (node.target, module) if module is not None else (node.name, node)
            positional = list(node.args) or list(node.kwargs.values())[:1]  # f(input=x): x first
            args = [flow_of(a) for a in (positional[:1] if module is not None else positional)]
            try:
                if handler is None:
                    raise Unsupported(None)
                problem = _layout_problem(node, module)
                if problem:
                    raise Unsupported(problem)
                if handler not in (_h_add, _h_ignore, _h_getitem):
                    first = positional[0] if positional else None
                    if any(f is not None and f.group is not None for n, f in zip(inputs, map(flows.get, inputs),
                                                                                 strict=True) if n is not first):
                        raise Unsupported("an input other than the first carries units")
                    if not args or args[0] is None:
                        flows[node] = _Flow()  # an operation on non-tensor values
                        continue
                flows[node] = handler(b, name, obj, args)
                if handler not in _PARAM_AWARE:
                    for f in in_flows:
                        if f.param is not None:
                            b.foreign.setdefault(f.param, f"{node.name!r} calls {_target_name(node.target)!r}")
            except Unsupported as exc:
                what = f"{type(module).__name__} module" if module is not None else _target_name(node.target)
                b.unsupported_op(f"{node.name!r} calls {what!r}", exc.args[0] if exc.args else None,
                                 [f.group for f in in_flows if f.group is not None],
                                 [f.param for f in in_flows if f.param is not None], record=handler is not None)
                flows[node] = _Flow()
        elif node.op == "output":
            returned: list[fx.Node] = []
            fx.node.map_arg(node.args, returned.append)
            outputs += [f.group for f in (flows.get(n) for n in returned) if f is not None and f.group is not None]
    return b.finish(outputs)


# --------------------------------------------------------------------------------------------------
# the cached graph of a model


_GRAPH_CACHE: dict[tuple, UnitGraph] = {}
_GRAPH_LOCK = threading.Lock()


def _structure_key(model: nn.Module) -> tuple:
    """Everything the unit graph depends on. A GraphModule (an fx trace or an exported program)
    adds its generated code and input shapes: two of them with the same parameters but different
    graphs never share a cached graph."""
    cls = type(model)
    mods = tuple((n, type(m).__qualname__) for n, m in model.named_modules())
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    key: tuple = (cls.__module__, cls.__qualname__, mods, shapes)
    if isinstance(model, fx.GraphModule):
        placeholders = [n for n in model.graph.nodes if n.op == "placeholder"]
        inputs = tuple(str(getattr(n.meta.get("val"), "shape", None)) for n in placeholders)
        key += (model.code, inputs)
    return key


def unit_graph(model: nn.Module) -> UnitGraph:
    """The unit graph of ``model`` (cached per model structure).

    Ordinary modules are traced with torch.fx; exported programs (``ExportedProgram.module()``,
    :func:`is_exported`) are read from their ATen graph (docs/method.md §1). Returns a fresh copy
    each call, so callers may modify it. Raises ``ValueError`` only when the model cannot be traced
    at all (Python control flow on tensor values); operations the tables do not know are named in
    ``UnitGraph.unsupported`` and their inputs keep all their symmetries.
    """
    key = _structure_key(model)
    with _GRAPH_LOCK:
        cached = _GRAPH_CACHE.get(key)
    if cached is None:
        cached = graph_aten.build_aten_graph(model) if is_exported(model) else _build_graph(model)
        with _GRAPH_LOCK:
            _GRAPH_CACHE[key] = cached
    return copy.deepcopy(cached)


def describe_symmetries(model: nn.Module) -> dict[str, Any]:
    """Which symmetries of ``model`` are removed, in a JSON-able form (docs/method.md §1).

    ``{"tracer", "binary", "groups": [{"name", "size", "producers", "followers", "output",
    "residual", "permuted", "rescaled", "flipped", "reasons"}], "unsupported": [...],
    "summary": {"hidden_groups", "permuted", "rescaled", "flipped", "unsupported_ops"}}``;
    see :meth:`UnitGraph.describe`.
    """
    return unit_graph(model).describe()


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
            p = g.producers[0]
            w = getattr(model.get_submodule(p.module), p.weight)
            blocks.append(SphereBlock(p.weight_name, False, math.sqrt(w.shape[0]), g.name))
        elif g.rescalable and not g.output:
            blocks.append(SphereBlock(g.producers[0].weight_name, True, 1.0, g.name))
    return blocks

