"""Symmetry removal: the moves on the unit graph, scale removal (normalize) and permutation / sign
removal (align).

docs/method.md §2 (Algorithm 1, normalization), §3 (Algorithm 2, alignment), §4 (binary
networks). The implementation is architecture-agnostic: the unit graph
(:mod:`toroid.worker.landscape.graph`, docs/method.md §1) says which hidden units move together;
three moves act on a group, each on every tensor the group touches (producer rows and biases,
BatchNorm parameters and running statistics, consumer input columns, through a flatten as blocks
of columns, the columns of one group of a concatenation): ``permute``, ``flip`` (binary networks,
odd activations) and ``rescale``. :func:`normalize` and
:func:`align` are short loops of these moves over the graph; :func:`apply_symmetry` and
:func:`random_symmetry` apply explicit or random elements of the symmetry group.

Every function returns a NEW model; its inputs are never modified. The graph's names (``unit_graph``,
``is_binary``, ``sphere_blocks``, ...) are re-exported here for the code that imports them from this
module; the core imports them from :mod:`toroid.worker.landscape.graph`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from toroid.worker.landscape import graph
from toroid.worker.landscape.graph import *  # noqa: F403  (the unit graph's names, importable from here too)
from toroid.worker.landscape.graph import Consumer, UnitGroup, unit_graph
from toroid.worker.landscape.graph_units import FOLLOWER_ATTRS

__all__ = [*graph.__all__, "UnitMatch", "align", "align_permutations", "apply_symmetry", "normalize",
           "random_symmetry"]


# --------------------------------------------------------------------------------------------------
# result of aligning one group


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
# moves on a group: permute, flip, rescale


def _tensor(model: nn.Module, module: str, attr: str | None) -> torch.Tensor | None:
    """Attribute ``attr`` of submodule ``module`` (None when absent: e.g. no bias, or a BatchNorm
    container of an exported program without running statistics)."""
    return None if attr is None else getattr(model.get_submodule(module), attr, None)


def _weight(model: nn.Module, module: str, attr: str) -> torch.Tensor:
    w = _tensor(model, module, attr)
    assert w is not None, f"{module}.{attr}"
    return w


def _column_index(perm: torch.Tensor, block: int) -> torch.Tensor:
    return (perm[:, None] * block + torch.arange(block, device=perm.device)).reshape(-1)


def _block(model: nn.Module, consumer: Consumer, size: int) -> int:
    if consumer.block is not None:
        return consumer.block
    w = _weight(model, consumer.module, consumer.weight)
    return w.shape[1] // size if consumer.flattened else 1


def _columns(model: nn.Module, consumer: Consumer, size: int) -> tuple[int, int]:
    """(first input column, columns per unit) of the group in the consumer's weight."""
    return consumer.offset, _block(model, consumer, size)


def _unit_tensors(model: nn.Module, modules, attrs: tuple[str, ...] = FOLLOWER_ATTRS):
    """The existing tensors ``attrs`` of ``modules``: their first dimension indexes the group's units."""
    for module in modules:
        for attr in attrs:
            t = _tensor(model, module, attr)
            if t is not None:
                yield t


def _producer_tensors(model: nn.Module, producers):
    """Weights and biases of the producers: dim 0 indexes the units."""
    for p in producers:
        for attr in (p.weight, p.bias):
            t = _tensor(model, p.module, attr)
            if t is not None:
                yield t


def _consumer_weights(model: nn.Module, group: UnitGroup):
    """(consumer, its weight) for every consumer that moves with the units (its input columns follow them)."""
    for c in group.consumers:
        if not c.fixed:
            yield c, _weight(model, c.module, c.weight)


def _column_factors(model: nn.Module, c: Consumer, w: torch.Tensor, group: UnitGroup, per_unit: torch.Tensor):
    """Per input column of ``w``: ``per_unit[k]`` on unit ``k``'s columns, 1 on the other groups' columns."""
    start, block = _columns(model, c, group.size)
    factors = torch.ones(w.shape[1], dtype=w.dtype, device=w.device)
    factors[start:start + group.size * block] = per_unit.to(w).repeat_interleave(block)
    return factors.view(_unit_shape(w, 1))


@torch.no_grad()
def _permute_group(model: nn.Module, group: UnitGroup, perm: torch.Tensor) -> None:
    """Unit ``k`` of the group becomes old unit ``perm[k]`` everywhere (docs/method.md §3)."""
    rows = [*_producer_tensors(model, group.producers), *_unit_tensors(model, group.followers)]
    for t in rows:
        t.data = t.index_select(0, perm.to(t.device))
    for c, w in _consumer_weights(model, group):
        start, block = _columns(model, c, group.size)
        index = torch.arange(w.shape[1], device=w.device)
        index[start:start + group.size * block] = start + _column_index(perm.to(w.device), block)
        w.data = w.index_select(1, index)


def _unit_shape(t: torch.Tensor, dim: int) -> list[int]:
    shape = [1] * t.dim()
    shape[dim] = -1
    return shape


@torch.no_grad()
def _flip_group(model: nn.Module, group: UnitGroup, signs: torch.Tensor) -> None:
    """Multiply unit ``k``'s incoming and outgoing weights by ``signs[k]`` (docs/method.md §4)."""
    assert not any(c.fixed for c in group.consumers)
    for t in _producer_tensors(model, group.producers):
        t.mul_(signs.to(t).view(_unit_shape(t, 0)))
    for c, w in _consumer_weights(model, group):
        w.mul_(_column_factors(model, c, w, group, signs))


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
    for t in _producer_tensors(model, [p]):
        t.mul_(c.to(t).view(_unit_shape(t, 0)))
    out_factor = c
    if p.bn is not None:
        bn = model.get_submodule(p.bn)
        mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
        if mean is not None and var is not None:
            mean.mul_(c.to(mean))
            var.mul_((c * c).to(var))
        # an exported program's BatchNorm container has no ``affine`` flag: its weight tells
        affine = getattr(bn, "affine", getattr(bn, "weight", None) is not None)
        if affine and bn_mode == "push":
            for t in (getattr(bn, "weight", None), getattr(bn, "bias", None)):
                if t is not None:
                    t.mul_(c.to(t))
        else:
            out_factor = torch.ones_like(c)
    for cons, w in _consumer_weights(model, group):
        w.mul_(_column_factors(model, cons, w, group, 1.0 / out_factor))


# --------------------------------------------------------------------------------------------------
# normalize (docs/method.md §2, Algorithm 1)


def _unit_norms(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    (p,) = group.producers
    w = _weight(model, p.module, p.weight)
    return torch.linalg.vector_norm(w.detach().flatten(1), dim=1, dtype=torch.float64)


#: ``normalize``'s treatments of BatchNorm (docs/method.md §2, "BatchNorm: option bn_mode"); the first is the default.
BN_MODES = ("canonical", "push", "absorb")


def normalize(model: nn.Module, *, bn_mode: str = "canonical") -> nn.Module:
    """Remove the positive-rescaling symmetry (docs/method.md §2, Algorithm 1). Returns a new model.

    Bottom-up over the unit groups: every rescalable hidden unit ``k`` gets ``n_k = ||w_k||`` (its
    incoming weights, bias excluded) and is rescaled by ``c = 1 / n_k``: incoming weights and bias
    times ``c``, a following BatchNorm as in :func:`_rescale_group`, the next layer's input columns
    (through a flatten: all columns of that channel) times ``n_k``. Layer ``l + 1``'s norms are taken
    after layer ``l``'s scale was pushed into it. Finally the last layer (weights and bias) is
    scaled so that ``||W_L||_F = sqrt(H_L)``, which multiplies all logits by one positive factor.

    Residual streams and units behind a nonlinearity-then-BatchNorm are not rescaled (their scale
    cannot legally move); they stay free parameters (see
    :func:`~toroid.worker.landscape.graph.sphere_blocks`), though ``"canonical"`` still fixes the
    BatchNorm symmetries of a stream's writers (below). Binary networks have no scale symmetry
    (docs/method.md §4): they are returned as an unchanged copy.
    Units with an all-zero weight vector (n_k = 0) are left as they are.

    ``bn_mode`` (the paper is silent on the detail; docs/method.md §2, "BatchNorm: option bn_mode"):
    ``"canonical"`` (default) removes both symmetries of a unit followed by BatchNorm, each on its
    own (:mod:`toroid.worker.landscape.bn_canonical`): the filter goes to the unit sphere with the
    running statistics absorbing its scale, and BN's ``(gamma_k, beta_k)`` to unit norm (the root
    mean square over a residual stream's writers) with the consumers compensating; units without
    BatchNorm are normalized as above. ``"push"`` scales a following BatchNorm's affine weight and
    bias with the unit and pushes ``n_k`` into the next layer; ``"absorb"`` lets the BatchNorm absorb
    the scale (only its running statistics change), so the BatchNorm affine parameters and the next
    layer stay as they are. Neither of the two fixes the affine scale on its own.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode={bn_mode!r} is not one of {list(BN_MODES)}")
    from toroid.worker.landscape import bn_canonical  # it builds on this module's moves

    graph = unit_graph(model)
    new = copy.deepcopy(model)
    if graph.binary:
        return new
    canonical = bn_mode == "canonical"
    for group in graph.groups:
        if group.output:
            if len(group.producers) != 1 or group.producers[0].bn is not None:
                continue
            (p,) = group.producers
            w = _weight(new, p.module, p.weight)
            norm = float(torch.linalg.vector_norm(w.detach(), dtype=torch.float64))
            if norm > 0:
                factor = math.sqrt(w.shape[0]) / norm
                with torch.no_grad():
                    for t in _producer_tensors(new, [p]):
                        t.mul_(factor)
        elif canonical and any(p.bn is not None for p in group.producers):
            bn_canonical.canonical_affine(new, graph, group)  # (b); (a) below, once every column is final
        elif group.rescalable:
            norms = _unit_norms(new, group)
            c = torch.where(norms > 0, 1.0 / norms.clamp_min(1e-300), torch.ones_like(norms))
            _rescale_group(new, group, c, bn_mode)
    if canonical:
        bn_canonical.absorb_filters(new, graph)
    return new


# --------------------------------------------------------------------------------------------------
# align (docs/method.md §3, Algorithm 2; §4 for binary networks)


def align_permutations(
    reference: nn.Module, model: nn.Module, *, method: str = "best", score: str = "auto",
    max_sweeps: int = 5, refine_sweeps: int = 30,
) -> tuple[nn.Module, dict[str, UnitMatch]]:
    """Align ``model`` to ``reference`` (docs/method.md §3, §4): a new model and, per unit group, the
    :class:`UnitMatch` applied. The best of identity, the paper's greedy matching and its
    refinement (``method``, ``score``): see :func:`toroid.worker.landscape.alignment.align_report`."""
    from toroid.worker.landscape import alignment  # it builds on this module's moves

    return alignment.align_permutations(reference, model, method=method, score=score, max_sweeps=max_sweeps,
                                        refine_sweeps=refine_sweeps)


def align(reference: nn.Module, model: nn.Module, *, method: str = "best", score: str = "auto",
          max_sweeps: int = 5, refine_sweeps: int = 30) -> nn.Module:
    """``model`` aligned to ``reference``: a new model (see :func:`align_permutations`)."""
    return align_permutations(reference, model, method=method, score=score, max_sweeps=max_sweeps,
                              refine_sweeps=refine_sweeps)[0]


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
            if not group.flippable or group.output:
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

    Every permutable hidden group gets a random permutation; every flippable group (binary
    networks, odd activations such as tanh) random signs (``flip``); with ``rescale=(low, high)``
    every rescalable group random log-uniform positive factors. Returns the new model and the moves applied (JSON-able).
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
        if flip and g.flippable:
            signs[g.name] = rng.choice([-1, 1], size=g.size).tolist()
        if rescale is not None and g.rescalable:
            low, high = rescale
            scales[g.name] = np.exp(rng.uniform(math.log(low), math.log(high), size=g.size)).tolist()
    new = apply_symmetry(model, perms, signs, scales)
    return new, {"permutations": perms, "signs": signs, "scales": scales}
