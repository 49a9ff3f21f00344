"""The torus chart: error on a two-dimensional torus through normalized, aligned minima.

docs/method.md §7 (a Toroid construction built on §§2, 5 and 7). After
normalization every hidden unit lives on its unit sphere and the last layer on the sphere of radius
sqrt(H_L); the great circle of each unit through A and B (and C) gives one circle per unit, and two
torus coordinates move groups of units around their circles (:class:`_TorusChart`).
:func:`torus_point` returns the network at a torus point, :func:`torus_slice` the error on a grid
over the whole torus. The per-unit geometry (angles, slerp, small-angle fallback) is the one of the
geodesic paths (:mod:`toroid.worker.landscape.paths`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from toroid.worker.landscape.alignment import align_report
from toroid.worker.landscape.combination import CombinationEvaluator
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.graph import SphereBlock, is_binary, sphere_blocks
from toroid.worker.landscape.paths import (
    SMALL_ANGLE,
    Progress,
    _check_bn,
    _float_keys,
    _model_from_state,
    _UnitPair,
)
from toroid.worker.landscape.progressive import GridOrder, GridProgress
from toroid.worker.landscape.results import TorusSlice
from toroid.worker.landscape.states import as_state, combine_states
from toroid.worker.landscape.symmetry import normalize

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = ["TorusGroups", "torus_point", "torus_slice"]

TorusGroups = str | Sequence[str]


class _TorusChart:
    """The torus construction of docs/method.md §7 over prepared A, B (and C).

    Every unit k (and the last layer as one vector) moves on the great circle through a_k and
    b_k: point cos(theta) a_k + sin(theta) u_k with u_k the unit tangent at a_k toward b_k.
    A torus coordinate alpha in [0, 2 pi) maps to theta_k by the piecewise-linear circle map
    h_k(alpha) = alpha phi_k / Phi for alpha <= Phi, phi_k + (alpha - Phi)(2 pi - phi_k) /
    (2 pi - Phi) beyond, Phi = mean phi_k over the unit's group.
    """

    def __init__(
        self, a: nn.Module, b: nn.Module, c: nn.Module | None = None, groups: TorusGroups = "first_layer"
    ) -> None:
        blocks = sphere_blocks(a)
        if not blocks:
            raise ValueError("the network has no sphere blocks (units on spheres): no torus to slice")
        sa, sb = as_state(a), as_state(b)
        self.states = [sa, sb]
        self.blocks = blocks
        self.pairs_b = [_UnitPair.build(blk, sa[blk.param], sb[blk.param]) for blk in blocks]
        self.third = c is not None
        float_keys = _float_keys(sa)
        sphere_keys = {blk.param for blk in blocks}
        if self.third:
            sc = as_state(c)
            self.states.append(sc)
            self.pairs_c = [_UnitPair.build(blk, sa[blk.param], sc[blk.param]) for blk in blocks]
            self.gamma = [
                self._tangent_cosine(blk, sa, sb, sc, pb, pc)
                for blk, pb, pc in zip(blocks, self.pairs_b, self.pairs_c, strict=True)
            ]
            # both coordinates move every unit: one group per coordinate, over all units
            self.block_group = [0] * len(blocks)
            self.free_group = {k: 0 for k in float_keys if k not in sphere_keys}
            self.phi_groups = [self._mean_angle(self.pairs_b), self._mean_angle(self.pairs_c)]
        else:
            in_first = self._first_group(blocks, groups)
            self.block_group = [0 if blk.group in in_first else 1 for blk in blocks]
            if all(g == 0 for g in self.block_group) or all(g == 1 for g in self.block_group):
                raise ValueError(
                    f"groups={groups!r} puts every unit in one group; both torus axes need units"
                )
            self.free_group = {}
            current = self.block_group[0]
            param_group = {blk.param: g for blk, g in zip(blocks, self.block_group, strict=True)}
            for k in float_keys:  # a free parameter follows the nearest preceding sphere block
                if k in param_group:
                    current = param_group[k]
                else:
                    self.free_group[k] = current
            self.phi_groups = [
                self._mean_angle([p for p, g in zip(self.pairs_b, self.block_group, strict=True) if g == gi])
                for gi in (0, 1)
            ]

    @staticmethod
    def _first_group(blocks: Sequence[SphereBlock], groups: TorusGroups) -> set[str]:
        names = [blk.group for blk in blocks]
        if groups == "first_layer":
            return {names[0]}
        if groups == "last_layer":
            return set(names) - {names[-1]}
        if isinstance(groups, str):
            raise ValueError(
                f"groups must be 'first_layer', 'last_layer' or a list of unit group names {sorted(set(names))}, "
                f"got {groups!r}"
            )
        chosen = set(groups)
        unknown = chosen - set(names)
        if unknown:
            raise ValueError(f"unknown unit groups {sorted(unknown)}; the network has {sorted(set(names))}")
        return chosen

    @staticmethod
    def _mean_angle(pairs: Sequence[_UnitPair]) -> float:
        phis = torch.cat([p.phi for p in pairs])
        return float(phis.mean()) if len(phis) else 0.0

    @staticmethod
    def _tangent_cosine(
        blk: SphereBlock,
        sa: Mapping[str, Tensor],
        sb: Mapping[str, Tensor],
        sc: Mapping[str, Tensor],
        pb: _UnitPair,
        pc: _UnitPair,
    ) -> Tensor:
        """Cosine between the unit tangents at a_k toward b_k and toward c_k (0 when degenerate)."""
        rows = sa[blk.param].shape[0] if blk.per_unit else 1
        a, b, c = (s[blk.param].detach().double().reshape(rows, -1).cpu() for s in (sa, sb, sc))
        r = pb.radius
        ub = (b - torch.cos(pb.phi)[:, None] * a) / torch.sin(pb.phi).clamp(min=1e-300)[:, None]
        uc = (c - torch.cos(pc.phi)[:, None] * a) / torch.sin(pc.phi).clamp(min=1e-300)[:, None]
        gamma = (ub * uc).sum(1) / (r * r)
        degenerate = (pb.phi < SMALL_ANGLE) | (pc.phi < SMALL_ANGLE)
        return torch.where(degenerate, torch.zeros_like(gamma), gamma)

    @staticmethod
    def circle_map(alpha: float, phi: Tensor, big_phi: float) -> Tensor:
        """h_k(alpha): torus coordinate -> circle angle of each unit (identity-free, periodic)."""
        if big_phi <= 0.0:
            return torch.zeros_like(phi)
        alpha = alpha % (2 * math.pi)
        if alpha <= big_phi:
            return alpha * phi / big_phi
        return phi + (alpha - big_phi) * (2 * math.pi - phi) / (2 * math.pi - big_phi)

    @staticmethod
    def fraction(alpha: float, big_phi: float) -> float:
        """Fraction of the way from A to the other minimum for free parameters (back to A beyond Phi)."""
        if big_phi <= 0.0:
            return 0.0
        alpha = alpha % (2 * math.pi)
        if alpha <= big_phi:
            return alpha / big_phi
        return (2 * math.pi - alpha) / (2 * math.pi - big_phi)

    @staticmethod
    def _circle_coefficients(theta: Tensor, pair: _UnitPair, t: float) -> tuple[Tensor, Tensor]:
        """(c_a, c_other) of cos(theta) a + sin(theta) u (u the tangent toward the other point)."""
        small = pair.phi < SMALL_ANGLE
        safe = torch.where(small, torch.ones_like(pair.phi), pair.phi)
        ca = torch.cos(theta) - torch.sin(theta) * torch.cos(safe) / torch.sin(safe)
        co = torch.sin(theta) / torch.sin(safe)
        ca = torch.where(small, torch.full_like(ca, 1.0 - t), ca)
        co = torch.where(small, torch.full_like(co, t), co)
        return ca, co

    def coefficients(self, alpha1: float, alpha2: float) -> dict[str, Tensor]:
        """Combination coefficients over (A, B) or (A, B, C) of the torus point (alpha1, alpha2)."""
        coefs: dict[str, Tensor] = {}
        alphas = (alpha1, alpha2)
        t = [self.fraction(alphas[g], self.phi_groups[g]) for g in (0, 1)]
        if not self.third:
            for pair, g in zip(self.pairs_b, self.block_group, strict=True):
                theta = self.circle_map(alphas[g], pair.phi, self.phi_groups[g])
                coefs[pair.key] = pair.shaped(self._circle_coefficients(theta, pair, t[g]))
            for k, g in self.free_group.items():
                coefs[k] = torch.tensor([1.0 - t[g], t[g]], dtype=torch.float64)
            return coefs
        for pb, pc, gamma in zip(self.pairs_b, self.pairs_c, self.gamma, strict=True):
            th1 = self.circle_map(alpha1, pb.phi, self.phi_groups[0])
            th2 = self.circle_map(alpha2, pc.phi, self.phi_groups[1])
            # first the rotation toward B: v = cos(th1) a + sin(th1) u_B (lerp when degenerate)
            ca, cb = self._circle_coefficients(th1, pb, t[0])
            small_b = pb.phi < SMALL_ANGLE
            va = torch.where(small_b, torch.ones_like(th1), torch.cos(th1))  # v . a_hat / r
            vc = torch.where(small_b, torch.zeros_like(th1), torch.sin(th1) * gamma)  # v . u_C_hat / r
            # then the rotation by th2 in the plane (a_hat, u_C_hat), u_C = (c - cos(phi_C) a) / sin(phi_C):
            # v + [(cos th2 - 1) va - sin th2 vc] a_hat + [sin th2 va + (cos th2 - 1) vc] u_C_hat
            s = torch.sin(th2) * va + (torch.cos(th2) - 1.0) * vc
            small_c = pc.phi < SMALL_ANGLE
            safe = torch.where(small_c, torch.ones_like(pc.phi), pc.phi)
            rot_a = (
                ca + (torch.cos(th2) - 1.0) * va - torch.sin(th2) * vc - s * torch.cos(safe) / torch.sin(safe)
            )
            rot_c = s / torch.sin(safe)
            # degenerate A->C circle (c_k = a_k): no rotation, move linearly toward C instead
            cc = torch.where(small_c, torch.full_like(rot_c, t[1]), rot_c)
            ca = torch.where(small_c, ca - t[1], rot_a)
            coefs[pb.key] = pb.shaped((ca, cb, cc))
        for k in self.free_group:
            coefs[k] = torch.tensor([1.0 - t[0] - t[1], t[0], t[1]], dtype=torch.float64)
        return coefs


def torus_point(
    a: nn.Module,
    b: nn.Module,
    alpha1: float,
    alpha2: float,
    c: nn.Module | None = None,
    groups: TorusGroups = "first_layer",
) -> nn.Module:
    """The network at torus coordinates (alpha1, alpha2) for *prepared* (normalized, aligned) A, B (C).

    BN running statistics follow the free-parameter fractions (linear); :func:`torus_slice`
    recomputes them by default.
    """
    chart = _TorusChart(a, b, c, groups)
    coefs = chart.coefficients(float(alpha1), float(alpha2))
    return _model_from_state(a, combine_states(chart.states, coefs))


def prepare_torus(
    a: nn.Module, b: nn.Module, c: nn.Module | None = None
) -> tuple[nn.Module, nn.Module, nn.Module | None, dict[str, Any]]:
    """The networks a torus slice computes on: A normalized, B (and C) normalized and aligned to A, and the
    alignments' summaries (docs/method.md §3: which candidate alignment won, its distances)."""
    alignment: dict[str, Any] = {}
    a = normalize(a)
    b, report = align_report(a, normalize(b))
    alignment["B"] = report.summary()
    if c is not None:
        c, report = align_report(a, normalize(c))
        alignment["C"] = report.summary()
    return a, b, c, alignment


def torus_slice(
    a: nn.Module,
    b: nn.Module,
    dataset: Dataset | Any,
    c: nn.Module | None = None,
    resolution: int = 33,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    groups: TorusGroups = "first_layer",
    bn: Literal["recompute", "interpolate"] = "recompute",
    prepared: bool = False,
    evaluator: Evaluator | None = None,
    factorize: bool = True,
    order: GridOrder = "coarse_to_fine",
    cells: Sequence[int] | None = None,
) -> TorusSlice:
    """Error on a two-dimensional torus through A and B (and C) in the normalized space.

    Without C, the units are split into two groups (``groups``: ``first_layer`` - the first
    hidden layer vs. everything else -, ``last_layer`` - everything but the last layer vs. the
    last layer -, or a list of unit group names forming the first group); each torus
    coordinate moves its group's units around their A->B great circles.  A is at (0, 0), B at
    (Phi_1, Phi_2) and the geodesic between them is the straight segment.  With C, phi1 moves
    every unit along its A->B circle and phi2 along its A->C circle: A = (0, 0), B = (Phi_B, 0),
    C = (0, Phi_C).  Both axes sample [0, 2 pi) with ``resolution`` points.  Unless
    ``prepared``, the networks are normalized and B (C) aligned to A first.

    ``order``: ``coarse_to_fine`` (default) visits a coarse subgrid over the whole torus first,
    then refines it; ``rows`` row by row. The grid is the same either way; ``progress`` receives
    each cell and, after each pass and every few cells, the slice so far
    (:class:`~toroid.worker.landscape.progressive.GridProgress`). ``cells``: evaluate only the cells at these
    positions of the visit order (``grid_order``), the others ``NaN``: one chunk of a grid split over several jobs
    (docs/operations.md, "Chunks"); an empty list computes only what every chunk shares.
    """
    if is_binary(a):
        raise ValueError(
            "torus slices need continuous networks (units on spheres); binary networks have none"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    _check_bn(bn)
    alignment: dict[str, Any] = {}
    if not prepared:
        a, b, c, alignment = prepare_torus(a, b, c)
    chart = _TorusChart(a, b, c, groups)
    ev = evaluator if evaluator is not None else Evaluator(a, dataset, device)
    combos = CombinationEvaluator(ev, chart.states, factorize=factorize)
    grid = np.linspace(0.0, 2 * math.pi, resolution, endpoint=False).tolist()
    phi1, phi2 = chart.phi_groups
    if chart.third:
        minima = {"A": [0.0, 0.0], "B": [phi1, 0.0], "C": [0.0, phi2]}
        segment = [[t * phi1, 0.0] for t in np.linspace(0.0, 1.0, 17).tolist()]
        construction = (
            "three-minima: phi1 rotates every unit along its A->B circle, phi2 along its A->C circle"
        )
    else:
        minima = {"A": [0.0, 0.0], "B": [phi1, phi2]}
        segment = [[t * phi1, t * phi2] for t in np.linspace(0.0, 1.0, 17).tolist()]
        construction = (
            f"two-groups ({groups if isinstance(groups, str) else list(groups)}): circle maps per group"
        )
    geodesic_ac = [[0.0, t * phi2] for t in np.linspace(0.0, 1.0, 17).tolist()] if chart.third else None
    minima_errors = {}
    for name, (m1, m2) in minima.items():
        res = combos.evaluate(chart.coefficients(m1, m2), "both", bn=bn)
        minima_errors[name] = {"train_error": res["train_error"], "test_error": res["test_error"]}
    # coarse to fine (docs/method.md §7): a running job reports the whole torus early, then refines it
    static = {"phi1": grid, "phi2": grid, "minima": minima, "geodesic": segment, "construction": construction,
              "extra": {"minima_errors": minima_errors, **({"geodesic_ac": geodesic_ac} if geodesic_ac else {})}}
    fill = GridProgress(resolution, order, progress, static, positions=cells)
    for i, j in fill.cells():
        a1, a2 = grid[i], grid[j]
        fill.record(i, j, combos.evaluate(chart.coefficients(a1, a2), "both", bn=bn), phi1=a1, phi2=a2)
    train, test = fill.train, fill.test
    extra = {
        "bn": bn if ev.has_bn else "none",
        "factorized": combos.factorized,
        "minima_errors": minima_errors,
        **({"alignment": alignment} if alignment else {}),
    }
    if geodesic_ac:
        extra["geodesic_ac"] = geodesic_ac
    return TorusSlice(
        phi1=grid,
        phi2=grid,
        train_error=train,
        test_error=test,
        minima=minima,
        geodesic=segment,
        construction=construction,
        extra=extra,
    )
