"""Two-dimensional maps of minima from their distance matrix: classical (Torgerson) multidimensional scaling.

The minima map places every minimum so that planar distances approximate the normalized + aligned geodesic
distances of docs/method.md §5 (or the raw Euclidean ones). Classical MDS is exact when the distances are Euclidean
and the best rank-2 approximation of the double-centred Gram matrix otherwise. An embedding is only defined up to a
rotation, a reflection and a translation, so :func:`procrustes_align` turns a new embedding to match the previous one
on the minima both share: the map stays still when one more minimum arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["classical_mds", "procrustes_align", "stress"]


def classical_mds(distances: Sequence[Sequence[float]] | np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates (n x dims) whose Euclidean distances approximate the symmetric matrix ``distances``.

    B = -1/2 J D^2 J with J = I - 11^T/n; the coordinates are the top ``dims`` eigenvectors of B scaled by the square
    roots of their eigenvalues (negative eigenvalues, which non-Euclidean inputs produce, contribute zero). The sign
    of each axis is fixed (largest |coordinate| positive) so that equal inputs give equal maps.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"classical_mds needs a square distance matrix, got shape {d.shape}")
    if dims < 1:
        raise ValueError(f"classical_mds needs dims >= 1, got {dims}")
    if not np.all(np.isfinite(d)):
        raise ValueError("classical_mds: the distance matrix has NaN or infinite entries; drop the incomparable minima")
    if np.any(d < 0):
        raise ValueError("classical_mds: distances must be non-negative")
    n = d.shape[0]
    if n == 0:
        return np.zeros((0, dims))
    d = 0.5 * (d + d.T)
    centering = np.eye(n) - np.full((n, n), 1.0 / n)
    gram = -0.5 * centering @ (d**2) @ centering
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:dims]
    scales = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
    coords = eigenvectors[:, order] * scales
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((n, dims - coords.shape[1]))])
    for axis in range(dims):
        column = coords[:, axis]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, axis] = -column
    return coords


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


def stress(distances: Sequence[Sequence[float]] | np.ndarray, coords: np.ndarray) -> float:
    """Kruskal's stress-1 of an embedding: sqrt(sum (d_ij - |x_i - x_j|)^2 / sum d_ij^2), 0 for a perfect map."""
    d = np.asarray(distances, dtype=np.float64)
    planar = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)
    total = float(np.sum(d**2))
    return float(np.sqrt(np.sum((d - planar) ** 2) / total)) if total > 0 else 0.0
