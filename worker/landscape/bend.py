"""One-bend paths between two minima (docs/method.md §7, "One-bend path").

A straight or geodesic path from A to B may cross a barrier even when A and B lie in one
connected low-error region.  The one-bend path goes through a retrained midpoint:

1. align B to A; the geodesic variant normalizes both first (docs/method.md §2-3);
2. the bend starts at the midpoint: for ``geodesic`` the normalized mean of the aligned
   normalized endpoints (mean, then :func:`~toroid.worker.landscape.symmetry.normalize`), for the linear
   kinds the raw mean of the (aligned) endpoints;
3. the bend is retrained with SGD (Nesterov 0.9, lr 0.02, cosine, batch 128; the paper runs 300
   epochs, Toroid's default budget is small) until its train error reaches ``target_error``
   (~0) or the budget runs out;
4. ``geodesic``: the bend is normalized again;
5. the error is profiled along A -> bend and bend -> B with
   :func:`~toroid.worker.landscape.paths.path_profile`: two geodesics (``geodesic``) or two straight
   segments (``linear``, ``linear_aligned``) in the frame aligned to A.  Binary networks use
   ``kind="flip"``: the bend starts from the mean latent weights of A and aligned B, is retrained
   with the binary SGD variant, and each segment is a flip path.

The barrier is the maximum train error over both segments.  Distances of the bend to each
endpoint: geodesic distance (``geodesic``), per-parameter Euclidean distance in the aligned
frame (linear kinds; for ``linear`` the raw frame), Hamming distance (``flip``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from toroid.worker.landscape.alignment import align_report
from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.device import resolve_device
from toroid.worker.landscape.distances import euclidean_distances, geodesic_distance, hamming_distance
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.graph import is_binary
from toroid.worker.landscape.kinds import BEND_KINDS, check_bend_kind
from toroid.worker.landscape.paths import path_profile
from toroid.worker.landscape.results import BendResult
from toroid.worker.landscape.samplers import resolve_hparams
from toroid.worker.landscape.samplers.base import TrainRun
from toroid.worker.landscape.samplers.sgd import sgd_epochs
from toroid.worker.landscape.states import as_state, combine_states, is_exported, load_state, set_mode
from toroid.worker.landscape.symmetry import normalize

__all__ = ["BEND_KINDS", "midpoint", "one_bend"]

Progress = Callable[[float, dict[str, Any]], None]
BendKind = Literal["geodesic", "linear_aligned", "linear", "flip"]  # BEND_KINDS (kinds.py); bend_kinds(binary) fit

#: share of the progress fraction spent retraining the bend (the rest: the two segments)
_TRAIN_SHARE = 0.7


def midpoint(a: nn.Module, b: nn.Module) -> nn.Module:
    """The raw mean of two networks of one architecture: every floating state entry (parameters
    and BatchNorm running statistics) averaged, integer buffers from ``a``.  A new module."""
    sa, sb = as_state(a), as_state(b)
    coefs = {k: torch.tensor([0.5, 0.5], dtype=torch.float64) for k, v in sa.items() if v.is_floating_point()}
    mid = copy.deepcopy(a)
    load_state(mid, combine_states([sa, sb], coefs))
    return mid


def _prepare(a: nn.Module, b: nn.Module, kind: str) -> tuple[nn.Module, nn.Module, nn.Module, dict | None]:
    """(A, B, bend start, alignment record) in the frame of ``kind`` (steps 1-2 of the module
    docstring). Alignment keeps the candidate with the smallest distance the result reports
    (docs/method.md §3): geodesic, Hamming (binary) or Euclidean."""
    if kind == "geodesic":
        pa = normalize(a)
        pb, report = align_report(pa, normalize(b))
        return pa, pb, normalize(midpoint(pa, pb)), report.summary()
    if kind == "linear":
        return a, b, midpoint(a, b), None
    pb, report = align_report(a, b, score="auto" if is_binary(a) else "euclidean")
    return a, pb, midpoint(a, pb), report.summary()


def _retrain_hparams(binary: bool, epochs: int, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """The bend's SGD hyperparameters: the ``sgd`` sampler's (or, for binary networks, the ``binary``
    sampler's sgd variant), with the paper's one-bend values and ``epochs``."""
    given = dict(hparams or {})
    if "epochs" in given and given["epochs"] != epochs:
        raise ValueError(f"epochs={epochs} and hparams['epochs']={given['epochs']} disagree; give the budget once")
    given["epochs"] = epochs
    if binary:
        given.setdefault("variant", "sgd")
        if given["variant"] != "sgd":
            raise ValueError("the bend is retrained with SGD; hparams['variant'] must be 'sgd' for binary networks")
        hp = resolve_hparams("binary", given)
        hp["momentum"] = 0.9 if hp["momentum"] is None else hp["momentum"]
        hp["nesterov"] = hp["momentum"] > 0 if hp["nesterov"] is None else hp["nesterov"]
        return hp
    return resolve_hparams("sgd", given)


def one_bend(
    a: nn.Module,
    b: nn.Module,
    dataset: Dataset | Any,
    kind: BendKind = "geodesic",
    points: int = 17,
    epochs: int = 20,
    seed: int = 0,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    target_error: float | None = 0.0,
    hparams: dict[str, Any] | None = None,
    bn: Literal["recompute", "interpolate"] = "recompute",
) -> BendResult:
    """One-bend path A -> bend -> B and its barrier (docs/method.md §7; steps in the module docstring).

    Args:
        a, b: two minima of one architecture (not modified).
        dataset: the data the bend is retrained on and the path is evaluated on.
        kind: ``geodesic`` (normalize + align, two geodesics; the paper's method), ``linear_aligned``
            (align, two straight segments), ``linear`` (no symmetry removal, two straight segments), or
            ``flip`` for binary networks.
        points: evaluation points per segment (evenly spaced, endpoints included).
        epochs: retraining budget of the bend (the paper: 300).
        seed: seeds the retraining's mini-batch order.
        progress: called with ``(fraction, info)``; ``info["stage"]`` is ``"retrain"`` (with the sampler
            keys ``epoch, epochs, train_loss, train_error, test_error``) or ``"segment"`` (with
            ``segment`` 0 or 1 and the path point's values).  An exception raised by it stops the run.
        device: defaults to :func:`toroid.worker.landscape.device.default_device`.
        target_error: stop retraining once the bend's train error is <= this (``None``: full budget).
        hparams: overrides of the retraining SGD hyperparameters (``sgd`` sampler keys; ``binary``
            sampler keys for binary networks).
        bn: BatchNorm statistics along the segments (see :func:`~toroid.worker.landscape.paths.path_profile`).

    Returns:
        :class:`~toroid.worker.landscape.results.BendResult` with the two segment profiles, the barrier
        (max train error over both), the bend's distances to A and B, its train error and the epochs
        run; ``extra`` holds the bend's test error, the retraining history and hyperparameters.

    Raises:
        ValueError: for programs made by ``torch.export``, whose mode cannot switch to training
            (docs/method.md §1, "Exported programs").
    """
    if is_exported(a) or is_exported(b):
        raise ValueError(
            "one_bend retrains the bend in train mode, and an exported program (torch.export) cannot switch "
            "mode: load the networks as nn.Module checkpoints for one-bend paths"
        )
    binary = is_binary(a)
    check_bend_kind(kind, binary)
    if binary != is_binary(b):
        raise ValueError("one_bend needs two networks of the same architecture (one is binary, the other not)")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if target_error is not None and not (0.0 <= float(target_error) <= 1.0):
        raise ValueError(f"target_error must be a fraction in [0, 1] or None, got {target_error!r}")
    hp = _retrain_hparams(binary, epochs, hparams)
    dev = resolve_device(device)

    pa, pb, bend, alignment = _prepare(a, b, "linear_aligned" if kind == "flip" else kind)
    bend = bend.to(dev)

    def train_progress(fraction: float, info: dict[str, Any]) -> None:
        if progress is not None:
            progress(_TRAIN_SHARE * fraction, {"stage": "retrain", **info})

    def unbuildable(_seed: int) -> nn.Module:
        raise RuntimeError("the one-bend retraining uses a single network")

    run = TrainRun(
        sampler="binary" if binary else "sgd",
        model=bend,
        build=unbuildable,
        dataset=dataset,
        hp=hp,
        seed=seed,
        epochs=epochs,
        target_error=None if target_error is None else float(target_error),
        progress=train_progress,
        device=dev,
    )
    sgd_epochs(run, bend, stream="bend", latent_clip=hp["latent_clip"] if binary else None)
    bend = set_mode(bend.cpu(), False)
    if kind == "geodesic":
        bend = normalize(bend)
    final = run.history[-1]

    evaluator = Evaluator(pa, dataset, dev)
    segment_kind = "flip" if binary else kind
    profiles = []
    for i, (start, end) in enumerate(((pa, bend), (bend, pb))):

        def seg_progress(fraction: float, info: dict[str, Any], _i: int = i) -> None:
            if progress is not None:
                done = _TRAIN_SHARE + (1 - _TRAIN_SHARE) * (_i + fraction) / 2
                progress(done, {"stage": "segment", "segment": _i, **info})

        profiles.append(
            path_profile(
                start,
                end,
                dataset,
                segment_kind,
                points=points,
                bn=bn,
                progress=seg_progress,
                device=dev,
                prepared=True,
                seed=seed,
                evaluator=evaluator,
            )
        )
    if kind == "geodesic":
        d_a, d_b = geodesic_distance(pa, bend), geodesic_distance(bend, pb)
    elif binary:
        d_a, d_b = hamming_distance(pa, bend), hamming_distance(bend, pb)
    else:
        d_a = euclidean_distances(pa, bend, variants=["raw"])["raw"]
        d_b = euclidean_distances(bend, pb, variants=["raw"])["raw"]
    bend_metrics = evaluator.evaluate_state(bend, "both")
    return BendResult(
        profiles=profiles,
        barrier=max(p.barrier for p in profiles),
        kind=kind,
        distance_to_a=float(d_a),
        distance_to_b=float(d_b),
        bend_train_error=float(bend_metrics["train_error"]),
        epochs=run.epochs_run,
        extra={
            "bend_test_error": float(bend_metrics["test_error"]),
            "retrain_final_train_error": float(final["train_error"]),
            "retrain_history": run.history,
            "retrain_hyperparameters": dict(hp),
            "target_error": target_error,
            "seed": seed,
            "distance": "geodesic" if kind == "geodesic" else ("hamming" if binary else "euclidean_rms"),
            **({"alignment": alignment} if alignment is not None else {}),  # docs/method.md §3
        },
    )
