"""The canonical form of BatchNorm units: ``normalize(model, bn_mode="canonical")``, the default.

docs/method.md §2, "BatchNorm: option bn_mode". A producer (Linear / Conv) followed directly by a
BatchNorm has two continuous symmetries per unit ``k``:

(a) the **filter scale**: incoming weights and bias times ``c > 0``, BN running mean times ``c``,
    running variance times ``c^2``. BN's normalized output is unchanged (exactly up to BN's
    ``eps``), so nothing reaches the consumers. Canonical: ``c = 1 / ||w_k||`` (the unit's filter
    on the unit sphere, as in paper Alg. 1), for every such producer whose group may move at all:
    chains, stream writers (a ResNet block's last conv, the downsample conv, the stem) and units
    behind activations that are not positively homogeneous.
(b) the **affine scale**: BN's ``(gamma_k, beta_k)`` times ``d > 0`` and the consumers' input
    columns of unit ``k`` times ``1 / d``, legal when every operation between the BatchNorm and the
    consumers is positively homogeneous (ReLU, LeakyReLU, max / average pooling, flatten, identity:
    ``UnitGroup.shared_scale``). In a residual stream the factor is shared by every writer (all
    their BatchNorms move together; the identity path then carries the scaled value, and the
    stream's consumers compensate). Canonical: ``d_k`` making the root mean square over the group's
    writers of ``||(gamma_k, beta_k)||`` equal to 1 (for a plain unit: ``gamma_k^2 + beta_k^2 = 1``).

Proof sketch (why two networks related by any such factors get the same canonical form): bottom-up
over the groups, assume the input columns of a group already agree once canonicalized. (b) maps
``(gamma, beta) -> d (gamma, beta)`` and its norm to ``d`` times the norm, so ``d_k`` undoes any
factor exactly, and the consumers' columns get the same product of factors in both networks;
(a) is then applied last, when every column is final, and maps ``w_k -> c w_k``, so ``w_k / ||w_k||``
and the running statistics divided by ``||w_k||`` (``||w_k||^2``) agree. (b) reads no weight, so a
stream whose writers read groups that come after it in the graph (a block's last conv reads the
block's first conv, which reads the stream) is canonicalized before its consumers without a cycle.

Not moved (documented in docs/method.md §2): a stream with a writer that has no affine BatchNorm
(its shared scale would be its writers' rows, which depend on groups the stream feeds: a cycle),
groups behind operations that are not positively homogeneous (only (a) applies), BatchNorms that
do not directly follow their producer, frozen groups and the last layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from toroid.worker.landscape.graph import Producer, UnitGraph, UnitGroup, unit_graph
from toroid.worker.landscape.symmetry import (
    _column_factors,
    _consumer_weights,
    _producer_tensors,
    _unit_shape,
    _weight,
)

__all__ = ["absorb_filters", "affine_factors", "apply_bn_scales", "canonical_affine", "carries_affine_scale",
           "filter_absorbed", "random_bn_scales"]


def _bn(model: nn.Module, p: Producer) -> nn.Module | None:
    return None if p.bn is None else model.get_submodule(p.bn)


def _affine(model: nn.Module, p: Producer) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(gamma, beta) of the BatchNorm right after ``p`` (None: no BatchNorm, or no affine weight).
    An exported program's BatchNorm container has no ``affine`` flag: its weight tells."""
    bn = _bn(model, p)
    gamma = None if bn is None else getattr(bn, "weight", None)
    if gamma is None or not getattr(bn, "affine", True):
        return None
    return gamma, getattr(bn, "bias", None)


def filter_absorbed(graph: UnitGraph, group: UnitGroup, p: Producer) -> bool:
    """Whether symmetry (a) moves producer ``p`` of ``group``: a BatchNorm directly follows it and the
    group may move (not frozen, not the last layer, not binary)."""
    return p.bn is not None and not p.binary and not graph.binary and group.permutable and not group.output


def carries_affine_scale(model: nn.Module, graph: UnitGraph, group: UnitGroup) -> bool:
    """Whether symmetry (b) moves ``group``: every producer has an affine BatchNorm right after it and
    a factor shared by all of them reaches the consumers (``UnitGroup.shared_scale``)."""
    if graph.binary or group.output or not group.permutable or not group.shared_scale or not group.producers:
        return False
    if any(c.fixed for c in group.consumers):  # a fixed read-out cannot compensate
        return False
    return all(filter_absorbed(graph, group, p) and _affine(model, p) is not None for p in group.producers)


@torch.no_grad()
def _absorb(model: nn.Module, p: Producer, c: torch.Tensor) -> None:
    """Symmetry (a): ``p``'s rows and bias times ``c``, its BatchNorm's running mean times ``c`` and
    running variance times ``c^2``."""
    for t in _producer_tensors(model, [p]):
        t.mul_(c.to(t).view(_unit_shape(t, 0)))
    bn = _bn(model, p)
    mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
    if mean is not None and var is not None:
        mean.mul_(c.to(mean))
        var.mul_((c * c).to(var))


@torch.no_grad()
def _scale_affine(model: nn.Module, group: UnitGroup, d: torch.Tensor) -> None:
    """Symmetry (b): every producer's BatchNorm ``(gamma, beta)`` times ``d``, the consumers' input
    columns of the group times ``1 / d``."""
    for p in group.producers:
        gamma, beta = _affine(model, p) or (None, None)
        for t in (gamma, beta):
            if t is not None:
                t.mul_(d.to(t))
    for cons, w in _consumer_weights(model, group):
        w.mul_(_column_factors(model, cons, w, group, 1.0 / d))


def affine_factors(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    """The canonical ``d_k`` of (b): the root mean square over the writers of ``||(gamma_k, beta_k)||``
    becomes 1; units whose pairs are all zero keep factor 1."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for p in group.producers:
        gamma, beta = _affine(model, p) or (None, None)
        for t in (gamma, beta):
            if t is not None:
                total += t.detach().to(device="cpu", dtype=torch.float64) ** 2
    rms = torch.sqrt(total / len(group.producers))
    return torch.where(rms > 0, 1.0 / rms.clamp_min(1e-300), torch.ones_like(rms))


def canonical_affine(model: nn.Module, graph: UnitGraph, group: UnitGroup) -> None:
    """In place: fix the affine scale (b) of ``group`` when it carries one (docs/method.md §2)."""
    if carries_affine_scale(model, graph, group):
        _scale_affine(model, group, affine_factors(model, group))


def absorb_filters(model: nn.Module, graph: UnitGraph) -> None:
    """In place: every producer with a BatchNorm right after it gets ``||w_k|| = 1``, the BatchNorm's
    running statistics absorbing the scale (symmetry (a); run after every column is final)."""
    for group in graph.groups:
        for p in group.producers:
            if filter_absorbed(graph, group, p):
                w = _weight(model, p.module, p.weight)
                norms = torch.linalg.vector_norm(w.detach().flatten(1), dim=1, dtype=torch.float64)
                _absorb(model, p, torch.where(norms > 0, 1.0 / norms.clamp_min(1e-300), torch.ones_like(norms)))


# --------------------------------------------------------------------------------------------------
# explicit moves (tests and demonstrations: they never change the function)


def _positive(values: Any, size: int, what: str) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if c.shape != (size,) or not bool((c > 0).all()):
        raise ValueError(f"{what} must hold {size} positive factors")
    return c


def apply_bn_scales(
    model: nn.Module,
    filters: Mapping[str, Any] | None = None,
    affine: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The BatchNorm symmetries of docs/method.md §2 applied to a copy of ``model`` (same function).

    ``filters[weight_name]``: (a), positive factors per unit for the producer whose weight is
    ``weight_name`` (its BatchNorm's running statistics absorb them); ``affine[group]``: (b),
    positive factors per unit for a unit group (a residual stream: all its writers' BatchNorms),
    compensated in the consumers. Raises ``ValueError`` where the move is not a symmetry.
    """
    graph = unit_graph(model)
    new = copy.deepcopy(model)
    producers = {p.weight_name: (g, p) for g in graph.groups for p in g.producers}
    for name, values in (filters or {}).items():
        if name not in producers or not filter_absorbed(graph, *producers[name]):
            raise ValueError(f"filters: {name!r} is not a producer whose BatchNorm absorbs its scale")
        group, p = producers[name]
        _absorb(new, p, _positive(values, group.size, f"filters[{name!r}]"))
    names = {g.name: g for g in graph.groups}
    for name, values in (affine or {}).items():
        if name not in names or not carries_affine_scale(new, graph, names[name]):
            raise ValueError(f"affine: {name!r} is not a unit group whose BatchNorm affine scale is a symmetry")
        _scale_affine(new, names[name], _positive(values, names[name].size, f"affine[{name!r}]"))
    return new


def random_bn_scales(
    model: nn.Module,
    seed: int = 0,
    *,
    filters: tuple[float, float] | None = (0.2, 5.0),
    affine: tuple[float, float] | None = (0.2, 5.0),
) -> tuple[nn.Module, dict[str, dict[str, list[float]]]]:
    """Random log-uniform factors of both BatchNorm symmetries ((a) ``filters``, (b) ``affine``; None:
    not that kind) on every unit where they are symmetries. Returns the new model and the moves."""
    graph = unit_graph(model)
    rng = np.random.default_rng(seed)

    def draw(bounds: tuple[float, float], size: int) -> list[float]:
        low, high = bounds
        return np.exp(rng.uniform(math.log(low), math.log(high), size=size)).tolist()

    moves: dict[str, dict[str, list[float]]] = {"filters": {}, "affine": {}}
    for g in graph.groups:
        if filters is not None:
            for p in g.producers:
                if filter_absorbed(graph, g, p):
                    moves["filters"][p.weight_name] = draw(filters, g.size)
        if affine is not None and carries_affine_scale(model, graph, g):
            moves["affine"][g.name] = draw(affine, g.size)
    return apply_bn_scales(model, moves["filters"], moves["affine"]), moves
