"""Paths, barriers and planes between minima (docs/method.md §7).

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

Which kinds fit which networks (the binary rule) is decided in :mod:`toroid.worker.landscape.kinds`
(:func:`path_kinds`, :func:`check_path_kind`, re-exported here).  Every point of these paths (and of
:func:`section_2d` planes) is a per-unit linear combination of two or three anchor networks,
evaluated with :class:`~toroid.worker.landscape.combination.CombinationEvaluator`, which computes the
first layer's products X W^T once per anchor instead of once per point.  The torus chart built on
the same per-unit geometry is :mod:`toroid.worker.landscape.torus`.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from toroid.worker.landscape.alignment import align_report
from toroid.worker.landscape.combination import CombinationEvaluator
from toroid.worker.landscape.distances import geodesic_distance, unit_angles
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.flatness import binary_weight_keys
from toroid.worker.landscape.graph import SphereBlock, is_binary, sphere_blocks
from toroid.worker.landscape.kinds import (
    ALL_PATH_KINDS,
    PATH_KINDS,
    bend_kinds,
    check_bend_kind,
    check_path_kind,
    path_kinds,
)
from toroid.worker.landscape.progressive import GridOrder, GridProgress
from toroid.worker.landscape.results import PathProfile, Section
from toroid.worker.landscape.states import as_state, combine_states, has_batchnorm, load_state, recalibrate_bn
from toroid.worker.landscape.symmetry import normalize

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = [
    "ALL_PATH_KINDS",
    "PATH_KINDS",
    "bend_kinds",
    "check_bend_kind",
    "check_path_kind",
    "interpolate",
    "path_coefficients",
    "path_kinds",
    "path_profile",
    "prepare_endpoints",
    "section_2d",
]

Progress = Callable[[float, dict[str, Any]], None]
PathKind = Literal["linear", "linear_aligned", "geodesic", "flip"]

#: Angles below this (radians) count as zero: slerp falls back to lerp + renormalization
#: (docs/method.md §10) and a unit's torus circle is degenerate.
SMALL_ANGLE = 1e-6


# ---------------------------------------------------------------------------------------- helpers
def _check_kind(kind: str, binary: bool) -> None:
    """The kinds :func:`path_profile` computes (all but ``one_bend``), by the binary rule."""
    check_path_kind(kind, binary, one_bend=False)


def _check_points(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2 (the grid includes both endpoints), got {points!r}")
    return points


def barrier_of(values: Sequence[float]) -> float:
    """The barrier of an error profile: its largest value that was computed (``NaN`` marks a point not evaluated,
    e.g. another chunk's; all ``NaN``: ``NaN``)."""
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else math.nan


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
    :class:`~toroid.worker.landscape.combination.CombinationEvaluator`.  Keys not listed (integer
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
    (normalize(A), align(normalize(A), normalize(B))) (docs/method.md §§2-4, 7).  Alignment keeps
    the candidate with the smallest length the path reports (docs/method.md §3): Euclidean for
    linear_aligned, Hamming for flip, geodesic for geodesic.
    """
    return aligned_endpoints(a, b, kind)[:2]


def aligned_endpoints(a: nn.Module, b: nn.Module, kind: PathKind) -> tuple[nn.Module, nn.Module, dict | None]:
    """:func:`prepare_endpoints` and the alignment record (``AlignReport.summary()``; None: not aligned)."""
    _check_kind(kind, is_binary(a))
    if kind == "linear":
        return a, b, None
    if kind in ("linear_aligned", "flip"):
        aligned, report = align_report(a, b, score="euclidean" if kind == "linear_aligned" else "auto")
        return a, aligned, report.summary()
    na = normalize(a)
    aligned, report = align_report(na, normalize(b))
    return na, aligned, report.summary()


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
    indices: Sequence[int] | None = None,
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
    indices:
        Evaluate only these points (indices into the ``points`` fractions; not for ``flip``): the others are
        ``NaN`` in the profile, and the barriers are those of the points evaluated. A long path split into chunks
        (docs/operations.md, "Chunks") evaluates each range of points in its own job; an empty list computes only
        what every chunk shares (x, distance, length).

    The barrier is the raw maximum of the train error along the path.
    """
    binary = is_binary(a)
    _check_kind(kind, binary)
    points = _check_points(points)
    _check_bn(bn)
    if kind == "flip" and (isinstance(orders, bool) or not isinstance(orders, int) or orders < 1):
        raise ValueError(f"orders must be a positive integer, got {orders!r}")
    if indices is not None:
        if kind == "flip":
            raise ValueError("flip paths average random flip orders over the whole path: they cannot take indices")
        indices = sorted({int(i) for i in indices})
        if indices and (indices[0] < 0 or indices[-1] >= points):
            raise ValueError(f"indices must lie in [0, {points - 1}], got {indices[0]}..{indices[-1]}")
    pa, pb, alignment = (a, b, None) if prepared else aligned_endpoints(a, b, kind)
    ev = evaluator if evaluator is not None else Evaluator(pa, dataset, device)
    xs = np.linspace(0.0, 1.0, points).tolist()
    visit = list(range(points)) if indices is None else indices
    bn_used = bn if ev.has_bn else "none"
    rows: list[dict[str, float]] = []
    extra: dict[str, Any] = {} if alignment is None else {"alignment": alignment}  # docs/method.md §3

    # every kind moves at constant speed in its geometry, so distance / length = x (flip paths:
    # the fraction of differing weights actually flipped)
    distance = list(xs)

    def report(i: int, row: dict[str, float]) -> None:
        rows.append(row)
        if progress is not None:
            progress(len(rows) / max(len(visit), 1), {"index": i, "x": xs[i], "distance": distance[i], **row})

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
        for i in visit:
            report(i, combos.evaluate(geometry.coefficients(xs[i]), "both", bn=bn))
        if kind == "geodesic":
            length = float(geodesic_distance(pa, pb))
        else:
            sa, sb = as_state(pa), as_state(pb)
            length = _euclidean(sa, sb, _param_keys(pa))
        extra["factorized"] = combos.factorized

    series = {name: [math.nan] * points for name in ("train_error", "test_error", "train_loss", "test_loss")}
    for i, row in zip(visit, rows, strict=True):
        for name, values in series.items():
            values[i] = row[name]
    train_error, test_error = series["train_error"], series["test_error"]
    return PathProfile(
        kind=kind,
        x=xs,
        distance=distance,
        length=length,
        train_error=train_error,
        test_error=test_error,
        train_loss=series["train_loss"],
        test_loss=series["test_loss"],
        barrier=barrier_of(train_error),
        test_barrier=barrier_of(test_error),
        bn=bn_used,
        points=points,
        extra=extra,
    )


# ------------------------------------------------------------------------------------- sections
def prepare_section(
    w1: nn.Module, w2: nn.Module, w3: nn.Module
) -> tuple[nn.Module, nn.Module, nn.Module, dict[str, Any]]:
    """The networks of a section in the normalized space: all three normalized, w2 and w3 aligned to w1, and the
    alignments' summaries (docs/method.md §3)."""
    if is_binary(w1):
        raise ValueError("space='normalized' needs continuous networks; binary networks use space='raw'")
    w1 = normalize(w1)
    w2, report2 = align_report(w1, normalize(w2))
    w3, report3 = align_report(w1, normalize(w3))
    return w1, w2, w3, {"w2": report2.summary(), "w3": report3.summary()}


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
    order: GridOrder = "coarse_to_fine",
    prepared: bool = False,
    cells: Sequence[int] | None = None,
) -> Section:
    """Error on the plane through three networks (docs/method.md §7, Garipov et al.).

    u = w2 - w1, v = (w3 - w1) minus its projection on u, grid w1 + x u_hat + y v_hat over
    all floating parameters.  ``space="normalized"``: normalize all three and align w2, w3 to
    w1 first.  Binary networks: the plane is taken on the latent weights and the forward pass
    binarizes.  The grid spans the three points' coordinates plus ``margin`` times their
    extent on each side, ``resolution`` points per axis.  BN statistics: ``bn`` as in
    :func:`path_profile`.  ``order``: the grid is visited coarse to fine (default) or row by row
    (``rows``), with the same values; ``progress`` receives each cell and, after each pass and
    every few cells, the plane so far (:class:`~toroid.worker.landscape.progressive.GridProgress`).
    ``prepared``: in the normalized space, the networks are normalized and aligned already (no alignment is
    recorded). ``cells``: evaluate only the cells at these positions of the visit order (``grid_order``), the
    others ``NaN``: one chunk of a grid split over several jobs (docs/operations.md, "Chunks").
    """
    if space not in ("raw", "normalized"):
        raise ValueError(f"space must be 'raw' or 'normalized', got {space!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if not (isinstance(margin, int | float) and margin >= 0):
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    _check_bn(bn)
    alignment = None
    if space == "normalized" and not prepared:
        w1, w2, w3, alignment = prepare_section(w1, w2, w3)
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
    # the three networks themselves (their coordinates are generally not grid points)
    point_errors = {}
    for name, c in (("w1", (1.0, 0.0, 0.0)), ("w2", (0.0, 1.0, 0.0)), ("w3", (0.0, 0.0, 1.0))):
        coef = torch.tensor(c, dtype=torch.float64)
        res = combos.evaluate({k: coef for k in combo_keys}, "both", bn=bn)
        point_errors[name] = {"train_error": res["train_error"], "test_error": res["test_error"]}
    # coarse to fine (docs/method.md §7): a running job reports the whole plane early, then refines it
    static = {"x": xs, "y": ys, "points": coords, "space": space, "extra": {"point_errors": point_errors}}
    fill = GridProgress(resolution, order, progress, static, positions=cells)
    for i, j in fill.cells():
        x, y = xs[i], ys[j]
        # w1 + x u_hat + y v_hat = w1 + alpha (w2 - w1) + beta (w3 - w1)
        beta = y / v_norm
        alpha = (x - y * p / v_norm) / u_norm
        c = torch.tensor([1.0 - alpha - beta, alpha, beta], dtype=torch.float64)
        fill.record(i, j, combos.evaluate({k: c for k in combo_keys}, "both", bn=bn), x=x, y=y)
    train, test = fill.train, fill.test
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
            **({"alignment": alignment} if alignment is not None else {}),
        },
    )


# The torus chart moved to torus.py; its names stay importable from here for one release.
_MOVED = {"TorusGroups": "torus", "torus_point": "torus", "torus_slice": "torus"}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"toroid.worker.landscape.{module}"), name)
