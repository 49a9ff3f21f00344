"""The unit graph of an exported program, read from its ATen graph (docs/method.md §1).

``torch.export.export(model, args).module()`` is a ``GraphModule`` whose nodes call ATen operator
overloads (``aten.linear.default``, ``aten.conv2d.default``, ``aten.batch_norm.default``, ...)
on parameters read with ``get_attr`` (``conv1.weight``) under plain containers with the original
module names. Every node carries its output shape (``node.meta["val"]``), so this builder knows
exactly which dimension holds the units (channels: dim 1 of a feature map; the last dim of a
Linear on ``(B, T, D)`` tokens) and how a view / reshape / flatten lays them out: each unit is a
block of ``block`` consecutive entries of that dimension.

One table, ``ATEN_HANDLERS`` (operator overload packet -> handler), in the style of the module
tracer's: Linear-like and convolution producers, BatchNorm and LayerNorm followers, activations
and pooling passing the units through (recording whether positive per-unit scale and sign flips
commute with them), residual adds merging groups, concatenations along the units feeding one
layer from several groups. An operation the table does not know freezes the groups flowing into
it and makes its output opaque (docs/method.md §1, "Operations outside the table").
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx

from toroid.worker.landscape.graph_aten_values import (
    BATCHNORM_PACKETS,
    Part,
    Traced,
    as_int,
    aten_packet,
    bind,
    has_exported_batchnorm,
    is_exported,
    merged_part,
    reshape_layout,
    shape_of,
    split_name,
)
from toroid.worker.landscape.graph_units import (
    NOT_HOMOGENEOUS,
    NOT_ODD,
    Builder,
    Consumer,
    Producer,
    UnitGraph,
    Unsupported,
)

__all__ = ["ATEN_HANDLERS", "build_aten_graph", "has_exported_batchnorm", "is_exported"]

# --------------------------------------------------------------------------------------------------
# the walk


class _Walk:
    """The builder, the traced values and the parameters each node claims in a known role."""

    def __init__(self, model: fx.GraphModule) -> None:
        self.model = model
        self.b = Builder(any(getattr(m, "binary", False) for m in model.modules()), "torch.export")
        self.state = dict(model.state_dict())
        self.flows: dict[fx.Node, Any] = {}
        self.claimed: set[str] = set()
        self.order = {n: i for i, n in enumerate(model.graph.nodes)}

    def flow(self, x: Any) -> Traced | None:
        f = self.flows.get(x) if isinstance(x, fx.Node) else None
        return f if isinstance(f, Traced) else None

    def param(self, x: Any, *, transposed: bool = False, ndim: int | None = None) -> tuple[str, torch.Tensor] | None:
        """The parameter ``x`` reads (claimed), or None when ``x`` is None; Unsupported otherwise."""
        if x is None:
            return None
        f = self.flow(x)
        if f is None or f.param is None or f.transposed != transposed:
            raise Unsupported("a weight is not a parameter" + (" read through a transpose" if transposed else ""))
        value = self.state[f.param]
        if ndim is not None and value.dim() != ndim:
            raise Unsupported(f"parameter {f.param!r} has {value.dim()} dimensions, expected {ndim}")
        self.claimed.add(f.param)
        return f.param, value

    def label(self, node: fx.Node) -> str:
        return f"{getattr(node.target, 'overloadpacket', node.target)} (node {node.name!r})"

    def fallback(self, node: fx.Node, reason: str | None, *, known: bool = False) -> None:
        """An operation outside the table (``known``: in the table, but not in this configuration)."""
        inputs = _inputs(node)
        groups = [p.group for f in map(self.flow, inputs) if f is not None for p in f.parts if p.group is not None]
        params = [f.param for f in map(self.flow, inputs) if f is not None and f.param is not None]
        weights = any(self.state[p].dim() >= 2 for p in params)
        self.b.unsupported_op(f"{node.name!r} calls {str(node.target)!r}", reason, groups, params,
                              record=known or weights)
        val = node.meta.get("val")
        self.flows[node] = tuple(Traced() for _ in val) if isinstance(val, (tuple, list)) else Traced()

    def call(self, node: fx.Node) -> None:
        target = node.target
        handler = ATEN_HANDLERS.get(getattr(target, "overloadpacket", target))
        val = node.meta.get("val")
        has_tensor = isinstance(val, torch.Tensor) or (
            isinstance(val, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in val))
        if handler is None and not has_tensor and target is not operator.getitem:
            self.flows[node] = None  # shapes, assertions: no tensor, nothing moves
            return
        self.claimed = set()
        try:
            if handler is None:
                raise Unsupported(None)
            if handler in _UNARY and any(
                    (f := self.flow(x)) is not None and f.tracked for x in _inputs(node) if x is not _first(node)):
                raise Unsupported("an input other than the first carries units")
            out = handler(self, node)
        except Unsupported as exc:
            self.fallback(node, exc.args[0] if exc.args else None, known=handler is not None)
            return
        if isinstance(val, (tuple, list)) and isinstance(out, Traced):
            out = (out, *[Traced() for _ in val[1:]])
        self.flows[node] = out
        for f in map(self.flow, _inputs(node)):
            if f is not None and f.param is not None and f.param not in self.claimed:
                self.b.foreign.setdefault(f.param, f"{node.name!r} calls {str(target)!r}")


def _first(node: fx.Node) -> Any:
    """The operation's first argument (its input tensor), positional or by keyword."""
    return node.args[0] if node.args else next(iter(node.kwargs.values()), None)


def _op(node: fx.Node) -> str:
    """The operator's name, in-place variants as their functional one (``relu_`` -> ``relu``)."""
    name = node.target.overloadpacket.__name__
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def _inputs(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def build_aten_graph(model: fx.GraphModule) -> UnitGraph:
    """The unit graph of an exported program (docs/method.md §1): see the module docstring."""
    w = _Walk(model)
    outputs: list[int] = []
    for node in model.graph.nodes:
        if node.op == "placeholder":
            w.flows[node] = Traced()
        elif node.op == "get_attr":
            w.flows[node] = Traced(param=str(node.target)) if str(node.target) in w.state else Traced()
        elif node.op == "call_module":
            if str(node.target).startswith("_guards"):
                w.flows[node] = None
            else:
                w.fallback(node, "a submodule call inside an exported program")
        elif node.op == "call_function":
            w.call(node)
        elif node.op == "output":
            for f in map(w.flow, _inputs(node)):
                if f is not None:
                    outputs += [p.group for p in f.parts if p.group is not None]
    return w.b.finish(outputs)


# --------------------------------------------------------------------------------------------------
# handlers: producers


def _producer(w: _Walk, node: fx.Node, x: Any, weight: tuple[str, torch.Tensor], bias: Any, in_dim: int,
              out_dim: int, conv: bool = False) -> Traced:
    """A layer whose output units are the rows of ``weight``; it consumes the units of ``x`` along
    ``in_dim`` (weight dim 1). ``out_dim``: where its units lie in its output."""
    wname, wt = weight
    module, wattr = split_name(wname)
    battr = None
    if bias is not None:
        bname, bt = w.param(bias)
        if split_name(bname)[0] != module or tuple(bt.shape) != (wt.shape[0],):
            raise Unsupported(f"its bias {bname!r} does not belong to {wname!r}")
        battr = split_name(bname)[1]
    flow = w.flow(x)
    input_group = None
    if flow is not None and flow.tracked:
        shape = shape_of(x)
        if flow.dim != in_dim % len(shape) or as_int(shape[flow.dim]) != wt.shape[1] or (conv and flow.block != 1):
            raise Unsupported(f"it does not read the units of its input along the dimension of {wname!r}")
        offset = 0
        for part in flow.parts:
            if part.group is not None:
                cons = Consumer(module, flattened=flow.flattened or flow.block > 1, weight=wattr, block=flow.block,
                                offset=offset * flow.block)
                w.b.attach(part.group, cons, part.scale_why, part.flip_why)
                input_group = part.group if input_group is None else max(input_group, part.group)
            offset += part.size
    producer = Producer(module, input_group, weight=wattr, bias=battr)
    gid = w.b.new_group(module if wattr == "weight" and module else wname, wt.shape[0], producer)
    return Traced(parts=(Part(gid, wt.shape[0], fresh=producer),), dim=out_dim % len(shape_of(node)))


def _h_linear(w: _Walk, node: fx.Node) -> Traced:
    a = bind(node)
    return _producer(w, node, a["input"], w.param(a["weight"], ndim=2), a["bias"], -1, -1)


def _h_matmul(w: _Walk, node: fx.Node) -> Traced:
    """``addmm(b, x, W.t())``, ``mm(x, W.t())``, ``matmul(x, W.t())``: a Linear after decompositions."""
    a = bind(node)
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
        raise Unsupported("scaled addmm")
    x = a["mat1"] if "mat1" in a else a["self"]
    weight = a["mat2"] if "mat2" in a else a["other"]
    return _producer(w, node, x, w.param(weight, transposed=True, ndim=2), a["self"] if "mat1" in a else None, -1, -1)


def _h_conv(w: _Walk, node: fx.Node) -> Traced:
    a = bind(node)
    if a.get("transposed") or a.get("groups", 1) != 1:
        raise Unsupported("grouped and transposed convolutions are not in the unit graph")
    weight = w.param(a["weight"])
    spatial = weight[1].dim() - 2
    ndim = len(shape_of(node))
    return _producer(w, node, a["input"], weight, a["bias"], ndim - spatial - 1, ndim - spatial - 1, conv=True)


# --------------------------------------------------------------------------------------------------
# handlers: followers


def _follower(w: _Walk, params: dict[str, Any]) -> str | None:
    """The module whose standard attributes (``weight``, ``bias``, ``running_mean``, ``running_var``)
    are the given parameters; None when there are none."""
    modules = set()
    for attr, x in params.items():
        p = w.param(x)
        if p is None:
            continue
        module, got = split_name(p[0])
        if got != attr:
            raise Unsupported(f"its parameter {p[0]!r} is not named <module>.{attr}")
        modules.add(module)
    if len(modules) > 1:
        raise Unsupported("its parameters belong to different modules")
    return modules.pop() if modules else None


def _single(w: _Walk, node: fx.Node, x: Any, dim: int) -> tuple[Traced, Part] | None:
    flow = w.flow(x)
    if flow is None or not flow.tracked:
        return None
    if len(flow.parts) != 1 or flow.block != 1 or flow.dim != dim % len(shape_of(x)):
        raise Unsupported("it does not normalize along the units of one group")
    return flow, flow.parts[0]


def _h_batchnorm(w: _Walk, node: fx.Node) -> Traced:
    a = bind(node)
    m = _follower(w, {k: a.get(k) for k in ("weight", "bias", "running_mean", "running_var")})
    found = _single(w, node, a["input"], 1 if len(shape_of(a["input"])) > 1 else 0)
    if found is None:
        return _with_stats(node, Traced(), m)
    flow, part = found
    group = w.b.root(part.group)
    sizes = {int(w.state[w.flow(a[k]).param].shape[0]) for k in ("weight", "running_mean") if a.get(k) is not None}
    if sizes and sizes != {group.size}:
        raise Unsupported(f"its {sizes.pop()} features are not the {group.size} units of group {group.name!r}")
    label = w.label(node)
    if m is None:
        w.b.restrict(part.group, f"{label} has neither affine parameters nor running statistics: the scale cannot "
                     "move through it", scale=True)
    else:
        group.followers.append(m)
        if part.fresh is not None and part.fresh.bn is None:
            part.fresh.bn = m
        else:  # BN after a nonlinearity or on a residual stream: the scale cannot move through it
            w.b.restrict(part.group, f"{label} does not directly follow the producer: the scale cannot move "
                         "through it", scale=True)
    out = replace(part, fresh=None, flip_why=part.flip_why or f"{label}: its shift is not odd (no sign flips)")
    return _with_stats(node, replace(flow, parts=(out,)), m)


def _with_stats(node: fx.Node, out: Traced, module: str | None) -> Traced | tuple[Traced, ...]:
    """A BatchNorm's outputs: the normalized tensor, then (tuple variants) its batch / running statistics."""
    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        return (out, *[Traced(stat_of=module) for _ in val[1:]])
    return out


def _h_layernorm(w: _Walk, node: fx.Node) -> Traced:
    """LayerNorm / RMSNorm whose first normalized dimension holds the units: its weight and bias
    follow the units; it normalizes across them (no per-unit scale, no flips)."""
    a = bind(node)
    m = _follower(w, {k: a.get(k) for k in ("weight", "bias")})
    shape = shape_of(a["input"])
    found = _single(w, node, a["input"], len(shape) - len(a["normalized_shape"]))
    if found is None:
        return Traced()
    flow, part = found
    if m is not None:
        w.b.root(part.group).followers.append(m)
    why = f"{w.label(node)} normalizes across the units: per-unit scale is not a symmetry (permutations only)"
    w.b.restrict(part.group, why, scale=True, flip=True)
    return flow.with_whys(why, why)


# --------------------------------------------------------------------------------------------------
# handlers: the units pass through


def _activation(node: fx.Node) -> tuple[str | None, str | None]:
    """(why a positive per-unit scale does not commute, why a sign flip does not) for an activation."""
    name = _op(node)
    a = bind(node)
    if name in ("relu", "leaky_relu"):
        return None, NOT_ODD
    if name in ("hardtanh", "clamp", "relu6", "clamp_min"):
        low = a.get("min_val", a.get("min", 0.0 if name in ("relu6", "clamp_min") else None))
        high = a.get("max_val", a.get("max", 6.0 if name == "relu6" else None))
        if low == 0 and (high is None or name == "clamp_min"):
            return None, NOT_ODD  # clamp(x, min=0) is ReLU
        odd = isinstance(low, (int, float)) and isinstance(high, (int, float)) and low == -high
        return NOT_HOMOGENEOUS, None if odd else NOT_ODD
    if name in ("tanh", "softsign"):
        return NOT_HOMOGENEOUS, None
    return NOT_HOMOGENEOUS, NOT_ODD


def _h_activation(w: _Walk, node: fx.Node) -> Traced:
    flow = w.flow(_first(node))
    if flow is None or not flow.tracked:
        return Traced()
    scale, flip = _activation(node)
    label = w.label(node)
    return flow.with_whys(scale and f"{label}: {scale}", flip and f"{label}: {flip}")


def _h_identity(w: _Walk, node: fx.Node) -> Traced:
    """clone, contiguous, detach, alias, dtype casts, dropout (identity in eval; linear otherwise),
    negation: commute with positive scale and with sign flips. Parameters pass through unchanged."""
    flow = w.flow(_first(node))
    if flow is None:
        return Traced()
    if flow.param is not None and _op(node) not in ("neg", "dropout", "native_dropout"):
        w.claimed.add(flow.param)
        return flow
    return replace(flow, param=None, transposed=False, stat_of=None)


def _pool(spatial: int, odd: bool) -> Any:
    def handler(w: _Walk, node: fx.Node) -> Traced:
        x = _first(node)
        flow = w.flow(x)
        if flow is None or not flow.tracked:
            return Traced()
        if flow.dim != len(shape_of(x)) - spatial - 1 or flow.block != 1:
            raise Unsupported("it pools along the units")
        return flow.with_whys(None, None if odd else f"{w.label(node)}: max pooling is not odd (no sign flips)")

    return handler


def _h_reduce(w: _Walk, node: fx.Node) -> Traced:
    """mean / sum / amax over dimensions other than the units'."""
    a = bind(node)
    flow = w.flow(a["self"])
    if flow is None or not flow.tracked:
        return Traced()
    ndim = len(shape_of(a["self"]))
    dims = a.get("dim")
    dims = [dims] if isinstance(dims, int) else dims
    dims = list(range(ndim)) if not dims else [d % ndim for d in dims]
    if flow.dim in dims:
        raise Unsupported("it reduces over the units")
    dim = flow.dim if a.get("keepdim") else flow.dim - sum(d < flow.dim for d in dims)
    flip = f"{w.label(node)}: max is not odd (no sign flips)" if _op(node) == "amax" else None
    return replace(flow.with_whys(None, flip), dim=dim)


def _h_reshape(w: _Walk, node: fx.Node) -> Traced:
    flow = w.flow(_first(node))
    if flow is None or not flow.tracked:
        return Traced()
    before, after = shape_of(_first(node)), shape_of(node)
    out = reshape_layout(flow, before, after)
    return out if before == after else replace(out, flattened=True)


def _h_permute(w: _Walk, node: fx.Node) -> Traced:
    """permute / transpose / t: moves the unit dimension; on a 2-D parameter, a transpose."""
    x = _first(node)
    flow = w.flow(x)
    if flow is None:
        return Traced()
    ndim = len(shape_of(x))
    a = bind(node)
    name = _op(node)
    if name == "permute":
        order = [d % ndim for d in a["dims"]]
    elif name == "numpy_T":
        order = list(range(ndim))[::-1]
    else:
        order = list(range(ndim))
        d0, d1 = (a["dim0"] % ndim, a["dim1"] % ndim) if name == "transpose" else (ndim - 2, ndim - 1)
        if ndim >= 2:
            order[d0], order[d1] = order[d1], order[d0]
    if flow.param is not None:
        if ndim != 2:
            return Traced()  # a use the table does not know: the parameter is not claimed
        w.claimed.add(flow.param)
        return replace(flow, transposed=flow.transposed != (order == [1, 0]))
    if not flow.tracked:
        return Traced()
    return replace(flow, dim=order.index(flow.dim))


def _h_select(w: _Walk, node: fx.Node) -> Traced:
    """select / slice along a dimension other than the units' (a full slice of the units is fine)."""
    a = bind(node)
    flow = w.flow(a["self"])
    if flow is None or not flow.tracked:
        return Traced()
    before, after = shape_of(a["self"]), shape_of(node)
    dim = a["dim"] % len(before)
    if dim == flow.dim:
        if len(after) == len(before) and as_int(before[dim]) == as_int(after[dim]):
            return flow
        raise Unsupported("it selects some of the units")
    return flow if len(after) == len(before) else replace(flow, dim=flow.dim - (dim < flow.dim))


def _is_scalar(w: _Walk, x: Any) -> bool:
    """A number, or a one-element tensor that is not a unit group (its parameter, if any, is claimed)."""
    if not isinstance(x, fx.Node):
        return True
    f = w.flow(x)
    val = x.meta.get("val")
    if (f is None or not f.tracked) and isinstance(val, torch.Tensor) and val.numel() == 1:
        if f is not None and f.param is not None:
            w.claimed.add(f.param)
        return True
    return False


def _merge(w: _Walk, node: fx.Node, x: Traced, y: Traced, residual: bool, scale: str, flip: str | None) -> Traced:
    """Two tensors whose units meet entry by entry: part by part, the groups share one permutation."""
    a = bind(node)
    nx, ny = len(shape_of(a["self"])), len(shape_of(a["other"]))
    if x.dim - nx != y.dim - ny or x.block != y.block or [p.size for p in x.parts] != [p.size for p in y.parts]:
        raise Unsupported("its operands do not hold the same units at the same places")
    parts = []
    for px, py in zip(x.parts, y.parts, strict=True):
        if (px.group is None) != (py.group is None):
            raise Unsupported("it combines units with data")
        gid = None
        if px.group is not None:
            why = None if residual else f"{w.label(node)} multiplies the units of two groups: one shared permutation"
            gid = w.b.union(px.group, py.group, residual=residual, why=why)
        parts.append(merged_part(gid, px, py, residual, scale, flip))
    return Traced(parts=tuple(parts), dim=x.dim - nx + len(shape_of(node)), block=x.block,
                  flattened=x.flattened or y.flattened)


def _h_add(w: _Walk, node: fx.Node) -> Traced:
    """Residual add (merges the groups), a bias added to a fresh producer, or a constant."""
    a = bind(node)
    x, y = w.flow(a["self"]), w.flow(a["other"])
    label = w.label(node)
    if (x is None or not x.tracked) and (y is None or not y.tracked):
        return Traced()
    if x is not None and x.tracked and y is not None and y.tracked:
        return _merge(w, node, x, y, True, f"{label}: residual add", None)
    flow, other = (x, a["other"]) if x is not None and x.tracked else (y, a["self"])
    if _is_scalar(w, other):
        return flow.with_whys(f"{label} adds a constant", f"{label} adds a constant")
    bias = w.flow(other)
    part = flow.parts[0]
    if bias is not None and bias.param is not None and not bias.transposed and len(flow.parts) == 1 and \
            part.fresh is not None and part.fresh.bias is None and _op(node) == "add":
        value, out = w.state[bias.param], shape_of(node)
        lead = [1] * (len(out) - value.dim()) + list(value.shape)
        per_unit = len(lead) == len(out) and all(s == (part.size if i == flow.dim else 1) for i, s in enumerate(lead))
        module, attr = split_name(bias.param)
        if per_unit and module == part.fresh.module and flow.block == 1:
            part.fresh.bias = attr  # ``x @ W.t() + b``: b is the producer's bias
            w.claimed.add(bias.param)
            return flow
    raise Unsupported("it adds a tensor that is not a unit group")


def _h_mul(w: _Walk, node: fx.Node) -> Traced:
    """Times / divided by a constant: passes; the product of two groups' units merges them."""
    a = bind(node)
    x, y = w.flow(a["self"]), w.flow(a["other"])
    if (x is None or not x.tracked) and (y is None or not y.tracked):
        return Traced()
    if x is not None and x.tracked and y is not None and y.tracked:
        why = f"{w.label(node)}: not positively homogeneous, permutations only"
        return _merge(w, node, x, y, False, why, why)
    divide = _op(node) == "div"
    if x is not None and x.tracked and _is_scalar(w, a["other"]):
        return x.with_whys(None, None)
    if not divide and y is not None and y.tracked and _is_scalar(w, a["self"]):
        return y.with_whys(None, None)
    raise Unsupported("it multiplies the units by a tensor that is not a unit group")


def _h_cat(w: _Walk, node: fx.Node) -> Traced:
    """Concatenation along the units: the consumers read the groups one after the other."""
    a = bind(node)
    tensors, ndim = list(a["tensors"]), len(shape_of(node))
    dim = a["dim"] % ndim
    flows = [w.flow(t) for t in tensors]
    tracked = [f for f in flows if f is not None and f.tracked]
    if not tracked:
        return Traced()
    block = tracked[0].block
    if any(f.dim != dim or f.block != block for f in tracked):
        raise Unsupported("it concatenates along another dimension than the units")
    parts: list[Part] = []
    for t, f in zip(tensors, flows, strict=True):
        if f is not None and f.tracked:
            parts += f.parts
        else:
            size = as_int(shape_of(t)[dim])
            if size is None or size % block:
                raise Unsupported("a concatenated tensor does not split into whole units")
            parts.append(Part(None, size // block))
    return Traced(parts=tuple(parts), dim=dim, block=block, flattened=any(f.flattened for f in tracked))


def _inplace(handler: Any) -> Any:
    """The in-place variant (``relu_``, ``add_``, ...) of an operation: the same, as long as the
    overwritten input is not read again afterwards (its readers use this node's result)."""

    def wrapped(w: _Walk, node: fx.Node) -> Any:
        target = _first(node)
        if isinstance(target, fx.Node) and any(w.order[u] > w.order[node] for u in target.users):
            raise Unsupported("an in-place operation on a value that is read again")
        return handler(w, node)

    return wrapped


def _h_getitem(w: _Walk, node: fx.Node) -> Traced | None:
    source, index = node.args
    value = w.flows.get(source)
    if isinstance(value, tuple) and isinstance(index, int) and index < len(value):
        return value[index]
    return Traced()


def _h_copy(w: _Walk, node: fx.Node) -> None:
    """The running statistics a train-mode BatchNorm writes back into its own buffers."""
    a = bind(node)
    dest, src = w.flow(a["self"]), w.flow(a["src"])
    own = dest is not None and dest.param is not None and src is not None and src.stat_of is not None
    if own and split_name(dest.param)[0] == src.stat_of:
        w.claimed.add(dest.param)
    return None  # any other write into a parameter leaves it unclaimed: its groups are frozen


# Handlers that follow the units of their first input only: a unit group in another input falls back.
_UNARY = (_h_activation, _h_identity, _h_reduce, _h_reshape, _h_permute, _h_select)

# One table: ATen operator overload packet -> handler (docs/method.md §1).
ATEN_HANDLERS: dict[Any, Any] = {operator.getitem: _h_getitem}
for _names, _handler in (
    (("linear",), _h_linear),
    (("addmm", "mm", "matmul"), _h_matmul),
    (("conv1d", "conv2d", "conv3d", "convolution", "_convolution"), _h_conv),
    (tuple(p.__name__ for p in BATCHNORM_PACKETS), _h_batchnorm),
    (("layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm"), _h_layernorm),
    (("relu", "leaky_relu", "hardtanh", "relu6", "clamp", "clamp_min", "gelu", "silu", "tanh", "sigmoid", "elu",
      "selu", "celu", "softplus", "mish", "hardswish", "hardsigmoid", "softsign"), _h_activation),
    (("clone", "contiguous", "detach", "alias", "lift_fresh_copy", "_to_copy", "to", "type_as", "dropout",
      "native_dropout", "feature_dropout", "alpha_dropout", "neg"), _h_identity),
    (("max_pool1d", "max_pool1d_with_indices", "adaptive_max_pool1d"), _pool(1, odd=False)),
    (("max_pool2d", "max_pool2d_with_indices", "adaptive_max_pool2d"), _pool(2, odd=False)),
    (("max_pool3d", "max_pool3d_with_indices", "adaptive_max_pool3d"), _pool(3, odd=False)),
    (("avg_pool1d", "adaptive_avg_pool1d"), _pool(1, odd=True)),
    (("avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d"), _pool(2, odd=True)),
    (("avg_pool3d", "adaptive_avg_pool3d", "_adaptive_avg_pool3d"), _pool(3, odd=True)),
    (("mean", "sum", "amax"), _h_reduce),
    (("view", "_unsafe_view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as"), _h_reshape),
    (("permute", "transpose", "t", "numpy_T"), _h_permute),
    (("select", "slice"), _h_select),
    (("add", "sub"), _h_add),
    (("mul", "div"), _h_mul),
    (("cat",), _h_cat),
    (("copy_",), _h_copy),
):
    for _name in _names:
        if (_p := aten_packet(_name)) is not None:
            ATEN_HANDLERS[_p] = _handler
        if _handler in (_h_activation, _h_add, _h_mul) and (_p := aten_packet(_name + "_")) is not None:
            ATEN_HANDLERS[_p] = _inplace(_handler)
