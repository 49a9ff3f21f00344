"""Permutation and sign removal: ``align`` keeps the best of several candidate alignments.

docs/method.md §3 (Algorithm 2 and its refinement), §4 (binary networks), §5 (the distances it
minimizes). The distance between two equivalence classes is a minimum over the symmetries, so
:func:`align` never returns an alignment farther from the reference than the model as given:

* ``identity``: the model as given;
* ``greedy``: the paper's bottom-up matching on the incoming weights (Algorithm 2; residual
  streams: Git Re-Basin style shared permutations, several sweeps);
* ``refined``: ``greedy`` followed by coordinate descent over the groups (weight matching): each
  group's permutation (and, where flips are symmetries, its signs) is re-solved given BOTH its
  incoming weights and the consumers' columns it feeds, under the current permutations of the
  neighbouring groups; a step is kept only when it lowers the distance; sweeps repeat until
  nothing changes (at most ``refine_sweeps``).

The score is the distance the caller reports: the geodesic distance for continuous networks, the
Hamming distance for binary ones, or the per-parameter Euclidean distance (``score="euclidean"``,
for callers that compare raw parameters). Ties keep the simpler candidate (identity < greedy <
refined). :func:`align_report` also returns an :class:`AlignReport`: which candidate won and the
distance of each. The symmetry moves themselves are in :mod:`toroid.worker.landscape.symmetry`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from toroid.worker.landscape.distances import geodesic_distance, hamming_distance
from toroid.worker.landscape.graph import UnitGraph, UnitGroup, sphere_blocks, unit_graph
from toroid.worker.landscape.graph_units import Producer, tensor_name
from toroid.worker.landscape.symmetry import UnitMatch, _columns, _flip_group, _permute_group, _weight

__all__ = ["ALIGN_METHODS", "ALIGN_SCORES", "CANDIDATES", "AlignReport", "align", "align_permutations",
           "align_report"]

#: ``best``: the best of identity, greedy and refined (default); ``greedy``: the paper's Algorithm 2
#: as it is; ``refine``: greedy followed by the refinement, whatever their distances.
ALIGN_METHODS = ("best", "greedy", "refine")
#: ``auto``: ``hamming`` for binary networks, ``geodesic`` otherwise.
ALIGN_SCORES = ("auto", "geodesic", "hamming", "euclidean")
#: The candidates, simplest first (a tie keeps the simpler one).
CANDIDATES = ("identity", "greedy", "refined")


@dataclass
class AlignReport:
    """How :func:`align` chose its result (docs/method.md §3).

    ``chosen``: the candidate returned; ``distances``: the score (the distance named by ``score``)
    between the reference and each candidate tried (``align`` and ``align_permutations`` with
    ``method="greedy"`` or ``"refine"`` choose nothing and measure nothing: empty); ``sweeps``:
    refinement sweeps run (0: no refinement); ``matches``: per unit group, the :class:`UnitMatch` of
    the returned model.
    """

    method: str
    score: str
    chosen: str
    distances: dict[str, float]
    sweeps: int = 0
    matches: dict[str, UnitMatch] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The record without the permutations (what results carry): JSON-able."""
        return {"method": self.method, "score": self.score, "chosen": self.chosen,
                "distances": {k: float(v) for k, v in self.distances.items()}, "sweeps": int(self.sweeps)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "matches": {k: m.to_dict() for k, m in self.matches.items()}}


# --------------------------------------------------------------------------------------------------
# shared pieces


def _signs_of(w: torch.Tensor) -> torch.Tensor:
    """The +-1 weights of a binary layer (``binarize``: +1 for a latent 0, docs/method.md §4)."""
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def _unit_rows(model: nn.Module, p: Producer) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened incoming weights of the producer's units and the factors making them unit vectors
    (binary producers: the +-1 weights, factor 1 / sqrt(fan-in))."""
    rows = _weight(model, p.module, p.weight).detach().flatten(1)
    if p.binary:
        rows = _signs_of(rows)
        return rows, torch.full((rows.shape[0],), 1.0 / math.sqrt(rows.shape[1]), dtype=rows.dtype)
    return rows, 1.0 / torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-30)


def _similarity(reference: nn.Module, model: nn.Module, p: Producer) -> torch.Tensor:
    """Cosine similarity ``C[i, j]`` of reference unit ``i`` and model unit ``j`` (docs/method.md §3)."""
    ra, fa = _unit_rows(reference, p)
    rb, fb = _unit_rows(model, p)
    return (ra @ rb.T) * fa[:, None] * fb.to(fa)[None, :]


def _matched(reference: nn.Module, model: nn.Module, p: Producer) -> torch.Tensor:
    """The diagonal ``C[k, k]`` of :func:`_similarity` (matched units), without the full matrix."""
    ra, fa = _unit_rows(reference, p)
    rb, fb = _unit_rows(model, p)
    return (ra * rb.to(ra)).sum(1) * fa * fb.to(fa)


def _check_same_structure(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError(
            "the two models have different architectures (state_dict keys or shapes differ); "
            "alignment needs two networks of the same architecture"
        )


class _Frame:
    """The working copy of the model and, per aligned group, the composed move applied so far:
    unit ``k`` of the copy is the original unit ``perm[k]`` times ``signs[k]``."""

    def __init__(self, model: nn.Module, graph: UnitGraph, *, own: bool = True) -> None:
        self.model = copy.deepcopy(model) if own else model  # not own: read only (the identity)
        self.graph = graph
        self.totals: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def copy(self) -> _Frame:
        other = _Frame.__new__(_Frame)
        other.model, other.graph = copy.deepcopy(self.model), self.graph
        other.totals = {i: (p.copy(), None if s is None else s.copy()) for i, (p, s) in self.totals.items()}
        return other

    def move(self, i: int, cols: np.ndarray, signs: np.ndarray | None) -> bool:
        """Unit ``k`` becomes the current unit ``cols[k]`` times ``signs[k]``; False if nothing moved."""
        group = self.graph.groups[i]
        prev_perm, prev_signs = self.totals.get(i, (np.arange(group.size), None))
        total_signs = prev_signs
        if signs is not None:
            base = np.ones(group.size, dtype=np.int64) if prev_signs is None else prev_signs[cols]
            total_signs = base * signs
        self.totals[i] = (prev_perm[cols], total_signs)
        if bool(np.all(cols == np.arange(group.size))) and (signs is None or bool(np.all(signs > 0))):
            return False
        _permute_group(self.model, group, torch.as_tensor(cols, dtype=torch.long))
        if signs is not None:
            _flip_group(self.model, group, torch.as_tensor(signs, dtype=torch.float64))
        return True

    def undo(self, i: int, cols: np.ndarray, signs: np.ndarray | None, before) -> None:
        group = self.graph.groups[i]
        if signs is not None:
            _flip_group(self.model, group, torch.as_tensor(signs, dtype=torch.float64))
        _permute_group(self.model, group, torch.as_tensor(np.argsort(cols), dtype=torch.long))
        self.totals[i] = before


def _active(graph: UnitGraph) -> list[int]:
    return [i for i, g in enumerate(graph.groups) if g.permutable and not g.output and g.size > 1]


def _assign(sim: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``linear_sum_assignment`` on ``sim`` (flippable groups: on ``|sim|``, flipping negative matches)."""
    _, cols = linear_sum_assignment(np.abs(sim) if flip else sim, maximize=True)
    signs = np.where(sim[np.arange(len(cols)), cols] < 0, -1, 1).astype(np.int64) if flip else None
    return cols, signs


# --------------------------------------------------------------------------------------------------
# greedy: the paper's Algorithm 2 (docs/method.md §3, §4)


def _greedy(reference: nn.Module, model: nn.Module, graph: UnitGraph, max_sweeps: int) -> _Frame:
    """Bottom-up matching on the incoming weights. Residual streams (a Toroid extension): the first
    sweep uses the writers whose inputs are already aligned; further sweeps (at most ``max_sweeps``)
    re-solve every group with all writers until nothing changes. Chain networks: one sweep."""
    frame = _Frame(model, graph)
    active = _active(graph)
    done = {i for i in range(len(graph.groups)) if i not in active}
    for sweep in range(max_sweeps):
        changed = skipped = False
        for i in active:
            group = graph.groups[i]
            producers = group.producers
            if sweep == 0:
                producers = [p for p in producers if p.input_group is None or p.input_group in done]
                skipped |= len(producers) < len(group.producers)
                if not producers:
                    continue
            sim = sum(_similarity(reference, frame.model, p) for p in producers)
            cols, signs = _assign(sim.double().cpu().numpy() / len(producers), group.flippable)
            changed |= frame.move(i, cols, signs)
            done.add(i)
        if sweep == 0 and not skipped:  # no residual cycles: the paper's single bottom-up pass
            break
        if sweep > 0 and not changed:
            break
    return frame


# --------------------------------------------------------------------------------------------------
# the score: the distance the caller reports (docs/method.md §5)


class _Score:
    """The distance to minimize, globally (:meth:`distance`) and restricted to the tensors one group
    moves (:meth:`local`: an additive part of the squared geodesic distance, of the number of
    differing +-1 weights, or of the squared Euclidean distance)."""

    def __init__(self, reference: nn.Module, graph: UnitGraph, name: str) -> None:
        self.reference, self.graph, self.name = reference, graph, name
        self.blocks = sphere_blocks(reference) if name == "geodesic" else []
        self.radius = {b.param: (b.radius, b.per_unit) for b in self.blocks}
        self.outputs = {p.weight_name for g in graph.groups if g.output for p in g.producers}
        self.binary = {name for name, m in reference.named_modules() if getattr(m, "binary", False)}
        self.params = dict(reference.named_parameters())
        self.state = reference.state_dict()

    def distance(self, model: nn.Module) -> float:
        if self.name == "geodesic":
            return geodesic_distance(self.reference, model, blocks=self.blocks)
        if self.name == "hamming":
            return hamming_distance(self.reference, model)
        other = dict(model.named_parameters())
        total = sum(float(((p.detach().double() - other[k].detach().double().to(p.device)) ** 2).sum())
                    for k, p in self.params.items())
        count = sum(p.numel() for p in self.params.values())
        return math.sqrt(total / max(count, 1))

    def local(self, model: nn.Module, group: UnitGroup) -> float:
        names = {p.weight_name for p in group.producers} | {c.weight_name for c in group.consumers if not c.fixed}
        names |= {p.bias_name for p in group.producers if p.bias_name is not None}
        names |= {tensor_name(f, a) for f in group.followers for a in ("weight", "bias")}
        mine, other = self.state, model.state_dict()
        total = 0.0
        for name in sorted(n for n in names if n in mine):
            a, b = mine[name].detach(), other[name].detach().to(mine[name].device)
            if self.name == "geodesic":
                if name not in self.radius:
                    continue
                radius, per_unit = self.radius[name]
                phi = _row_angles(a.flatten(1) if per_unit else a.reshape(1, -1),
                                  b.flatten(1) if per_unit else b.reshape(1, -1))[0]
                total += radius**2 * float((phi * phi).sum(dtype=torch.float64))
            elif self.name == "hamming":
                if name.rpartition(".")[0] in self.binary:
                    total += float(((a >= 0) != (b >= 0)).sum())
            elif name in self.params:
                total += float((a - b).pow(2).sum(dtype=torch.float64))
        return total

    def improved(self, before: float, after: float) -> bool:
        """A strict decrease (counts of differing weights are exact; angles and squares, computed in
        the weights' precision, must drop by more than their rounding)."""
        return after < before if self.name == "hamming" else after < before - 1e-7 * before


def _row_angles(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Angles between the rows of ``a`` and ``b`` in their own precision (the stable
    ``2 asin(chord / 2)`` of docs/method.md §10) and the two row norms."""
    na, nb = a.norm(dim=1), b.norm(dim=1)
    chord = (a / na.clamp_min(1e-30)[:, None] - b / nb.clamp_min(1e-30)[:, None]).norm(dim=1)
    return 2.0 * torch.asin((chord / 2.0).clamp(max=1.0)), na, nb


# --------------------------------------------------------------------------------------------------
# refinement: coordinate descent over the groups on incoming AND outgoing weights (weight matching)


def _rows(model: nn.Module, module: str, attr: str, binary: bool) -> torch.Tensor:
    w = _weight(model, module, attr).detach()
    return _signs_of(w) if binary else w


def _incoming(score: _Score, reference: nn.Module, model: nn.Module, group: UnitGroup,
              signs: tuple[int, ...]) -> list[torch.Tensor]:
    """Per sign ``s``, the gain ``G_s[i, j]`` of putting model unit ``j`` (times ``s``) in slot ``i``,
    from the units' own incoming weights (higher is better; same units as ``-local``)."""
    total = [None] * len(signs)
    for p in group.producers:
        binary = score.name == "hamming"
        if binary and p.module not in score.binary:
            continue  # the Hamming distance counts binary layers only
        ra = _rows(reference, p.module, p.weight, binary).flatten(1)
        rb = _rows(model, p.module, p.weight, binary).flatten(1).to(ra)
        if score.name == "euclidean" and p.bias is not None:  # -||a - s b||^2 = 2 s a.b + const
            ra = torch.cat([ra, _weight(reference, p.module, p.bias).detach()[:, None]], 1)
            rb = torch.cat([rb, _weight(model, p.module, p.bias).detach()[:, None].to(ra)], 1)
        dots = ra @ rb.T
        if score.name == "geodesic":
            cos = dots / (ra.norm(dim=1)[:, None] * rb.norm(dim=1)[None, :]).clamp_min(1e-30)
            cos = cos.double().clamp(-1.0, 1.0)
            if p.weight_name in score.radius:  # an exact part of D^2: -phi^2 (docs/method.md §5)
                terms = [-torch.arccos(s * cos) ** 2 for s in signs]
            else:  # not in the distance (residual writers, permutation-only units): its linearization
                terms = [2.0 * s * cos for s in signs]
        else:  # differing +-1 weights = (n - a.b) / 2; squared Euclidean = const - 2 a.b
            terms = [(0.5 if score.name == "hamming" else 2.0) * s * dots.double() for s in signs]
        total = [t if acc is None else acc + t for acc, t in zip(total, terms, strict=True)]
    return [torch.zeros(group.size, group.size, dtype=torch.float64) if t is None else t for t in total]


def _outgoing(score: _Score, reference: nn.Module, model: nn.Module, group: UnitGroup) -> torch.Tensor | None:
    """``L[i, j]``: the gain, linear in the move, of putting model unit ``j``'s outgoing columns in slot
    ``i`` of every consumer (geodesic: the first-order change of D^2 through each consumer row's
    cosine, weighted by ``2 phi / sin phi``; Hamming and Euclidean: exact)."""
    total = None
    for c in group.consumers:
        if c.fixed:
            continue
        binary = score.name == "hamming"
        if binary and c.module not in score.binary:
            continue
        wa = _rows(reference, c.module, c.weight, binary)
        wb = _rows(model, c.module, c.weight, binary).to(wa)
        start, block = _columns(reference, c, group.size)
        ua = wa[:, start:start + group.size * block].reshape(wa.shape[0], group.size, -1)
        ub = wb[:, start:start + group.size * block].reshape(wb.shape[0], group.size, -1)
        if score.name == "geodesic":
            fa, fb = wa.flatten(1), wb.flatten(1)
            if c.weight_name in score.outputs:  # one angle for the whole last layer, radius^2 = H_L
                phi, na, nb = _row_angles(fa.reshape(1, -1), fb.reshape(1, -1))
                factor = (fa.shape[0] * _slope(phi) / (na * nb).clamp_min(1e-30)).expand(fa.shape[0])
            else:
                phi, na, nb = _row_angles(fa, fb)
                factor = _slope(phi) / (na * nb).clamp_min(1e-30)
            ua = ua * factor.to(ua)[:, None, None]
        weight = 0.5 if score.name == "hamming" else (2.0 if score.name == "euclidean" else 1.0)
        term = weight * torch.einsum("mik,mjk->ij", ua, ub).double()
        total = term if total is None else total + term
    return total


def _slope(phi: torch.Tensor) -> torch.Tensor:
    """``-d(phi^2) / d(cos phi) = 2 phi / sin phi`` (2 at phi = 0; bounded near pi)."""
    return torch.where(phi < 1e-4, torch.full_like(phi, 2.0), 2.0 * phi / torch.sin(phi).clamp_min(1e-3))


def _neighbours(graph: UnitGraph) -> dict[int, set[int]]:
    """Per group, the groups whose moves change its gains: the groups its producers read and the
    groups produced by its consumers."""
    out: dict[int, set[int]] = {i: set() for i in range(len(graph.groups))}
    for j, g in enumerate(graph.groups):
        for p in g.producers:
            if p.input_group is not None and p.input_group != j:
                out[j].add(p.input_group)
                out[p.input_group].add(j)
    return out


def _solve(score: _Score, reference: nn.Module, model: nn.Module, group: UnitGroup):
    """The assignment (and signs) maximizing the group's incoming + outgoing gain."""
    signs_tried = (1, -1) if group.flippable else (1,)
    gains = _incoming(score, reference, model, group, signs_tried)
    out = _outgoing(score, reference, model, group)
    if out is not None:
        gains = [g + s * out.to(g) for g, s in zip(gains, signs_tried, strict=True)]
    if not group.flippable:
        return linear_sum_assignment(gains[0].cpu().numpy(), maximize=True)[1], None
    plus, minus = gains[0].cpu().numpy(), gains[1].cpu().numpy()
    _, cols = linear_sum_assignment(np.maximum(plus, minus), maximize=True)
    rows = np.arange(group.size)
    return cols, np.where(minus[rows, cols] > plus[rows, cols], -1, 1).astype(np.int64)


def _refine(reference: nn.Module, frame: _Frame, score: _Score, refine_sweeps: int) -> int:
    """Coordinate descent: per group, the assignment maximizing its incoming + outgoing gain given
    the neighbours; kept only when the group's part of the distance strictly drops. A group is
    solved again only after a neighbour moved. Returns the sweeps run."""
    active = _active(frame.graph)
    neighbours = _neighbours(frame.graph)
    dirty = set(active)
    sweeps = 0
    while dirty and sweeps < refine_sweeps:
        sweeps += 1
        for i in active:
            if i not in dirty:
                continue
            dirty.discard(i)
            group = frame.graph.groups[i]
            cols, signs = _solve(score, reference, frame.model, group)
            if bool(np.all(cols == np.arange(group.size))) and (signs is None or bool(np.all(signs > 0))):
                continue
            before_cost = score.local(frame.model, group)
            before = frame.totals.get(i, (np.arange(group.size), None))
            before = (before[0].copy(), None if before[1] is None else before[1].copy())
            frame.move(i, cols, signs)
            if score.improved(before_cost, score.local(frame.model, group)):
                dirty |= neighbours[i] & set(active)
            else:
                frame.undo(i, cols, signs, before)
    return sweeps


# --------------------------------------------------------------------------------------------------
# the public functions


def _score_name(score: str, binary: bool) -> str:
    if score not in ALIGN_SCORES:
        raise ValueError(f"score={score!r} is not one of {list(ALIGN_SCORES)}")
    if score == "auto":
        return "hamming" if binary else "geodesic"
    if score == "hamming" and not binary:
        raise ValueError("score='hamming' needs binary networks; continuous ones use 'geodesic' or 'euclidean'")
    if score == "geodesic" and binary:
        raise ValueError("score='geodesic' needs continuous networks (docs/method.md §4): use 'hamming'")
    return score


def _same_signs(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    a = a if a is None or not bool(np.all(a > 0)) else None
    b = b if b is None or not bool(np.all(b > 0)) else None
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _matches(reference: nn.Module, frame: _Frame) -> dict[str, UnitMatch]:
    out = {}
    for i in _active(frame.graph):
        group = frame.graph.groups[i]
        perm, signs = frame.totals.get(i, (np.arange(group.size), None))
        if signs is None and group.flippable:
            signs = np.ones(group.size, dtype=np.int64)
        sim = sum(_matched(reference, frame.model, p) for p in group.producers)
        out[group.name] = UnitMatch(perm, signs, float(sim.double().mean()) / len(group.producers))
    return out


def align_report(
    reference: nn.Module,
    model: nn.Module,
    *,
    method: str = "best",
    score: str = "auto",
    max_sweeps: int = 5,
    refine_sweeps: int = 30,
) -> tuple[nn.Module, AlignReport]:
    """Align ``model`` to ``reference`` (docs/method.md §3, §4). Returns a new model and the
    :class:`AlignReport` of how it was chosen.

    ``method="best"`` (default): the candidate among identity, greedy (the paper's Algorithm 2) and
    refined (greedy, then the weight-matching refinement) with the smallest ``score``, the simpler
    one on ties; ``"greedy"``: the paper's algorithm as it is; ``"refine"``: greedy + refinement.
    ``score``: ``"auto"`` (Hamming distance for binary networks, geodesic distance otherwise; give
    normalized networks, as the callers of the geodesic distance do), ``"geodesic"``,
    ``"hamming"`` or ``"euclidean"`` (per-parameter Euclidean distance, for raw parameters).
    ``max_sweeps``: greedy sweeps for residual streams; ``refine_sweeps``: cap on refinement sweeps.
    """
    return _align_report(reference, model, method, score, max_sweeps, refine_sweeps, measure=True)


def _align_report(reference: nn.Module, model: nn.Module, method: str, score: str, max_sweeps: int,
                  refine_sweeps: int, *, measure: bool) -> tuple[nn.Module, AlignReport]:
    """:func:`align_report`; without ``measure``, ``method="greedy"`` and ``"refine"`` skip the
    candidates' distances (nothing to choose: the paper's cost for ``"greedy"``)."""
    if method not in ALIGN_METHODS:
        raise ValueError(f"method={method!r} is not one of {list(ALIGN_METHODS)}")
    _check_same_structure(reference, model)
    if max_sweeps < 1 or refine_sweeps < 1:
        raise ValueError(f"max_sweeps and refine_sweeps must be >= 1, got {max_sweeps}, {refine_sweeps}")
    graph = unit_graph(reference)
    scorer = _Score(reference, graph, _score_name(score, graph.binary))
    frames = {"identity": _Frame(model, graph, own=False)}
    frames["greedy"] = _greedy(reference, model, graph, max_sweeps)
    sweeps = 0
    if method != "greedy":
        frames["refined"] = frames["greedy"].copy()
        sweeps = _refine(reference, frames["refined"], scorer, refine_sweeps)
    measure = measure or method == "best"
    distances = {name: scorer.distance(f.model) for name, f in frames.items() if name != "refined" and measure}
    if "refined" in frames and measure:  # no refinement step kept: the greedy result, not measured twice
        same = frames["refined"].totals.keys() == frames["greedy"].totals.keys() and all(
            np.array_equal(frames["refined"].totals[i][0], frames["greedy"].totals[i][0])
            and _same_signs(frames["refined"].totals[i][1], frames["greedy"].totals[i][1])
            for i in frames["greedy"].totals)
        distances["refined"] = distances["greedy"] if same else scorer.distance(frames["refined"].model)
    if method == "best":
        chosen = "identity"
        for name in CANDIDATES[1:]:
            if distances[name] < distances[chosen] - 1e-12 * max(1.0, distances[chosen]):
                chosen = name
    else:
        chosen = "greedy" if method == "greedy" else "refined"
    frame = frames[chosen]
    report = AlignReport(method, scorer.name, chosen, distances, sweeps, _matches(reference, frame))
    return (copy.deepcopy(model) if chosen == "identity" else frame.model), report


def align_permutations(
    reference: nn.Module, model: nn.Module, *, method: str = "best", score: str = "auto",
    max_sweeps: int = 5, refine_sweeps: int = 30,
) -> tuple[nn.Module, dict[str, UnitMatch]]:
    """:func:`align_report`'s model and, per unit group, the :class:`UnitMatch` applied: aligned
    unit ``k`` is the model's original unit ``perm[k]`` (times ``signs[k]``)."""
    aligned, report = _align_report(reference, model, method, score, max_sweeps, refine_sweeps, measure=False)
    return aligned, report.matches


def align(reference: nn.Module, model: nn.Module, *, method: str = "best", score: str = "auto",
          max_sweeps: int = 5, refine_sweeps: int = 30) -> nn.Module:
    """``model`` aligned to ``reference``: a new model (see :func:`align_report`)."""
    return _align_report(reference, model, method, score, max_sweeps, refine_sweeps, measure=False)[0]
