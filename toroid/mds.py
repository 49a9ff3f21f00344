"""Two-dimensional maps of minima from their distance matrix: multidimensional scaling and how faithful it is.

Shared by the dashboard's minima map (dashboard/figures/map.py) and ``GET /api/map`` (backend/services/maps.py), so
the coordinates a user downloads are the ones the map is drawn from. It imports numpy only: nothing of
toroid.backend, store, worker or dashboard.

The map places every minimum so that planar distances approximate the chosen distance of docs/method.md §5 (the
geodesic distance between normalized, aligned networks, or a Euclidean one). :func:`embed` starts from classical
(Torgerson) MDS, which is exact when the distances are Euclidean and the best rank-2 approximation of the
double-centred Gram matrix otherwise, then refines it with metric MDS (SMACOF, which minimizes the stress itself; a
bounded number of iterations, so 2,000 minima take seconds) and keeps the refinement only when it lowers Kruskal's
stress-1. The two numbers a reader needs to trust the map:

* stress-1 = sqrt(sum (d_ij - |x_i - x_j|)^2 / sum d_ij^2), 0 for a perfect map (below 0.1 reads as good, above 0.2
  as poor: the planar distances then mislead);
* the share of variance in the top two dimensions: the sum of the two largest positive eigenvalues of the classical
  Gram matrix over the sum of all its positive eigenvalues (100% when the distances are those of points on a plane).

An embedding is only defined up to a rotation, a reflection and a translation, so :func:`procrustes_align` turns a new
embedding to match the previous one on the minima both share: the map stays still when one more minimum arrives.
:func:`spread_coincident` moves minima drawn on one spot (equal errors, distance-0 copies) onto a small ring around it
so that each stays separately visible and clickable.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Embedding",
    "classical_mds",
    "embed",
    "procrustes_align",
    "smacof",
    "smacof_iterations",
    "spread_coincident",
    "stress",
    "variance_share",
]

Matrix = Sequence[Sequence[float]] | np.ndarray


def _checked(distances: Matrix) -> np.ndarray:
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"classical_mds needs a square distance matrix, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("classical_mds: the distance matrix has NaN or infinite entries; drop the incomparable minima")
    if np.any(d < 0):
        raise ValueError("classical_mds: distances must be non-negative")
    return 0.5 * (d + d.T)


def _gram_eigen(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors of B = -1/2 J D^2 J, J = I - 11^T/n."""
    sq = d**2  # double centring by the row, column and grand means: O(n^2), not two n^3 products with J
    gram = -0.5 * (sq - sq.mean(axis=0, keepdims=True) - sq.mean(axis=1, keepdims=True) + sq.mean())
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1]
    return eigenvalues[order], eigenvectors[:, order]


def classical_mds(distances: Matrix, dims: int = 2) -> np.ndarray:
    """Coordinates (n x dims) whose Euclidean distances approximate the symmetric matrix ``distances``.

    B = -1/2 J D^2 J with J = I - 11^T/n; the coordinates are the top ``dims`` eigenvectors of B scaled by the square
    roots of their eigenvalues (negative eigenvalues, which non-Euclidean inputs produce, contribute zero). The sign
    of each axis is fixed (largest |coordinate| positive) so that equal inputs give equal maps.
    """
    if dims < 1:
        raise ValueError(f"classical_mds needs dims >= 1, got {dims}")
    d = _checked(distances)
    n = d.shape[0]
    if n == 0:
        return np.zeros((0, dims))
    eigenvalues, eigenvectors = _gram_eigen(d)
    scales = np.sqrt(np.clip(eigenvalues[:dims], 0.0, None))
    coords = eigenvectors[:, :dims] * scales
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((n, dims - coords.shape[1]))])
    return _fix_signs(coords)


def _fix_signs(coords: np.ndarray) -> np.ndarray:
    for axis in range(coords.shape[1]):
        column = coords[:, axis]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, axis] = -column
    return coords


def variance_share(distances: Matrix, dims: int = 2) -> float:
    """The share of the classical MDS "variance" in the top ``dims`` dimensions: the sum of the ``dims`` largest
    positive eigenvalues of B over the sum of all positive ones (1.0 for points on a plane, and for all-zero
    distances, which any map shows exactly)."""
    d = _checked(distances)
    if d.shape[0] == 0:
        return 1.0
    eigenvalues, _ = _gram_eigen(d)
    positive = eigenvalues[eigenvalues > 1e-12 * max(1.0, float(np.abs(eigenvalues).max()))]
    total = float(positive.sum())
    return float(positive[:dims].sum() / total) if total > 0 else 1.0


def stress(distances: Matrix, coords: np.ndarray) -> float:
    """Kruskal's stress-1 of an embedding: sqrt(sum (d_ij - |x_i - x_j|)^2 / sum d_ij^2), 0 for a perfect map."""
    d = np.asarray(distances, dtype=np.float64)
    coords = np.asarray(coords, dtype=np.float64)
    planar = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1) if len(coords) <= 500 else \
        _planar(coords)
    total = float(np.sum(d**2))
    return float(np.sqrt(np.sum((d - planar) ** 2) / total)) if total > 0 else 0.0


@dataclass(frozen=True)
class Embedding:
    """A planar map of a distance matrix and how faithful it is.

    ``method`` is ``"smacof"`` when metric MDS lowered the stress of the classical solution it started from, else
    ``"classical"``; ``stress`` is the stress-1 of ``coords``, ``classical_stress`` that of classical MDS, and
    ``variance_2d`` the classical share of variance in the top two dimensions.
    """

    coords: np.ndarray
    method: str
    stress: float
    classical_stress: float
    variance_2d: float


#: SMACOF's budget (:func:`embed`): at most this many Guttman iterations, and fewer for large maps (each iteration
#: costs about n^2: ``SMACOF_WORK`` / n^2 of them, at least ``SMACOF_MIN_ITER``); it stops earlier once an iteration
#: lowers the raw stress by less than ``SMACOF_TOL`` of it. Measured in docs/performance.md, "Map of hundreds".
SMACOF_MAX_ITER = 300
SMACOF_MIN_ITER = 40
SMACOF_WORK = 300 * 500**2
SMACOF_TOL = 1e-5


def smacof_iterations(n: int) -> int:
    """The most SMACOF iterations :func:`embed` runs for ``n`` points (see ``SMACOF_WORK``)."""
    return int(min(SMACOF_MAX_ITER, max(SMACOF_MIN_ITER, SMACOF_WORK // max(n * n, 1))))


def _planar(x: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", x, x)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))


def smacof(d: np.ndarray, init: np.ndarray, max_iter: int, tol: float = SMACOF_TOL) -> tuple[np.ndarray, int]:
    """Metric MDS by SMACOF (de Leeuw; unit weights): Guttman transforms ``X <- B(X) X / n`` from ``init``, each one
    never raising the raw stress sum (d_ij - |x_i - x_j|)^2, until an iteration lowers it by less than ``tol`` of
    it or after ``max_iter``; returns the coordinates and the iterations run. Deterministic (numpy only)."""
    n = d.shape[0]
    x = np.array(init, dtype=np.float64)
    x -= x.mean(axis=0)
    before = math.inf
    done = 0
    for done in range(1, max_iter + 1):
        planar = _planar(x)
        raw = float(np.sum((d - planar) ** 2)) / 2.0
        if before - raw < tol * raw and done > 1:
            break
        before = raw
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(planar > 1e-12, d / planar, 0.0)
        np.fill_diagonal(ratio, 0.0)
        b = -ratio
        b[np.diag_indices(n)] = ratio.sum(axis=1)
        x = b @ x / n
    return x, done


_CACHE: dict[bytes, Embedding] = {}
_CACHE_SIZE = 8


def embed(distances: Matrix) -> Embedding:
    """Classical MDS refined by metric MDS (:func:`smacof`, started from the classical solution, at most
    :func:`smacof_iterations` iterations), keeping the refinement only when it lowers stress-1 (by 1e-4 at least:
    not for rounding); deterministic. The last few embeddings are remembered by their matrix (a dashboard redraw or
    a poll of ``GET /api/map`` does not lay out 500 minima again)."""
    d = _checked(distances)
    key = hashlib.sha256(d.tobytes()).digest() + d.shape[0].to_bytes(4, "little")
    if key in _CACHE:
        return _CACHE[key]
    found = _embed(d)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = found
    return found


def _embed(d: np.ndarray) -> Embedding:
    n = d.shape[0]
    if n == 0:
        return Embedding(np.zeros((0, 2)), "classical", 0.0, 0.0, 1.0)
    eigenvalues, eigenvectors = _gram_eigen(d)  # once: the coordinates and the share of variance
    coords = eigenvectors[:, :2] * np.sqrt(np.clip(eigenvalues[:2], 0.0, None))
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((n, 2 - coords.shape[1]))])
    coords = _fix_signs(coords)
    positive = eigenvalues[eigenvalues > 1e-12 * max(1.0, float(np.abs(eigenvalues).max()))]
    share = float(positive[:2].sum() / positive.sum()) if positive.sum() > 0 else 1.0
    classical = stress(d, coords)
    if n < 3 or classical < 1e-6:  # already exact, up to rounding
        return Embedding(coords, "classical", classical, classical, share)
    refined, _ = smacof(d, coords, smacof_iterations(n))
    refined = refined - refined.mean(axis=0)
    refined_stress = stress(d, refined)
    if np.all(np.isfinite(refined)) and refined_stress < classical - 1e-4:  # a gain the caption can show
        # SMACOF may turn the map: bring it back onto the classical orientation (rotation/reflection only)
        named = {str(i): list(row) for i, row in enumerate(refined)}
        turned = procrustes_align(named, {str(i): list(row) for i, row in enumerate(coords)})
        refined = np.asarray([turned[str(i)] for i in range(len(refined))])
        return Embedding(refined, "smacof", refined_stress, classical, share)
    return Embedding(coords, "classical", classical, classical, share)


def procrustes_align(
    points: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]]
) -> dict[str, list[float]]:
    """Rotate/reflect and translate ``points`` (id -> [x, y]) to best match ``reference`` on their shared ids.

    Orthogonal Procrustes without scaling: distances inside ``points`` are unchanged. With fewer than two shared ids
    only the translation (one shared id) or nothing (none) is applied.
    """
    shared = [key for key in points if key in reference]
    out = {key: [float(v) for v in value] for key, value in points.items()}
    if not shared:
        return out
    p = np.array([points[k] for k in shared], dtype=np.float64)
    q = np.array([reference[k] for k in shared], dtype=np.float64)
    p_mean, q_mean = p.mean(axis=0), q.mean(axis=0)
    if len(shared) >= 2:
        u, _, vt = np.linalg.svd((p - p_mean).T @ (q - q_mean))
        rotation = u @ vt
    else:
        rotation = np.eye(p.shape[1])
    for key, value in points.items():
        moved = (np.asarray(value, dtype=np.float64) - p_mean) @ rotation + q_mean
        out[key] = [float(v) for v in moved]
    return out


def spread_coincident(
    points: Mapping[str, Sequence[float]], *, span: float | None = None, tolerance: float = 0.01,
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """``points`` (id -> [x, y]) with the ones that share a spot moved onto a small ring around it, and the groups
    moved (each a list of ids, sorted).

    Points closer than ``tolerance`` x ``span`` (``span``: the larger side of the points' bounding box, or the given
    one when they all coincide) form a group. Its members, in id order, go around a circle centred on the group's
    mean, starting at the top, with neighbours about 4% of the span apart (a sunflower spiral above eight members):
    deterministic, so the map does not jump between redraws, and small, so the map still reads as the data.
    """
    ids = list(points)
    out = {key: [float(v) for v in points[key]] for key in ids}
    if len(ids) < 2:
        return out, []
    xy = np.asarray([out[key] for key in ids], dtype=np.float64)
    extent = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1])))
    scale = extent if extent > 0 else (span if span and span > 0 else 1.0)
    near = tolerance * scale
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if np.linalg.norm(xy[i] - xy[j]) <= near:
                parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        centre = xy[group].mean(axis=0)
        names = sorted(ids[i] for i in group)
        k = len(names)
        for n, key in enumerate(names):
            if k <= 8:
                radius = scale * max(0.03, 0.02 / math.sin(math.pi / k))
                angle = math.pi / 2 - 2 * math.pi * n / k
            else:  # Vogel's sunflower: even spacing for any count
                radius = scale * 0.025 * math.sqrt(n + 0.5)
                angle = math.pi / 2 - n * math.pi * (3 - math.sqrt(5))
            out[key] = [float(centre[0] + radius * math.cos(angle)), float(centre[1] + radius * math.sin(angle))]
        groups.append(names)
    return out, sorted(groups)
