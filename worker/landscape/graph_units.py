"""The unit graph's data structures and the builder both tracers share (docs/method.md §1).

Two tracers build a :class:`UnitGraph`: the ``torch.fx`` module tracer of ordinary ``nn.Module``
networks (:mod:`toroid.worker.landscape.graph`) and the ATen-graph builder of ``torch.export``
programs (:mod:`toroid.worker.landscape.graph_aten`). Both walk their graph through one handler
table and record what they find with the :class:`Builder` below: new unit groups (producers),
the layers reading them (consumers), the normalization layers indexed by them (followers), merged
groups (residual streams), symmetries that stop being symmetries, with a short human reason for
each (``UnitGroup.notes``), and the operations the table does not know (``UnitGraph.unsupported``).
The moves that act on the graph are in :mod:`toroid.worker.landscape.symmetry`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FOLLOWER_ATTRS",
    "NOT_HOMOGENEOUS",
    "NOT_ODD",
    "Builder",
    "Consumer",
    "Producer",
    "ResidualAdd",
    "SphereBlock",
    "UnitGraph",
    "UnitGroup",
    "scale_reason",
    "tensor_name",
]

#: The attributes of a follower (BatchNorm, LayerNorm) indexed by the unit along dim 0.
FOLLOWER_ATTRS = ("weight", "bias", "running_mean", "running_var")

# Why a symmetry stops at an activation (docs/method.md §1, "Activations and LayerNorm"): the
# suffixes of the group notes.
NOT_HOMOGENEOUS = "not positively homogeneous, permutations only (no rescaling)"
NOT_ODD = "not odd (no sign flips)"


class ResidualAdd(str):
    """The reason "residual add": it stops a unit's own positive scale (the identity path carries
    the unscaled value) but not a scale shared by every writer of the stream (``UnitGroup.shared_scale``)."""


def scale_reason(*whys: str | None) -> str | None:
    """The first reason a positive scale stops; a residual add yields to any later other reason,
    which also stops the shared scale of a stream (docs/method.md §2)."""
    found = [w for w in whys if w is not None]
    return next((w for w in found if not isinstance(w, ResidualAdd)), found[0] if found else None)


def tensor_name(module: str, attr: str) -> str:
    """The ``state_dict`` key of attribute ``attr`` of submodule ``module`` (``""``: the root)."""
    return f"{module}.{attr}" if module else attr


@dataclass
class Producer:
    """A layer whose output units (dim 0 of its weight) form a unit group.

    ``weight`` and ``bias`` name the attributes of submodule ``module`` holding the tensors
    (``bias`` None: no bias); a Linear / Conv module uses ``weight`` and ``bias``, an exported
    program may use a bare parameter (``module=""``, ``weight="w"``).
    """

    module: str
    input_group: int | None = None  # index of the group its input columns belong to (None: data)
    bn: str | None = None  # the BatchNorm applied directly to its output (rescales with the unit)
    binary: bool = False
    weight: str = "weight"
    bias: str | None = "bias"

    @property
    def weight_name(self) -> str:
        return tensor_name(self.module, self.weight)

    @property
    def bias_name(self) -> str | None:
        return None if self.bias is None else tensor_name(self.module, self.bias)


@dataclass
class Consumer:
    """A layer reading a unit group: a weighted layer (dim 1 of its weight ``module.weight``) or a
    fixed read-out (``fixed``).

    After a flatten each unit is a block of columns: ``block`` columns per unit (None: derived as
    ``in_features // group size`` when ``flattened``, else 1). ``offset`` is the first input column
    of the group (a concatenation along the units feeds several groups to one layer).
    """

    module: str
    flattened: bool = False
    fixed: bool = False
    weight: str = "weight"
    block: int | None = None
    offset: int = 0

    @property
    def weight_name(self) -> str:
        return tensor_name(self.module, self.weight)


@dataclass
class UnitGroup:
    """Hidden units that move together under the symmetries.

    A plain layer is one group; the layers writing into one residual stream form one group.
    ``rescalable``: positive rescaling of each unit is a symmetry that moves legally into the
    consumers (single producer, only positively homogeneous operations such as ReLU / LeakyReLU /
    pooling / flatten, or a BatchNorm right after the producer, in between; no residual add).
    ``flippable``: sign flips are a symmetry (only odd operations in between and weighted
    consumers). ``permutable``: the units may be permuted (False for the last layer and for the
    inputs of operations the tracer does not know). ``output``: the last layer, never permuted,
    scaled as one vector. ``notes``: why a symmetry is not removed, one short sentence each.
    ``shared_scale``: one positive factor per unit applied to the outputs of all the producers at
    once reaches the consumers unchanged (every operation in between, residual adds included, is
    positively homogeneous): the scale of a residual stream's BatchNorm affine parameters
    (docs/method.md §2, "BatchNorm: option bn_mode").
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
    notes: list[str] = field(default_factory=list)
    shared_scale: bool = True


@dataclass
class UnitGraph:
    """The unit groups of a model in bottom-up (topological) order, whether it is binary, the
    operations the tracer did not know (their inputs are frozen) and which tracer built it."""

    groups: list[UnitGroup]
    binary: bool
    unsupported: list[str] = field(default_factory=list)
    tracer: str = "torch.fx"

    def group(self, name: str) -> UnitGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(f"no unit group {name!r}; groups: {[g.name for g in self.groups]}")

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary of which symmetries are removed, per group, and why not.

        ``permuted``: ``align`` removes the permutations of the group; ``rescaled``: ``normalize``
        puts each unit on the unit sphere; ``flipped``: ``align`` removes sign flips. ``reasons``
        says why a symmetry is not removed (docs/method.md §1).
        """
        groups = []
        for g in self.groups:
            reasons = list(g.notes)
            if g.output:
                single = len(g.producers) == 1 and g.producers[0].bn is None and not self.binary
                reasons.insert(0, "last layer: never permuted; " + (
                    "normalize scales it as one vector (docs/method.md §2)" if single else "left as it is"))
            groups.append({
                "name": g.name,
                "size": g.size,
                "producers": [p.weight_name for p in g.producers],
                "followers": list(g.followers),
                "output": g.output,
                "residual": g.residual,
                "permuted": g.permutable and not g.output,
                "rescaled": g.rescalable and not g.output and not self.binary,
                "flipped": g.flippable and not g.output,
                "reasons": reasons,
            })
        hidden = [d for d in groups if not d["output"]]
        return {
            "tracer": self.tracer,
            "binary": self.binary,
            "groups": groups,
            "unsupported": list(self.unsupported),
            "summary": {
                "hidden_groups": len(hidden),
                "permuted": sum(d["permuted"] for d in hidden),
                "rescaled": sum(d["rescaled"] for d in hidden),
                "flipped": sum(d["flipped"] for d in hidden),
                "unsupported_ops": len(self.unsupported),
            },
        }


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


class Unsupported(Exception):
    """Raised by a handler that cannot represent an operation; the tracer falls back (its inputs
    are frozen, its output is opaque) and records the message."""


class Builder:
    """Mutable state while walking a traced graph: the groups, a union-find over them (residual
    streams), the unsupported operations and the parameters used outside a known role."""

    def __init__(self, binary: bool, tracer: str) -> None:
        self.binary = binary
        self.tracer = tracer
        self.groups: list[UnitGroup] = []
        self.parent: list[int] = []
        self.unsupported: list[str] = []
        self.foreign: dict[str, str] = {}  # parameter -> the operation that used it outside a role

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def root(self, gid: int) -> UnitGroup:
        return self.groups[self.find(gid)]

    def new_group(self, name: str, size: int, producer: Producer) -> int:
        taken = {g.name for g in self.groups}
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}#{k}", k + 1
        self.groups.append(UnitGroup(name=unique, size=size, producers=[producer]))
        self.parent.append(len(self.groups) - 1)
        if producer.binary:
            self.groups[-1].rescalable = self.groups[-1].shared_scale = False
        return len(self.groups) - 1

    def union(self, a: int, b: int, *, residual: bool = True, why: str | None = None) -> int:
        """Merge two groups into one (they must share one permutation); never rescalable."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        keep, drop = min(ra, rb), max(ra, rb)
        ga, gb = self.groups[keep], self.groups[drop]
        if ga.size != gb.size:
            raise Unsupported(f"it combines groups {ga.name!r} ({ga.size} units) and {gb.name!r} ({gb.size})")
        ga.producers += gb.producers
        ga.followers += gb.followers
        ga.consumers += gb.consumers
        ga.notes += [n for n in gb.notes if n not in ga.notes]
        ga.rescalable = False
        ga.shared_scale = ga.shared_scale and gb.shared_scale
        ga.flippable = ga.flippable and gb.flippable
        ga.permutable = ga.permutable and gb.permutable
        ga.residual = ga.residual or gb.residual or residual
        if why is not None:
            self.note(keep, why)
        self.parent[drop] = keep
        return keep

    def note(self, gid: int, text: str) -> None:
        g = self.root(gid)
        if text not in g.notes:
            g.notes.append(text)

    def restrict(self, gid: int, why: str | None, *, scale: bool = False, flip: bool = False) -> None:
        """The group loses its scale and / or flip symmetry; ``why`` is noted when a flag changes
        (flip reasons only for binary networks, the only ones where flips are expected)."""
        g = self.root(gid)
        if scale and not isinstance(why, ResidualAdd):
            g.shared_scale = False
        if scale and g.rescalable:
            g.rescalable = False
            if why:
                self.note(gid, why)
        if flip and g.flippable:
            g.flippable = False
            if why and self.binary:
                self.note(gid, why)

    def freeze(self, gid: int, why: str) -> None:
        """No symmetry of the group is removed (input of an operation the tracer does not know)."""
        g = self.root(gid)
        g.shared_scale = False
        if g.permutable or g.rescalable or g.flippable:
            g.permutable = g.rescalable = g.flippable = False
            self.note(gid, why)

    def attach(self, gid: int, consumer: Consumer, scale_why: str | None, flip_why: str | None) -> None:
        """``consumer`` reads the group; the operations in between decide scale and flips."""
        self.root(gid).consumers.append(consumer)
        self.restrict(gid, scale_why, scale=scale_why is not None)
        if consumer.fixed:
            flip_why = flip_why or f"fixed read-out {consumer.module!r}: sign flips are not a symmetry"
        self.restrict(gid, flip_why, flip=flip_why is not None)

    def unsupported_op(self, label: str, reason: str | None, groups: list[int], params: list[str], *,
                       record: bool = False) -> None:
        """Fallback for an operation the table does not know: its input groups are frozen and its
        parameters may not move with any group. Listed in ``unsupported`` when it touches a group
        or ``record`` (a layer of the table in a configuration it does not support, or an unknown
        operation on a weight): operations on data alone cost nothing and are not listed."""
        text = f"node {label}" + (f": {reason}" if reason else "")
        for gid in groups:
            self.freeze(gid, f"input of unsupported operation ({text}): not permuted, rescaled or flipped")
        for p in params:
            self.foreign.setdefault(p, text)
        if (groups or record) and text not in self.unsupported:
            self.unsupported.append(text)

    # ------------------------------------------------------------------------------------------
    def _roles(self, roots: list[int]) -> dict[tuple, list[int]]:
        """(tensor, dim, first column) -> the groups whose moves index that tensor there."""
        roles: dict[tuple, list[int]] = defaultdict(list)
        for r in roots:
            g = self.groups[r]
            for p in g.producers:
                roles[(p.weight_name, 0, 0)].append(r)
                if p.bias_name is not None:
                    roles[(p.bias_name, 0, 0)].append(r)
            for f in g.followers:
                for attr in FOLLOWER_ATTRS:
                    roles[(tensor_name(f, attr), 0, 0)].append(r)
            for c in g.consumers:
                if not c.fixed:
                    roles[(c.weight_name, 1, c.offset)].append(r)
        return roles

    def finish(self, outputs: list[int]) -> UnitGraph:
        """The final graph: one group per union-find root, in order of first appearance."""
        for gid in outputs:
            out = self.root(gid)
            out.output = True
            out.permutable = out.rescalable = out.flippable = out.shared_scale = False
        roots = sorted({self.find(i) for i in range(len(self.groups))})
        # A tensor moved by two groups (a shared / tied layer) or also used outside its role would
        # change the function when a group moves: such groups keep all their symmetries.
        for (tensor, _, _), owners in self._roles(roots).items():
            if len(owners) > 1:
                for r in owners:
                    self.freeze(r, f"tensor {tensor!r} is moved by more than one layer: not permuted, rescaled "
                                   "or flipped")
            if tensor in self.foreign:
                text = f"{self.foreign[tensor]} (uses parameter {tensor!r})"
                for r in owners:
                    self.freeze(r, f"input of unsupported operation ({text}): not permuted, rescaled or flipped")
                if text not in self.unsupported:
                    self.unsupported.append(text)
        index = {r: k for k, r in enumerate(roots)}
        groups = [self.groups[r] for r in roots]
        for g in groups:
            for p in g.producers:
                p.input_group = None if p.input_group is None else index[self.find(p.input_group)]
            if g.residual:
                g.name = f"stream:{g.producers[0].module or g.producers[0].weight}"
                writers = ", ".join(repr(p.weight_name) for p in g.producers)
                g.notes.insert(0, f"residual stream written by {writers}: one shared permutation, not rescaled "
                                  "(the identity path carries the unscaled value)")
            if len(g.producers) != 1:
                g.rescalable = False
            if g.producers and g.producers[0].binary:
                g.notes.insert(0, "binary layer: no scale symmetry (docs/method.md §4)")
        return UnitGraph(groups=groups, binary=self.binary, unsupported=list(self.unsupported), tracer=self.tracer)
