"""Celery tasks: thin glue between job records, the artifact store and the science core.

Every task takes one argument, the job id. It claims the job (``toroid.store.ledger.claim``; a duplicate message finds
the job taken or finished and does nothing), loads the minima's checkpoints from the artifact store, calls one
function of ``toroid.worker.landscape`` with the job's progress callback (which reports partial results, heartbeats, and
raises to stop the computation when the job is cancelled), and stores the result idempotently. A task that fails
marks its job failed with the error message; nothing half-written remains (results are written in one transaction,
artifacts atomically).

Reliability signals: a starting worker (``worker_ready``) re-enqueues jobs that a dead worker left behind and
keeps checking every ``TOROID_STALE_JOB_S`` seconds (``toroid.store.ledger.recover_jobs``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.utils.log import get_task_logger

from toroid.store.celery_app import celery_app

log = get_task_logger("toroid.worker")


@celery_app.task(name="toroid.ping")
def ping() -> dict:
    """Answer with the device this worker computes on (used by /api/health)."""
    from toroid.worker.landscape.device import default_device

    return {"device": str(default_device())}


# --------------------------------------------------------------------------------------------- loading inputs
def _minimum(minimum_id: str):
    from toroid.store.db import new_session
    from toroid.store.models import Minimum

    with new_session() as session:
        minimum = session.get(Minimum, minimum_id)
    if minimum is None:
        raise ValueError(f"minimum {minimum_id} was deleted before the job ran")
    return minimum


def _dataset(minimum):
    from toroid.worker.landscape.data import load_dataset

    return load_dataset(minimum.dataset, **(minimum.dataset_options or {}))


def _model(minimum, dataset):
    from toroid.store.artifacts import get_store, load_model

    state = get_store().get_state_dict(minimum.checkpoint_sha256)
    return load_model(minimum.architecture, minimum.config or {}, dataset.input_shape, dataset.num_classes, state)


# --------------------------------------------------------------------------------------------- the job runner
def _execute(task, job_id: str, compute: Callable[[Any], None]) -> str:
    from toroid.store.ledger import JobCancelled, JobRun, JobSuperseded, claim

    job = claim(job_id, worker=f"{task.request.hostname or 'worker'} pid {os.getpid()}")
    if job is None:
        log.info("job %s is not queued (taken, finished, cancelled or unknown): nothing to do", job_id)
        return "skipped"
    run = JobRun(job)
    with run:
        try:
            compute(run)
        except JobCancelled:
            log.info("job %s cancelled", job_id)
            return "cancelled"
        except JobSuperseded:
            log.warning("job %s was taken over by another worker; stopping", job_id)
            return "superseded"
        except Exception as exc:
            log.exception("job %s failed", job_id)
            message = str(exc) if isinstance(exc, ValueError) and str(exc) else f"{type(exc).__name__}: {exc}"
            run.fail(message)
            return "failed"
    return "succeeded"


def _job_task(kind: str):
    def register(compute: Callable[[Any], None]):
        @celery_app.task(name=f"toroid.{kind}", bind=True)
        def task(self, job_id: str) -> str:
            return _execute(self, job_id, compute)

        task.__doc__ = compute.__doc__
        return task

    return register


@_job_task("train")
def train(run) -> None:
    """Train a minimum with a sampler (docs/method.md §8) and store it as a new minimum."""
    from toroid.store.artifacts import get_store
    from toroid.store.ledger import clean_json
    from toroid.store.models import Minimum, new_id, utcnow
    from toroid.worker.landscape import load_dataset, train_minimum
    from toroid.worker.landscape.evaluate import Evaluator

    p = run.params
    dataset = load_dataset(p["dataset"], **p["dataset_options"])
    run.say(f"training {p['architecture']} on {p['dataset']} with {p['sampler']} (seed {p['seed']})")
    run.progress(0.0, {})
    model, provenance = train_minimum(
        p["architecture"], p["config"], dataset, sampler=p["sampler"], hparams=p["hyperparameters"], seed=p["seed"],
        epochs=p["epochs"], target_error=p["target_error"], progress=run.progress,
    )
    run.check()
    errors = Evaluator(model, dataset).evaluate_state(model, "both")
    sha = get_store().put_state_dict(model.state_dict())
    run.finish_minimum(Minimum(
        id=new_id(), name=p["name"], architecture=p["architecture"], config=p["config"], dataset=p["dataset"],
        dataset_options=p["dataset_options"], sampler=p["sampler"], seed=p["seed"],
        train_error=float(errors["train_error"]), test_error=float(errors["test_error"]),
        provenance=clean_json(provenance), checkpoint_sha256=sha, source=p.get("source", "train"),
        created_at=utcnow(),
    ))


@_job_task("flatness")
def flatness(run) -> None:
    """Local energy of one minimum (docs/method.md §6); the minimum records its value at the largest sigma."""
    from toroid.backend.api.analyses import local_energy_at_largest_sigma
    from toroid.store.models import Minimum
    from toroid.worker.landscape import local_energy

    p = run.params
    minimum = _minimum(p["minimum_id"])
    dataset = _dataset(minimum)
    model = _model(minimum, dataset)
    run.say(f"local energy of {minimum.name}")
    result = local_energy(model, dataset, sigmas=p["sigmas"], samples=p["samples"], noise_on=p["noise_on"],
                          mode=p["mode"], progress=run.progress)
    data = result.to_dict()

    def record(session, result_id: str) -> None:
        row = session.get(Minimum, minimum.id)
        if row is not None:
            row.local_energy = local_energy_at_largest_sigma(data)
            row.flatness_result_id = result_id

    run.finish_result(data, [minimum.id], run.key, also=record)


@_job_task("path")
def path(run) -> None:
    """Error along a path between two minima (docs/method.md §7): linear, linear_aligned, geodesic, one_bend, flip."""
    from toroid.worker.landscape import one_bend, path_profile

    p = run.params
    a, b = _minimum(p["a"]), _minimum(p["b"])
    dataset = _dataset(a)
    model_a, model_b = _model(a, dataset), _model(b, dataset)
    run.say(f"{p['kind']} path {a.name} -> {b.name}")
    if p["kind"] == "one_bend":
        budget = {"epochs": p["epochs"]} if p.get("epochs") else {}  # else the core's default budget
        result = one_bend(model_a, model_b, dataset, kind=p["bend_kind"], points=p["points"], bn=p["bn"],
                          progress=run.progress, **budget)
    else:
        result = path_profile(model_a, model_b, dataset, kind=p["kind"], points=p["points"], bn=p["bn"],
                              progress=run.progress)
    run.finish_result(result.to_dict(), [a.id, b.id], run.key)


@_job_task("distances")
def distances(run) -> None:
    """Pairwise distances (docs/method.md §5): geodesic after normalize + align, RMS Euclidean in four variants;
    binary networks: Hamming distance (raw and aligned) instead of the geodesic and normalized forms."""
    from toroid.worker.landscape import align, euclidean_distances, geodesic_distance, hamming_distance, normalize
    from toroid.worker.landscape.symmetry import is_binary

    ids = run.params["minimum_ids"]
    minima = [_minimum(i) for i in ids]
    dataset_shape = _dataset_shape(minima[0])
    models = [_model(m, dataset_shape) for m in minima]
    binary = is_binary(models[0])
    metrics = ("hamming", "hamming_raw", "raw", "aligned") if binary else (
        "geodesic", "raw", "aligned", "normalized", "normalized_aligned")
    n = len(models)
    matrices = {m: [[0.0] * n for _ in range(n)] for m in metrics}
    normalized = [normalize(m) for m in models] if not binary else []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for done, (i, j) in enumerate(pairs, start=1):
        if binary:
            values = euclidean_distances(models[i], models[j], variants=("raw", "aligned"))
            values["hamming_raw"] = hamming_distance(models[i], models[j])
            values["hamming"] = hamming_distance(models[i], align(models[i], models[j]))
        else:
            values = euclidean_distances(models[i], models[j])
            values["geodesic"] = geodesic_distance(normalized[i], align(normalized[i], normalized[j]))
        for metric in metrics:
            matrices[metric][i][j] = matrices[metric][j][i] = float(values[metric])
        run.progress(done / len(pairs), {"i": i, "j": j, **{m: float(values[m]) for m in metrics}})
    data = {"ids": ids, "names": [m.name for m in minima], "matrices": matrices, "binary": binary}
    run.finish_result(data, ids, run.key)


def _dataset_shape(minimum):
    """Distances need no data, only the input shape and class count (read without loading the dataset)."""
    from types import SimpleNamespace

    from toroid.worker.landscape.data import dataset_info

    input_shape, num_classes = dataset_info(minimum.dataset, **(minimum.dataset_options or {}))
    return SimpleNamespace(input_shape=input_shape, num_classes=num_classes)


@_job_task("section")
def section(run) -> None:
    """Error on the Gram-Schmidt plane through three minima (docs/method.md §7)."""
    from toroid.worker.landscape import section_2d

    p = run.params
    minima = [_minimum(i) for i in p["minimum_ids"]]
    dataset = _dataset(minima[0])
    models = [_model(m, dataset) for m in minima]
    run.say("section through " + ", ".join(m.name for m in minima))
    result = section_2d(*models, dataset, space=p["space"], resolution=p["resolution"], margin=p["margin"],
                        progress=run.progress)
    run.finish_result(result.to_dict(), p["minimum_ids"], run.key)


@_job_task("torus")
def torus(run) -> None:
    """Error on a torus slice through two or three normalized, aligned minima (docs/method.md)."""
    from toroid.worker.landscape import torus_slice

    p = run.params
    minima = [_minimum(i) for i in p["minimum_ids"]]
    dataset = _dataset(minima[0])
    models = [_model(m, dataset) for m in minima]
    c = models[2] if len(models) == 3 else None
    run.say("torus slice through " + ", ".join(m.name for m in minima))
    result = torus_slice(models[0], models[1], dataset, c=c, resolution=p["resolution"], progress=run.progress)
    run.finish_result(result.to_dict(), p["minimum_ids"], run.key)


# --------------------------------------------------------------------------------------------- worker signals
_recovery: dict[str, threading.Thread] = {}


def _recover_once() -> None:
    from toroid.store.ledger import recover_jobs

    try:
        recovered = recover_jobs()
        if recovered:
            log.warning("re-enqueued %d job(s) left behind: %s", len(recovered), ", ".join(recovered))
    except Exception:  # the periodic check must survive a busy database or a Redis hiccup
        log.exception("job recovery failed")


def _recovery_loop() -> None:
    from toroid.store.ledger import stale_job_s

    while True:
        _recover_once()
        time.sleep(stale_job_s())


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    """A starting worker creates the tables if needed and recovers jobs a dead worker left behind, then keeps
    checking every TOROID_STALE_JOB_S seconds in a daemon thread of its main process."""
    from toroid.store.db import init_db

    init_db()
    if "thread" not in _recovery:
        _recovery["thread"] = threading.Thread(target=_recovery_loop, name="toroid-job-recovery", daemon=True)
        _recovery["thread"].start()


@signals.worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    from toroid.store.db import get_engine

    get_engine().dispose(close=False)
