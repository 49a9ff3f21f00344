"""Distances between networks (docs/method.md §5 and the numerical notes of §10).

* :func:`geodesic_distance` on the product of spheres of normalized, aligned networks:
  ``D^2 = sum_k phi_k^2 + H_L * phi_L^2`` (hidden units on unit spheres, the last layer on the
  sphere of radius ``sqrt(H_L)``). Angles use the stable form ``phi = 2 asin(||a - b|| / 2)`` for
  unit vectors and float64 arithmetic: ``arccos(a . b)`` in float32 returns ~1e-3 rad for identical
  vectors, a false distance that adds up over thousands of units.
* :func:`euclidean_distances`: ``||A - B|| / sqrt(N_params)`` (RMS per parameter) in the four
  variants raw, aligned, normalized, normalized_aligned.
* :func:`hamming_distance` for binary networks: fraction of differing +-1 weights.
* :class:`ReferenceFrames`: the same distances for many minima at once after aligning each of them once to a
  common reference (docs/method.md §5, "Many minima"): a new minimum costs one alignment and one row of
  vectorized distances, not one alignment per pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from toroid.worker.landscape.graph import SphereBlock, is_binary, sphere_blocks
from toroid.worker.landscape.symmetry import align, normalize

__all__ = [
    "EUCLIDEAN_VARIANTS",
    "ReferenceFrames",
    "euclidean_distances",
    "geodesic_angles",
    "geodesic_distance",
    "frame_features",
    "hamming_distance",
    "unit_angles",
]

EUCLIDEAN_VARIANTS = ("raw", "aligned", "normalized", "normalized_aligned")

ModelOrState = nn.Module | Mapping[str, torch.Tensor]


def _state(x: ModelOrState) -> Mapping[str, torch.Tensor]:
    return x.state_dict() if isinstance(x, nn.Module) else x


def unit_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angles (float64, radians) between the rows of ``a`` and ``b`` (shape ``(n, d)``).

    Rows are rescaled to unit norm in float64 and the angle is ``2 asin(||a - b|| / 2)``
    (docs/method.md §10): exactly 0 for identical rows, accurate for nearly equal ones.
    Rows with zero norm get angle 0 against an identical zero row, pi/2 otherwise.
    """
    a64 = a.detach().to(torch.float64)
    b64 = b.detach().to(device=a64.device, dtype=torch.float64)
    na = a64.norm(dim=1, keepdim=True)
    nb = b64.norm(dim=1, keepdim=True)
    # a zero row stays zero (0 / 1e-300 = 0): no full-size select needed (align scores every candidate)
    chord = (a64 / na.clamp_min(1e-300) - b64 / nb.clamp_min(1e-300)).norm(dim=1)
    phi = 2.0 * torch.asin((chord / 2.0).clamp(max=1.0))
    degenerate = (na.squeeze(1) == 0) ^ (nb.squeeze(1) == 0)
    return torch.where(degenerate, torch.full_like(phi, math.pi / 2), phi)


def _blocks(a: ModelOrState, b: ModelOrState, blocks: Sequence[SphereBlock] | None) -> list[SphereBlock]:
    if blocks is not None:
        return list(blocks)
    for x in (a, b):
        if isinstance(x, nn.Module):
            if is_binary(x):
                raise ValueError(
                    "geodesic distances are for continuous networks; binary networks have no sphere "
                    "geometry (docs/method.md §4): use hamming_distance"
                )
            return sphere_blocks(x)
    raise ValueError("pass at least one nn.Module, or the sphere blocks via blocks=")


def geodesic_angles(
    a: ModelOrState, b: ModelOrState, *, blocks: Sequence[SphereBlock] | None = None
) -> dict[str, np.ndarray]:
    """Per sphere block (keyed by its ``param``), the angles ``phi`` between ``a`` and ``b`` (float64).

    Per-unit blocks give one angle per hidden unit (``phi_k``); the last layer gives one angle
    ``phi_L`` between the whole weight tensors (docs/method.md §5). Expects normalized, aligned
    networks (the angle itself does not depend on the norms; alignment is the caller's choice).
    """
    sa, sb = _state(a), _state(b)
    out: dict[str, np.ndarray] = {}
    for block in _blocks(a, b, blocks):
        if block.param not in sa or block.param not in sb:
            raise ValueError(f"sphere block {block.param!r} is missing from one of the two networks")
        wa, wb = sa[block.param], sb[block.param]
        if wa.shape != wb.shape:
            raise ValueError(f"{block.param!r} has shape {tuple(wa.shape)} vs {tuple(wb.shape)}")
        if block.per_unit:
            phi = unit_angles(wa.flatten(1), wb.flatten(1))
        else:
            phi = unit_angles(wa.reshape(1, -1), wb.reshape(1, -1))
        out[block.param] = phi.cpu().numpy()
    return out


def geodesic_distance(a: ModelOrState, b: ModelOrState, *, blocks: Sequence[SphereBlock] | None = None) -> float:
    """Geodesic distance on the product of spheres (docs/method.md §5):

    ``D = sqrt(sum_k phi_k^2 + H_L * phi_L^2)``, i.e. ``sum_blocks radius^2 * phi^2`` with radius 1
    for hidden units and ``sqrt(H_L)`` for the last layer. Inputs: normalized and aligned networks
    (``normalize`` then ``align``); modules or state dicts (then give ``blocks`` or one module).
    Free parameters (biases, BatchNorm affine, residual streams) do not enter.
    """
    angles = geodesic_angles(a, b, blocks=blocks)
    total = 0.0
    for block in _blocks(a, b, blocks):
        phi = angles[block.param]
        total += block.radius**2 * float(np.sum(phi * phi, dtype=np.float64))
    return math.sqrt(total)


def _rms(a: nn.Module, b: nn.Module) -> float:
    sb = dict(b.named_parameters())
    total = 0.0
    count = 0
    for name, pa in a.named_parameters():
        if name not in sb or sb[name].shape != pa.shape:
            raise ValueError(f"parameter {name!r} differs in name or shape between the two networks")
        diff = pa.detach().double() - sb[name].detach().to(pa.device).double()
        total += float((diff * diff).sum())
        count += pa.numel()
    if count == 0:
        raise ValueError("the networks have no parameters")
    return math.sqrt(total / count)


def euclidean_distances(
    a: nn.Module, b: nn.Module, *, variants: Sequence[str] = EUCLIDEAN_VARIANTS
) -> dict[str, float]:
    """Per-parameter Euclidean distance ``||A - B|| / sqrt(N_params)`` (docs/method.md §5) in the
    variants ``raw`` (as given), ``aligned`` (``b`` aligned to ``a``), ``normalized`` (both
    normalized) and ``normalized_aligned`` (both normalized, then aligned); alignment keeps the
    candidate with the smallest Euclidean distance (``align(score="euclidean")``, docs/method.md §3),
    so an aligned variant never exceeds its unaligned one. Over the trainable
    parameters (weights, biases, BatchNorm affine); buffers do not count. The paper does not state
    the scaling; this RMS form matches its magnitudes. Binary networks: latent weights.
    """
    unknown = sorted(set(variants) - set(EUCLIDEAN_VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(EUCLIDEAN_VARIANTS)}")
    out: dict[str, float] = {}
    if "raw" in variants:
        out["raw"] = _rms(a, b)
    if "aligned" in variants:
        out["aligned"] = _rms(a, align(a, b, score="euclidean"))  # the alignment minimizing this distance (§3)
    if "normalized" in variants or "normalized_aligned" in variants:
        na, nb = normalize(a), normalize(b)
        if "normalized" in variants:
            out["normalized"] = _rms(na, nb)
        if "normalized_aligned" in variants:
            out["normalized_aligned"] = _rms(na, align(na, nb, score="euclidean"))
    return {k: out[k] for k in EUCLIDEAN_VARIANTS if k in out}


def hamming_distance(a: nn.Module, b: nn.Module) -> float:
    """Fraction of differing +-1 weights between two binary networks (docs/method.md §5), over all
    binary layers. Align first (``align(a, b)``) for the symmetry-free distance."""
    if not (is_binary(a) and is_binary(b)):
        raise ValueError("hamming_distance needs two binary networks (e.g. binary_mlp, binary_conv, committee)")
    mb = dict(b.named_modules())
    differ = 0
    total = 0
    for name, ma in a.named_modules():
        if not getattr(ma, "binary", False):
            continue
        other = mb.get(name)
        if other is None or not getattr(other, "binary", False) or other.weight.shape != ma.weight.shape:
            raise ValueError(f"binary layer {name!r} differs between the two networks")
        wa = ma.weight.detach() >= 0
        wb = other.weight.detach().to(wa.device) >= 0
        differ += int((wa != wb).sum())
        total += wa.numel()
    return differ / total


# --------------------------------------------------------------------------------------------- common reference
#: The distances a reference frame gives, continuous and binary networks (the metrics of a distances result)
FRAME_METRICS = ("geodesic", "raw", "aligned", "normalized", "normalized_aligned")
BINARY_FRAME_METRICS = ("hamming", "hamming_raw", "raw", "aligned")


def _flat(model: nn.Module) -> np.ndarray:
    """The trainable parameters as one float32 vector (the dtype they have: no rounding; sums happen in float64)."""
    return np.concatenate([p.detach().cpu().reshape(-1).to(torch.float32).numpy() for p in model.parameters()])


def _signs(model: nn.Module) -> np.ndarray:
    """The +-1 weights of every binary layer, as one boolean vector (``w >= 0``, as ``binarize``)."""
    return np.concatenate([(m.weight.detach().cpu() >= 0).reshape(-1).numpy() for m in model.modules()
                           if getattr(m, "binary", False)])


def frame_features(reference: nn.Module, model: nn.Module,
                   blocks: Sequence[SphereBlock] | None = None) -> dict[str, np.ndarray]:
    """What the distances of ``model`` to any other minimum aligned to the same ``reference`` need
    (docs/method.md §5, "Many minima"), as float32 / boolean arrays (a few copies of the parameters):

    continuous networks: ``raw`` and ``normalized`` (no alignment), ``aligned`` (``model`` aligned to ``reference``
    by the Euclidean score), ``normalized_aligned`` (normalized, aligned to the normalized reference by the
    Euclidean score) and ``geodesic:<param>`` (normalized, aligned to the normalized reference by the geodesic
    score: each sphere block's rows); binary networks: ``raw``, ``aligned``, ``hamming_raw`` and ``hamming`` (the
    signs, as given and aligned by the Hamming score). Three alignments (two for binary networks). ``blocks``: the
    sphere blocks of the family (``graph.sphere_blocks``), traced from ``model`` when not given."""
    if is_binary(model):
        aligned = align(reference, model, score="euclidean")
        return {"raw": _flat(model), "aligned": _flat(aligned), "hamming_raw": _signs(model),
                "hamming": _signs(align(reference, model))}
    ref_n, model_n = normalize(reference), normalize(model)
    out = {"raw": _flat(model), "aligned": _flat(align(reference, model, score="euclidean")),
           "normalized": _flat(model_n), "normalized_aligned": _flat(align(ref_n, model_n, score="euclidean"))}
    state = align(ref_n, model_n).state_dict()
    for block in sphere_blocks(model) if blocks is None else blocks:
        w = state[block.param].detach().cpu()
        rows = w.flatten(1) if block.per_unit else w.reshape(1, -1)
        out["geodesic:" + block.param] = rows.to(torch.float32).numpy()
    return out


class ReferenceFrames:
    """The distances between minima aligned once each to one reference (:func:`frame_features`), computed a row at
    a time with array operations (docs/method.md §5, "Many minima").

    ``raw`` and ``normalized`` are the exact distances of :func:`euclidean_distances` (no alignment enters); the
    aligned ones are measured between the two minima's frames, ``D(g_a a, g_b b) = D(a, g_a^-1 g_b b)``: the
    distance under one symmetry, so never below the symmetry-reduced distance ``min_g D(a, g b)``, and at most
    ``D(a_R, R) + D(R, b_R)`` (triangle inequality). ``features``: one dict per minimum; ``blocks``: the sphere
    blocks (geodesic radii), from the reference.
    """

    def __init__(self, features: Sequence[Mapping[str, np.ndarray]], blocks: Sequence[SphereBlock] = ()) -> None:
        if not features:
            raise ValueError("ReferenceFrames needs the features of at least one minimum")
        self.binary = "hamming" in features[0]
        self.metrics = BINARY_FRAME_METRICS if self.binary else FRAME_METRICS
        keys = set(features[0])
        for k, f in enumerate(features):
            if set(f) != keys:
                raise ValueError(f"minimum {k} has other features than the first: not one family")
        self._flat = {m: np.stack([f[m] for f in features]) for m in ("raw", "aligned", "normalized",
                                                                       "normalized_aligned") if m in keys}
        self._signs = {m: np.stack([f[m] for f in features]) for m in ("hamming", "hamming_raw") if m in keys}
        self._blocks = []  # (radius^2, unit rows (n, units, d) in float64, their norms (n, units))
        for block in blocks if not self.binary else ():
            rows = np.stack([f["geodesic:" + block.param] for f in features]).astype(np.float64)
            self._blocks.append((block.radius ** 2, rows, np.linalg.norm(rows, axis=2)))
        if not self.binary and not self._blocks:
            raise ValueError("continuous networks need their sphere blocks (graph.sphere_blocks of the reference)")
        self.count = len(features)

    def row(self, j: int, others: Sequence[int]) -> dict[str, np.ndarray]:
        """The distances of minimum ``j`` to each of ``others`` (indices), per metric (float64 arrays)."""
        idx = np.asarray(list(others), dtype=np.int64)
        out: dict[str, np.ndarray] = {}
        for metric, flat in self._flat.items():
            diff = flat[idx].astype(np.float64) - flat[j].astype(np.float64)
            out[metric] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / flat.shape[1])
        for metric, signs in self._signs.items():
            out[metric] = np.mean(signs[idx] != signs[j], axis=1)
        if self._blocks:
            total = np.zeros(len(idx), dtype=np.float64)
            for radius2, rows, norms in self._blocks:
                a, na = rows[idx], norms[idx]
                b, nb = rows[j][None], norms[j][None]
                # the stable angle of unit_angles: 2 asin(|u_a - u_b| / 2) on rows rescaled to unit norm (§10)
                chord = np.linalg.norm(a / np.maximum(na, 1e-300)[..., None] - b / np.maximum(nb, 1e-300)[..., None],
                                       axis=2)
                phi = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))
                phi = np.where((na == 0) ^ (nb == 0), math.pi / 2, phi)
                total += radius2 * np.sum(phi * phi, axis=1)
            out["geodesic"] = np.sqrt(total)
        return {m: out[m] for m in self.metrics}
