"""What a job costs before it runs: an estimate in *sample-parameter operations*, and the server's limit.

One sample-parameter operation is one parameter touched by one data sample in one forward pass (a dense layer's
multiply-add): evaluating a network of ``P`` parameters on ``n`` samples costs ``P x n``. The estimate of each kind
(``P`` parameters and buffers of the network, ``n`` training samples, ``N`` = training + test samples, ``A`` the
alignment's assignment work: the sum over the weight tensors of rows^3, one Hungarian assignment per unit group):

=============  ===============================================================================================
``train``      ``E x P x (3 x R x n + N)``: ``E`` epochs (``adv`` adds its ``confusion_epochs`` of pre-training),
               a gradient step is about 3 passes (forward + backward), ``R`` replicas (``rsgd`` and the binary
               ``rsgd`` variant; 2 for ``sam``'s two gradients, else 1), one evaluation on both splits per epoch
``evaluate``   ``N x P``: one forward pass over both splits (the train and test error of an upload)
``flatness``   ``P x (N + S x M x m)``: ``S`` sigmas (8 by default), ``M`` samples per sigma (``samples``;
               ``sequential``: its cap ``max_samples``, the worst case), each evaluated on ``m`` = ``n`` training
               samples (``sequential``, ``exact``) or at most 2048 of them (``fast``)
``sharpness``  ``HVP_PASSES x (I + K) x m x P + N x P``: ``I`` Lanczos iterations and ``K`` trace probes, one
               Hessian-vector product each (forward, backward and double backward: ``HVP_PASSES`` = 4 passes) on
               ``m`` training samples (the request's ``samples``, at most ``n``), then the errors on both splits
``path``       ``P x points x N x O (+ A when the kind aligns)``: ``O`` = 5 random flip orders for ``flip``,
               else 1; ``one_bend`` adds the bend's retraining, ``epochs x P x (3 x n + N)`` (20 epochs by
               default), and evaluates ``2 x points``
``distances``  ``pairs x (P + A)``: every pair of minima is aligned and compared parameter by parameter;
               ``alignment: "reference"``: ``minima x 3 x A + pairs x P`` (each minimum aligned once, three ways)
``section``    ``resolution^2 x N x P`` (+ ``2 x A`` in the normalized space)
``torus``      ``resolution^2 x N x P + (minima - 1) x A``
=============  ===============================================================================================

These are orders of magnitude, not timings: on a 2-core CPU an evaluation runs at about 4e10 and training at about
1.5e9 operations per second (digits MLP); a GPU is 10 to 100 times faster. A request whose estimate is above
``TOROID_MAX_JOB_COST`` (default 1e13; 0 disables the check) is refused with a 422 that states the estimate, the
limit and how to raise it (docs/operations.md, "Limits"); the time limits of store/celery_app.py stop what the
estimate misses. The API checks analyses (``toroid.backend.services.analyses``), uploads
(``toroid.backend.services.minima``: their evaluation job) and training
(``toroid.store.params.resolve_train``, so studies too).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from toroid.store.errors import Invalid
from toroid.store.settings import get_settings

__all__ = [
    "UNIT",
    "HVP_PASSES",
    "TRAIN_PASSES",
    "TooCostly",
    "assignment_work",
    "check_cost",
    "check_minima_cost",
    "estimate",
    "explain",
    "limit",
    "minimum_inputs",
    "parameter_count",
]

UNIT = "sample-parameter operations"
#: Passes of one gradient step (forward + backward) in forward-pass units.
TRAIN_PASSES = 3
#: Passes of one Hessian-vector product (forward, backward with its graph, double backward) in forward-pass units.
HVP_PASSES = 4
KINDS = ("train", "evaluate", "flatness", "sharpness", "path", "distances", "section", "torus")


class TooCostly(Invalid):
    """The request's estimated cost is above ``TOROID_MAX_JOB_COST`` (422; the message says by how much)."""


def _default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def _core_defaults() -> dict[str, Any]:
    """The defaults of the core's functions the tasks call without the argument (kept in step with the core)."""
    from toroid.worker.landscape.bend import one_bend
    from toroid.worker.landscape.flatness import DEFAULT_SIGMAS, local_energy
    from toroid.worker.landscape.paths import path_profile

    return {
        "sigmas": max(len(v) for v in DEFAULT_SIGMAS.values()),
        "subsample": _default(local_energy, "subsample"),
        "orders": _default(path_profile, "orders"),
        "bend_epochs": _default(one_bend, "epochs"),
    }


def _fields(params: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    return params.model_dump() if isinstance(params, BaseModel) else dict(params)


def _train_factors(p: dict[str, Any]) -> tuple[int, int, str]:
    """(effective epochs, replicas, words) of a training job's sampler."""
    hp = dict(p.get("hyperparameters") or {})
    sampler = str(p.get("sampler", "sgd"))
    epochs = int(p.get("epochs") or hp.get("epochs") or 1)
    variant = hp.get("variant", sampler) if sampler == "binary" else sampler
    replicas, words = 1, f"{epochs:,} epochs"
    if variant == "rsgd":
        replicas = int(hp.get("replicas") or 1)
        words += f" x {replicas} replicas"
    elif sampler == "sam":
        replicas = 2
        words += " x 2 gradients (sam)"
    if variant == "adv":
        confusion = int(hp.get("confusion_epochs") or 0)
        epochs += confusion
        words = f"({words} + {confusion:,} confusion epochs)"
    return epochs, replicas, words


def explain(kind: str, params: BaseModel | Mapping[str, Any], parameter_count: int, n_train: int, n_test: int,
            *, assignment: int = 0) -> tuple[float, str]:
    """The estimate of ``estimate`` and the formula with its numbers, in words."""
    p = _fields(params)
    P, n, N, A = float(parameter_count), float(n_train), float(n_train + n_test), float(assignment)
    pw = f"{int(P):,} parameters"
    Nw = f"{int(N):,} train+test samples"
    if kind == "train":
        epochs, replicas, words = _train_factors(p)
        cost = epochs * P * (TRAIN_PASSES * replicas * n + N)
        return cost, f"{words} x {pw} x ({TRAIN_PASSES} passes x {int(n):,} training samples + one evaluation)"
    if kind == "evaluate":
        return N * P, f"one pass over {Nw} x {pw}"
    defaults = _core_defaults()
    if kind == "flatness":
        sigmas = len(p["sigmas"]) if p.get("sigmas") else defaults["sigmas"]
        mode = p.get("mode", "sequential")
        samples = int((p.get("max_samples") or 1000) if mode == "sequential" else (p.get("samples") or 100))
        m = n if mode != "fast" else min(n, float(defaults["subsample"] or n))
        cost = P * (N + sigmas * samples * m)
        count = f"at most {samples:,} samples (max_samples)" if mode == "sequential" else f"{samples:,} samples"
        return cost, f"{sigmas} sigmas x {count} x {int(m):,} training samples x {pw}"
    if kind == "sharpness":
        products = int(p.get("iterations") or 30) + int(p.get("probes") or 0)
        samples = p.get("samples", 2048)
        m = n if samples is None else min(n, float(samples))
        cost = HVP_PASSES * products * m * P + N * P
        return cost, (f"{products:,} Hessian-vector products (iterations + probes) x {HVP_PASSES} passes x "
                      f"{int(m):,} training samples x {pw}")
    if kind == "path":
        points, path_kind = int(p.get("points") or 33), p.get("kind", "geodesic")
        if path_kind == "one_bend":
            epochs = int(p.get("epochs") or defaults["bend_epochs"])
            cost = epochs * P * (TRAIN_PASSES * n + N) + 2 * points * N * P + A
            return cost, (f"bend retraining {epochs:,} epochs x {pw} x {TRAIN_PASSES} passes x {int(n):,} training "
                          f"samples + 2 x {points} points x {Nw} x {pw}")
        orders = int(defaults["orders"]) if path_kind == "flip" else 1
        cost = points * N * P * orders + (A if path_kind != "linear" else 0.0)
        flips = f" x {orders} flip orders" if orders > 1 else ""
        return cost, f"{points} points x {Nw} x {pw}{flips}"
    if kind == "distances":
        m = len(p.get("minimum_ids") or [])
        pairs = m * (m - 1) // 2
        if p.get("alignment") == "reference":
            return m * 3 * A + pairs * P, (f"{m} minima x 3 alignments of {int(A):,} assignment operations + "
                                           f"{pairs} pairs x {pw}")
        return pairs * (P + A), f"{pairs} pairs x ({pw} + an alignment of {int(A):,} assignment operations)"
    if kind in ("section", "torus"):
        r = int(p.get("resolution") or (21 if kind == "section" else 33))
        if kind == "section":
            extra = 2 * A if p.get("space") == "normalized" else 0.0
        else:
            extra = (max(len(p.get("minimum_ids") or [2]), 2) - 1) * A
        return r * r * N * P + extra, f"resolution {r}^2 x {Nw} x {pw}"
    raise ValueError(f"no cost model for job kind {kind!r}; kinds: {list(KINDS)}")


def estimate(kind: str, params: BaseModel | Mapping[str, Any], parameter_count: int, n_train: int, n_test: int,
             *, assignment: int = 0) -> float:
    """The work of a job of ``kind`` with ``params`` (its request or job parameters) on a network of
    ``parameter_count`` parameters and a dataset of ``n_train`` / ``n_test`` samples, in sample-parameter
    operations (formulas in the module docstring). ``assignment``: the alignment's work (``assignment_work``)."""
    return explain(kind, params, parameter_count, n_train, n_test, assignment=assignment)[0]


def limit() -> float:
    """The server's limit, ``TOROID_MAX_JOB_COST`` (0 or less: no limit)."""
    return float(get_settings().max_job_cost)


_HINTS = {
    "train": "fewer epochs, a smaller network or fewer training samples",
    "evaluate": "a smaller network or a dataset with fewer samples",
    "flatness": "fewer sigmas or samples, a lower max_samples (sequential mode), or mode 'fast'",
    "sharpness": "fewer iterations, probes or samples",
    "path": "fewer points (or fewer bend epochs)",
    "distances": "fewer minima",
    "section": "a lower resolution",
    "torus": "a lower resolution",
}


def check_cost(kind: str, params: BaseModel | Mapping[str, Any], parameter_count: int, n_train: int, n_test: int,
               *, assignment: int = 0, max_cost: float | None = None) -> float:
    """The estimate; raises ``TooCostly`` (422) naming the estimate, the limit and the fix when it is above the
    limit (``max_cost``, default ``TOROID_MAX_JOB_COST``)."""
    cost, words = explain(kind, params, parameter_count, n_train, n_test, assignment=assignment)
    bound = limit() if max_cost is None else float(max_cost)
    if bound > 0 and cost > bound:
        raise TooCostly(
            f"this {kind} job is estimated at {cost:.2e} {UNIT} ({words}), above this server's limit of "
            f"{bound:.2e} (TOROID_MAX_JOB_COST): ask for {_HINTS[kind]}, or have the server's administrator raise "
            "TOROID_MAX_JOB_COST (docs/operations.md, Limits)"
        )
    return cost


# --------------------------------------------------------------------------------------------- network sizes
def parameter_count(template: Mapping[str, Any]) -> int:
    """Parameters and buffers of a network, from its state_dict or its template (``loading.template_state``)."""
    return int(sum(t.numel() for t in template.values()))


def assignment_work(template: Mapping[str, Any]) -> int:
    """The assignment work of aligning two such networks: the sum over the weight tensors (two or more dims, one
    row per unit) of rows^3, the cost of one Hungarian assignment per unit group."""
    return int(sum(int(t.shape[0]) ** 3 for t in template.values() if t.dim() >= 2 and t.is_floating_point()))


def minimum_inputs(minima: Sequence[Any]) -> dict[str, int]:
    """``parameter_count``, ``assignment``, ``n_train``, ``n_test`` of the minima's shared architecture and dataset
    (read from the first minimum's record: its architecture, config and dataset; nothing is loaded)."""
    from toroid.store.loading import minimum_shape, template_state
    from toroid.worker.landscape.data import dataset_sizes

    first = minima[0]
    if first.program_sha256:  # an exported program: its checkpoint's header gives the layout (toroid.store.programs)
        from toroid.store.artifacts import get_store

        template = get_store().get_state_dict(first.checkpoint_sha256)
    else:
        shape = minimum_shape(first)
        template, _ = template_state(first.architecture, first.config or {}, shape.input_shape, shape.num_classes)
    n_train, n_test = dataset_sizes(first.dataset, **(first.dataset_options or {}))
    return {"parameter_count": parameter_count(template), "assignment": assignment_work(template),
            "n_train": n_train, "n_test": n_test}


def check_minima_cost(kind: str, params: BaseModel | Mapping[str, Any], minima: Sequence[Any]) -> float:
    """``check_cost`` of an analysis on stored minima (their network and dataset sizes from ``minimum_inputs``)."""
    try:
        sizes = minimum_inputs(minima)
    except ValueError as exc:  # the registries' reasons (a dataset file gone, an option above its cap)
        raise Invalid(f"the size of this {kind} job cannot be estimated: {exc}") from exc
    return check_cost(kind, params, sizes["parameter_count"], sizes["n_train"], sizes["n_test"],
                      assignment=sizes["assignment"])
