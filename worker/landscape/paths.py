"""Paths, barriers, planes and tori between minima (docs/method.md §7).

Path kinds (all three continuous ones are computed for every pair in the paper):

* ``linear``          raw straight line (1 - x) A + x B, no symmetry removal;
* ``linear_aligned``  straight line after aligning B to A (no normalization);
* ``geodesic``        normalize both, align B to A, then per hidden unit the slerp
                      p(x) = [sin((1 - x) phi) a + sin(x phi) b] / sin(phi) on its unit sphere,
                      with the same fraction x for every unit; the last layer slerps as one
                      vector on its sphere of radius sqrt(H_L).  Free parameters (biases, BN
                      affine) are linear in x.  This is the paper's method;
* ``flip``            binary networks: after alignment, the differing binary weights are
                      flipped one at a time in random order, several orders averaged.

Every point of these paths (and of :func:`section_2d` planes and :func:`torus_slice` tori) is a
per-unit linear combination of two or three anchor networks, evaluated with
:class:`~toroid.worker.landscape.evaluate.CombinationEvaluator`, which computes the first layer's
products X W^T once per anchor instead of once per point.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from toroid.worker.landscape.distances import geodesic_distance, unit_angles
from toroid.worker.landscape.evaluate import (
    CombinationEvaluator,
    Evaluator,
    as_state,
    combine_states,
    has_batchnorm,
    load_state,
    recalibrate_bn,
)
from toroid.worker.landscape.flatness import binary_weight_keys
from toroid.worker.landscape.results import PathProfile, Section, TorusSlice
from toroid.worker.landscape.symmetry import SphereBlock, align, is_binary, normalize, sphere_blocks

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = [
    "PATH_KINDS",
    "interpolate",
    "path_coefficients",
    "path_profile",
    "prepare_endpoints",
    "section_2d",
    "torus_point",
    "torus_slice",
]

Progress = Callable[[float, dict[str, Any]], None]
PathKind = Literal["linear", "linear_aligned", "geodesic", "flip"]
PATH_KINDS: tuple[str, ...] = ("linear", "linear_aligned", "geodesic", "flip")

#: Angles below this (radians) count as zero: slerp falls back to lerp + renormalization
#: (docs/method.md §10) and a unit's torus circle is degenerate.
SMALL_ANGLE = 1e-6


# ---------------------------------------------------------------------------------------- helpers
def _check_kind(kind: str, binary: bool) -> None:
    if kind not in PATH_KINDS:
        raise ValueError(f"unknown path kind {kind!r}; choose one of {list(PATH_KINDS)}")
    if binary and kind == "geodesic":
        raise ValueError(
            "geodesic paths need continuous networks (normalization is undefined for binary weights); "
            "use kind='flip' (or 'linear' / 'linear_aligned' on the latent weights)"
        )
    if not binary and kind == "flip":
        raise ValueError("kind='flip' is for binary networks; use 'linear', 'linear_aligned' or 'geodesic'")


def _check_points(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2 (the grid includes both endpoints), got {points!r}")
    return points


def _check_bn(bn: str) -> None:
    if bn not in ("recompute", "interpolate"):
        raise ValueError(
            f"bn must be 'recompute' (from training data at each point) or 'interpolate', got {bn!r}"
        )


def _float_keys(state: Mapping[str, Tensor]) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point()]


def _param_keys(model: nn.Module) -> list[str]:
    """Floating parameters (not buffers): the coordinates of the straight-line geometry."""
    return [name for name, p in model.named_parameters() if p.is_floating_point()]


def _euclidean(a: Mapping[str, Tensor], b: Mapping[str, Tensor], keys: Sequence[str]) -> float:
    total = 0.0
    for k in keys:
        total += float(((a[k].double() - b[k].double()) ** 2).sum())
    return math.sqrt(total)


def _model_from_state(template: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """A new module like ``template`` holding ``state`` (copied, so the module owns its tensors)."""
    model = copy.deepcopy(template)
    load_state(model, state)
    return model


# ------------------------------------------------------------------------------------ geometry
@dataclass
class _UnitPair:
    """Per-unit geometry of one sphere block between two prepared networks (float64).

    ``phi`` holds the angle of each unit (one entry for a whole-tensor block), computed by
    :func:`~toroid.worker.landscape.distances.unit_angles` in the stable form 2 asin(||a - b|| / 2) of
    the unit directions (docs/method.md §10); ``aa, bb, ab`` the dot products used for the
    small-angle fallback.
    """

    key: str
    per_unit: bool
    radius: float
    phi: Tensor
    aa: Tensor
    bb: Tensor
    ab: Tensor

    @classmethod
    def build(cls, block: SphereBlock, a: Tensor, b: Tensor) -> _UnitPair:
        rows = a.shape[0] if block.per_unit else 1
        av = a.detach().double().reshape(rows, -1).cpu()
        bv = b.detach().double().reshape(rows, -1).cpu()
        phi = unit_angles(av, bv)
        return cls(
            block.param,
            block.per_unit,
            float(block.radius),
            phi,
            (av * av).sum(1),
            (bv * bv).sum(1),
            (av * bv).sum(1),
        )

    def slerp(self, x: float) -> tuple[Tensor, Tensor]:
        """Coefficients (c_a, c_b) with p(x) = c_a a + c_b b per unit (docs/method.md §7)."""
        phi = self.phi
        small = phi < SMALL_ANGLE
        safe = torch.where(small, torch.ones_like(phi), phi)
        ca = torch.sin((1.0 - x) * safe) / torch.sin(safe)
        cb = torch.sin(x * safe) / torch.sin(safe)
        # phi ~ 0: linear interpolation, renormalized onto the sphere of radius r
        sq = (1.0 - x) ** 2 * self.aa + x**2 * self.bb + 2.0 * x * (1.0 - x) * self.ab
        norm = torch.sqrt(torch.clamp(sq, min=1e-300)) / self.radius
        ca = torch.where(small, (1.0 - x) / norm, ca)
        cb = torch.where(small, x / norm, cb)
        if x == 0.0:
            ca, cb = torch.ones_like(ca), torch.zeros_like(cb)
        elif x == 1.0:
            ca, cb = torch.zeros_like(ca), torch.ones_like(cb)
        return ca, cb

    def shaped(self, coefs: Sequence[Tensor]) -> Tensor:
        """Stack per-anchor coefficients as (M, rows) for per-unit blocks or (M,) otherwise."""
        stacked = torch.stack(list(coefs))
        return stacked if self.per_unit else stacked[:, 0]


class _PathGeometry:
    """Coefficients of the points of a path of one kind between prepared endpoints A and B."""

    def __init__(self, a: nn.Module, b: nn.Module, kind: str) -> None:
        self.kind = kind
        sa, sb = as_state(a), as_state(b)
        self.float_keys = _float_keys(sa)
        self.pairs: list[_UnitPair] = []
        if kind == "geodesic":
            self.pairs = [_UnitPair.build(blk, sa[blk.param], sb[blk.param]) for blk in sphere_blocks(a)]
        sphere_keys = {p.key for p in self.pairs}
        self.linear_keys = [k for k in self.float_keys if k not in sphere_keys]

    def coefficients(self, x: float) -> dict[str, Tensor]:
        lin = torch.tensor([1.0 - x, x], dtype=torch.float64)
        coefs: dict[str, Tensor] = {k: lin for k in self.linear_keys}
        for pair in self.pairs:
            coefs[pair.key] = pair.shaped(pair.slerp(x))
        return coefs


def path_coefficients(a: nn.Module, b: nn.Module, x: float, kind: PathKind = "geodesic") -> dict[str, Tensor]:
    """Per-key combination coefficients of the point x of a path between prepared A and B.

    The point's state is sum_m coefs[key][m] (.) state_m[key] over (A, B); see
    :class:`~toroid.worker.landscape.evaluate.CombinationEvaluator`.  Keys not listed (integer
    buffers) are A's.
    """
    if kind not in ("linear", "linear_aligned", "geodesic"):
        raise ValueError(
            f"path_coefficients supports 'linear', 'linear_aligned' and 'geodesic', got {kind!r}"
        )
    _check_x(x)
    return _PathGeometry(a, b, kind).coefficients(float(x))


def _check_x(x: float) -> None:
    if not (isinstance(x, int | float) and 0.0 <= float(x) <= 1.0):
        raise ValueError(f"x must be a number in [0, 1], got {x!r}")


# ------------------------------------------------------------------------------------- endpoints
def prepare_endpoints(a: nn.Module, b: nn.Module, kind: PathKind = "geodesic") -> tuple[nn.Module, nn.Module]:
    """The endpoints as the path ``kind`` uses them (inputs untouched).

    linear: (A, B) as given; linear_aligned and flip: (A, align(A, B)); geodesic:
    (normalize(A), align(normalize(A), normalize(B))) (docs/method.md §§2-4, 7).
    """
    _check_kind(kind, is_binary(a))
    if kind == "linear":
        return a, b
    if kind in ("linear_aligned", "flip"):
        return a, align(a, b)
    na = normalize(a)
    return na, align(na, normalize(b))


def interpolate(
    a: nn.Module,
    b: nn.Module,
    x: float,
    kind: PathKind = "geodesic",
    *,
    dataset: Dataset | Any | None = None,
    seed: int = 0,
) -> nn.Module:
    """The network at fraction x of the path ``kind`` between *prepared* endpoints A and B.

    A and B must already be prepared as the kind requires (:func:`prepare_endpoints`).  BN
    running statistics are interpolated linearly; pass ``dataset`` to recompute them from its
    training data instead.  For ``flip`` the first round(x n) differing weights of one random
    order (``seed``) are flipped.  Returns a new module (A's class), inputs untouched.
    """
    _check_kind(kind, is_binary(a))
    _check_x(x)
    sa, sb = as_state(a), as_state(b)
    if kind == "flip":
        flips = _FlipPath(a, sa, sb)
        order = flips.order(torch.Generator().manual_seed(int(seed)))
        state = flips.state(float(x), order)
    else:
        coefs = _PathGeometry(a, b, kind).coefficients(float(x))
        state = combine_states([sa, sb], coefs)
    model = _model_from_state(a, state)
    if dataset is not None and has_batchnorm(model):
        recalibrate_bn(model, torch.as_tensor(dataset.x_train))
    return model


# ----------------------------------------------------------------------------------- flip paths
class _FlipPath:
    """Binary flip path (docs/method.md §7): flip A's differing binary weights to B's one at a time."""

    def __init__(self, a: nn.Module, sa: Mapping[str, Tensor], sb: Mapping[str, Tensor]) -> None:
        self.keys = binary_weight_keys(a)
        if not self.keys:
            raise ValueError("flip paths need a binary network (layers with binary weights)")
        self.sa, self.sb = sa, sb
        self.sizes = [sa[k].numel() for k in self.keys]
        self.flat_a = torch.cat([sa[k].reshape(-1) for k in self.keys])
        self.flat_b = torch.cat([sb[k].reshape(-1) for k in self.keys])
        self.diff = torch.nonzero((self.flat_a >= 0) != (self.flat_b >= 0)).reshape(-1)
        binary_keys = set(self.keys)
        self.other_keys = [k for k in _float_keys(sa) if k not in binary_keys]

    @property
    def count(self) -> int:
        return int(self.diff.numel())

    def order(self, gen: torch.Generator) -> Tensor:
        return self.diff[torch.randperm(self.count, generator=gen).to(self.diff.device)]

    def state(self, x: float, order: Tensor) -> dict[str, Tensor]:
        flipped = int(round(x * self.count))
        flat = self.flat_a.clone()
        idx = order[:flipped]
        flat[idx] = self.flat_b[idx]
        out = {k: v for k, v in self.sa.items()}
        start = 0
        for k, size in zip(self.keys, self.sizes, strict=True):
            out[k] = flat[start : start + size].reshape(self.sa[k].shape)
            start += size
        for k in self.other_keys:  # any non-binary parameters (none in Toroid's binary zoo) move linearly
            out[k] = (1.0 - x) * self.sa[k] + x * self.sb[k]
        return out


# -------------------------------------------------------------------------------- path profiles
def path_profile(
    a: nn.Module,
    b: nn.Module,
    dataset: Dataset | Any,
    kind: PathKind = "geodesic",
    points: int = 33,
    bn: Literal["recompute", "interpolate"] = "recompute",
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    prepared: bool = False,
    orders: int = 5,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    factorize: bool = True,
) -> PathProfile:
    """Train/test error and loss along the path ``kind`` from A to B (docs/method.md §7).

    Parameters
    ----------
    a, b:
        The two networks (same architecture).  They are prepared with
        :func:`prepare_endpoints` unless ``prepared=True``.
    points:
        Evenly spaced fractions x in [0, 1], endpoints included (paper: 33).
    bn:
        BatchNorm running statistics at each point: ``recompute`` (from the training data,
        Toroid's default) or ``interpolate`` (linear in x).  Recorded in the result
        (``none`` when the network has no BatchNorm).
    orders:
        ``flip`` paths: number of random flip orders averaged.
    evaluator:
        Reuse an :class:`~toroid.worker.landscape.evaluate.Evaluator` (data already on the device).
    progress:
        Called after each point with the fraction done and the point's values.

    The barrier is the raw maximum of the train error along the path.
    """
    binary = is_binary(a)
    _check_kind(kind, binary)
    points = _check_points(points)
    _check_bn(bn)
    if kind == "flip" and (isinstance(orders, bool) or not isinstance(orders, int) or orders < 1):
        raise ValueError(f"orders must be a positive integer, got {orders!r}")
    pa, pb = (a, b) if prepared else prepare_endpoints(a, b, kind)
    ev = evaluator if evaluator is not None else Evaluator(pa, dataset, device)
    xs = np.linspace(0.0, 1.0, points).tolist()
    bn_used = bn if ev.has_bn else "none"
    rows: list[dict[str, float]] = []
    extra: dict[str, Any] = {}

    # every kind moves at constant speed in its geometry, so distance / length = x (flip paths:
    # the fraction of differing weights actually flipped)
    distance = list(xs)

    def report(i: int, row: dict[str, float]) -> None:
        rows.append(row)
        if progress is not None:
            progress((i + 1) / points, {"index": i, "x": xs[i], "distance": distance[i], **row})

    if kind == "flip":
        sa, sb = as_state(pa), as_state(pb)
        flips = _FlipPath(pa, sa, sb)
        gen = torch.Generator().manual_seed(int(seed))
        order_list = [flips.order(gen) for _ in range(orders)]
        per_order: list[list[float]] = [[] for _ in range(orders)]
        distance = [int(round(x * flips.count)) / flips.count if flips.count else x for x in xs]
        for i, x in enumerate(xs):
            results = [
                ev.evaluate_state(flips.state(x, o), "both", recalibrate=bn == "recompute" and ev.has_bn)
                for o in order_list
            ]
            for r, res in enumerate(results):
                per_order[r].append(res["train_error"])
            report(i, {key: float(np.mean([res[key] for res in results])) for key in results[0]})
        length = float(flips.count)
        total = sum(flips.sizes)
        extra.update(
            orders=orders,
            seed=int(seed),
            flipped_weights=flips.count,
            hamming=flips.count / total if total else 0.0,
            train_error_per_order=per_order,
            barrier_per_order=[max(p) for p in per_order],
        )
    else:
        geometry = _PathGeometry(pa, pb, kind)
        combos = CombinationEvaluator(ev, [pa, pb], factorize=factorize)
        for i, x in enumerate(xs):
            report(i, combos.evaluate(geometry.coefficients(x), "both", bn=bn))
        if kind == "geodesic":
            length = float(geodesic_distance(pa, pb))
        else:
            sa, sb = as_state(pa), as_state(pb)
            length = _euclidean(sa, sb, _param_keys(pa))
        extra["factorized"] = combos.factorized

    train_error = [r["train_error"] for r in rows]
    test_error = [r["test_error"] for r in rows]
    return PathProfile(
        kind=kind,
        x=xs,
        distance=distance,
        length=length,
        train_error=train_error,
        test_error=test_error,
        train_loss=[r["train_loss"] for r in rows],
        test_loss=[r["test_loss"] for r in rows],
        barrier=max(train_error),
        test_barrier=max(test_error),
        bn=bn_used,
        points=points,
        extra=extra,
    )


# ------------------------------------------------------------------------------------- sections
def section_2d(
    w1: nn.Module,
    w2: nn.Module,
    w3: nn.Module,
    dataset: Dataset | Any,
    space: Literal["raw", "normalized"] = "raw",
    resolution: int = 21,
    margin: float = 0.2,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    bn: Literal["recompute", "interpolate"] = "recompute",
    evaluator: Evaluator | None = None,
    factorize: bool = True,
) -> Section:
    """Error on the plane through three networks (docs/method.md §7, Garipov et al.).

    u = w2 - w1, v = (w3 - w1) minus its projection on u, grid w1 + x u_hat + y v_hat over
    all floating parameters.  ``space="normalized"``: normalize all three and align w2, w3 to
    w1 first.  Binary networks: the plane is taken on the latent weights and the forward pass
    binarizes.  The grid spans the three points' coordinates plus ``margin`` times their
    extent on each side, ``resolution`` points per axis.  BN statistics: ``bn`` as in
    :func:`path_profile`.
    """
    if space not in ("raw", "normalized"):
        raise ValueError(f"space must be 'raw' or 'normalized', got {space!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if not (isinstance(margin, int | float) and margin >= 0):
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    _check_bn(bn)
    if space == "normalized":
        if is_binary(w1):
            raise ValueError("space='normalized' needs continuous networks; binary networks use space='raw'")
        w1 = normalize(w1)
        w2 = align(w1, normalize(w2))
        w3 = align(w1, normalize(w3))
    s1, s2, s3 = as_state(w1), as_state(w2), as_state(w3)
    keys = _param_keys(w1)
    u = torch.cat([(s2[k].double() - s1[k].double()).reshape(-1) for k in keys])
    d3 = torch.cat([(s3[k].double() - s1[k].double()).reshape(-1) for k in keys])
    u_norm = float(u.norm())
    if u_norm == 0.0:
        raise ValueError("w1 and w2 are identical: they do not span a plane")
    p = float(d3 @ u) / u_norm
    v_norm = float((d3 - p * u / u_norm).norm())
    if v_norm <= 1e-6 * max(u_norm, float(d3.norm())):  # float32 parameters: relative precision ~1e-7
        raise ValueError("w3 lies on the line through w1 and w2: the three networks do not span a plane")
    coords = {"w1": [0.0, 0.0], "w2": [u_norm, 0.0], "w3": [p, v_norm]}
    xs_pts = [c[0] for c in coords.values()]
    ys_pts = [c[1] for c in coords.values()]
    span = max(max(xs_pts) - min(xs_pts), max(ys_pts) - min(ys_pts))
    xs = np.linspace(min(xs_pts) - margin * span, max(xs_pts) + margin * span, resolution).tolist()
    ys = np.linspace(min(ys_pts) - margin * span, max(ys_pts) + margin * span, resolution).tolist()

    ev = evaluator if evaluator is not None else Evaluator(w1, dataset, device)
    combos = CombinationEvaluator(ev, [s1, s2, s3], factorize=factorize)
    combo_keys = _float_keys(s1)
    train = [[math.nan] * resolution for _ in range(resolution)]
    test = [[math.nan] * resolution for _ in range(resolution)]
    total = resolution * resolution
    done = 0
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            # w1 + x u_hat + y v_hat = w1 + alpha (w2 - w1) + beta (w3 - w1)
            beta = y / v_norm
            alpha = (x - y * p / v_norm) / u_norm
            c = torch.tensor([1.0 - alpha - beta, alpha, beta], dtype=torch.float64)
            res = combos.evaluate({k: c for k in combo_keys}, "both", bn=bn)
            train[j][i], test[j][i] = res["train_error"], res["test_error"]
            done += 1
            if progress is not None:
                progress(done / total, {"i": i, "j": j, "x": x, "y": y, **res})
    # the three networks themselves (their coordinates are generally not grid points)
    point_errors = {}
    for name, c in (("w1", (1.0, 0.0, 0.0)), ("w2", (0.0, 1.0, 0.0)), ("w3", (0.0, 0.0, 1.0))):
        coef = torch.tensor(c, dtype=torch.float64)
        res = combos.evaluate({k: coef for k in combo_keys}, "both", bn=bn)
        point_errors[name] = {"train_error": res["train_error"], "test_error": res["test_error"]}
    return Section(
        x=xs,
        y=ys,
        train_error=train,
        test_error=test,
        points=coords,
        space=space,
        extra={
            "bn": bn if ev.has_bn else "none",
            "margin": float(margin),
            "factorized": combos.factorized,
            "point_errors": point_errors,
        },
    )


# ----------------------------------------------------------------------------------------- torus
TorusGroups = str | Sequence[str]


class _TorusChart:
    """The torus construction of docs/method.md (part 2) over prepared A, B (and C).

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
    """
    if is_binary(a):
        raise ValueError(
            "torus slices need continuous networks (units on spheres); binary networks have none"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    _check_bn(bn)
    if not prepared:
        a = normalize(a)
        b = align(a, normalize(b))
        c = align(a, normalize(c)) if c is not None else None
    chart = _TorusChart(a, b, c, groups)
    ev = evaluator if evaluator is not None else Evaluator(a, dataset, device)
    combos = CombinationEvaluator(ev, chart.states, factorize=factorize)
    grid = np.linspace(0.0, 2 * math.pi, resolution, endpoint=False).tolist()
    train = [[math.nan] * resolution for _ in range(resolution)]
    test = [[math.nan] * resolution for _ in range(resolution)]
    total, done = resolution * resolution, 0
    for j, a2 in enumerate(grid):
        for i, a1 in enumerate(grid):
            res = combos.evaluate(chart.coefficients(a1, a2), "both", bn=bn)
            train[j][i], test[j][i] = res["train_error"], res["test_error"]
            done += 1
            if progress is not None:
                progress(done / total, {"i": i, "j": j, "phi1": a1, "phi2": a2, **res})
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
    minima_errors = {}
    for name, (m1, m2) in minima.items():
        res = combos.evaluate(chart.coefficients(m1, m2), "both", bn=bn)
        minima_errors[name] = {"train_error": res["train_error"], "test_error": res["test_error"]}
    extra = {
        "bn": bn if ev.has_bn else "none",
        "factorized": combos.factorized,
        "minima_errors": minima_errors,
    }
    if chart.third:
        extra["geodesic_ac"] = [[0.0, t * phi2] for t in np.linspace(0.0, 1.0, 17).tolist()]
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
