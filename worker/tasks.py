"""Celery tasks: thin glue between the job ledger, the artifact store and the science core.

Every task takes one argument, the job id, and runs ``run_job``: it claims the job (``toroid.store.ledger.claim``;
a duplicate message finds the job taken or finished and does nothing), reads its typed parameters
(``toroid.store.params``), loads the minima's networks (``toroid.store.loading``), calls one function of the core
with the job's progress callback (which reports partial results, heartbeats, and raises to stop the computation
when the job is cancelled), and stores the result idempotently. Nothing half-written remains: results are written
in one transaction, artifacts atomically.

The job ledger is the source of truth for a job's state; Celery's own record follows it, so Flower and Celery
events show what happened: a failed job ends its task in FAILURE (``JobFailed``), a cancelled one in REVOKED (a
``task-revoked`` event, then ``Ignore``), a duplicate or superseded message in SUCCESS with its reason.

Reliability signals: a starting worker (``worker_ready``) brings the schema up to date, re-enqueues jobs that a
dead worker left behind and keeps checking every ``TOROID_STALE_JOB_S`` seconds
(``toroid.store.ledger.recover_jobs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from sqlalchemy import update

from toroid.store.celery_app import celery_app, time_limit_message
from toroid.store.db import new_session
from toroid.store.families import known_distances, queue_family_distances, reference_of
from toroid.store.ledger import (
    TASK_NAMES,
    JobCancelled,
    JobRun,
    JobSuperseded,
    claim,
    clean_json,
    record_flatness,
    recover_jobs,
    stale_job_s,
    take_parked,
)
from toroid.store.loading import minimum_dataset, minimum_model, minimum_shape
from toroid.store.models import Job, Minimum, new_id, utcnow
from toroid.store.params import (
    DistancesJob,
    EvaluateJob,
    FlatnessJob,
    PathJob,
    SectionJob,
    SharpnessJob,
    TorusJob,
    TrainJob,
)

log = get_task_logger("toroid.worker")

#: The computation of each job kind: ``compute(run)`` with ``run.request`` the job's typed parameters.
COMPUTE: dict[str, Callable[[JobRun], None]] = {}


class JobFailed(Exception):
    """Raised to Celery when a job failed, so its task ends in FAILURE; the ledger holds the message too."""


@celery_app.task(name="toroid.ping")
def ping() -> dict:
    """Answer with the device this worker computes on (a manual probe; /api/health reads the heartbeat keys)."""
    from toroid.worker.landscape.device import default_device

    return {"device": str(default_device())}


# --------------------------------------------------------------------------------------------- the job runner
#: Called with the job id after ``run_job`` ends a job (whatever its outcome), in the process that ran it: a study
#: waiting for that job runs its next round here (``toroid.worker.study``, docs/studies.md).
AFTER_JOB: list[Callable[[str], None]] = []


def run_job(kind: str, job_id: str, worker: str | None = None, *, queued: bool = False) -> str:
    """Claim and run one job here (``queued``: a worker took it from its queue, so a long analysis may split); returns
    succeeded, failed, cancelled, superseded, waiting (parked) or skipped (not queued). The ledger records a failure;
    then the ``AFTER_JOB`` hooks run."""
    try:
        return _run_job(kind, job_id, worker, queued)
    finally:
        for hook in AFTER_JOB:
            try:
                hook(job_id)
            except Exception:  # the job's outcome is recorded; a hook's trouble is logged, recovery catches up
                log.exception("after-job hook %s failed for job %s", getattr(hook, "__name__", hook), job_id)


def _run_job(kind: str, job_id: str, worker: str | None, queued: bool) -> str:
    job = claim(job_id, worker=worker or f"inline pid {os.getpid()}")
    if job is None:
        log.info("job %s is not queued (taken, finished, cancelled or unknown): nothing to do", job_id)
        return "skipped"
    run = JobRun(job, published=queued)
    with run:
        try:
            COMPUTE[kind](run)
        except JobCancelled:
            log.info("job %s cancelled", job_id)
            return "cancelled"
        except JobSuperseded:
            log.warning("job %s was taken over by another worker; stopping", job_id)
            return "superseded"
        except Exception as exc:
            log.exception("job %s failed", job_id)
            message = error_message(exc)
            if isinstance(exc, SoftTimeLimitExceeded):  # the task's soft time limit (store/celery_app.py)
                message = time_limit_message()
            run.fail(message)
            return "failed"
    return "waiting" if run.parked else "succeeded"


def error_message(exc: Exception) -> str:
    """What a failed job records: a ``ValueError``'s own words (they say what is wrong), else the type too."""
    return str(exc) if isinstance(exc, ValueError) and str(exc) else f"{type(exc).__name__}: {exc}"


def continue_parked(job_id: str, worker: str, step: Callable[[JobRun], str],
                    fail: Callable[[JobRun, str], None]) -> str:
    """Take a parked job (``take_parked``: a study between rounds, a split analysis between chunks) and run ``step``
    (one round: succeeded, waiting, or again when what it waits for ended meanwhile) until it finishes or parks again;
    a failing round ``fail``s it. Returns succeeded, failed, waiting, cancelled, superseded or skipped."""
    while True:
        job = take_parked(job_id, worker)
        if job is None:
            return "skipped"
        run = JobRun(job)
        run.partial = dict(job.partial or {})  # taken parked: its bookkeeping (a claim keeps only KEPT_PARTIAL)
        run.fraction = float(job.progress or 0.0)
        with run:
            try:
                outcome = step(run)
            except JobCancelled:
                return "cancelled"
            except JobSuperseded:
                return "superseded"
            except Exception as exc:
                log.exception("continuing %s job %s failed", job.kind, job_id)
                fail(run, error_message(exc))
                return "failed"
        if outcome != "again":
            return outcome


def _job_state(job_id: str) -> tuple[str | None, str | None]:
    with new_session() as session:
        job = session.get(Job, job_id)
        return (job.state, job.error) if job is not None else (None, None)


def _celery_outcome(task, job_id: str, outcome: str) -> str:
    """Make Celery's record of the task agree with the ledger (see the module docstring)."""
    state, error = _job_state(job_id) if outcome in ("failed", "skipped", "cancelled") else (None, None)
    if outcome == "failed" or (outcome == "skipped" and state == "failed"):
        raise JobFailed(error or f"job {job_id} failed")
    if outcome == "cancelled" or (outcome == "skipped" and state == "cancelled"):
        task.send_event("task-revoked", terminated=False, signum=None, expired=False)
        raise Ignore(f"job {job_id} was cancelled")
    return outcome


def job_task(kind: str):
    """Register ``compute`` as the computation of ``kind`` and as the Celery task named ``TASK_NAMES[kind]``."""

    def register(compute: Callable[[JobRun], None]):
        COMPUTE[kind] = compute

        @celery_app.task(name=TASK_NAMES[kind], bind=True)
        def task(self, job_id: str) -> str:
            worker = f"{self.request.hostname or 'worker'} pid {os.getpid()}"
            return _celery_outcome(self, job_id, run_job(kind, job_id, worker, queued=True))

        task.__doc__ = compute.__doc__
        return task

    return register


def _minimum(minimum_id: str) -> Minimum:
    with new_session() as session:
        minimum = session.get(Minimum, minimum_id)
    if minimum is None:
        raise ValueError(f"minimum {minimum_id} was deleted before the job ran")
    return minimum


def _loading(run: JobRun):
    """A context for loading a job's dataset: downloads follow the server's setting (``allow_downloads``,
    TOROID_ALLOW_DOWNLOADS) and report to the job's status line while bytes arrive (docs/data.md); the progress
    call also stops a download when the job is cancelled. The job's fraction is left as it is."""
    from toroid.store.settings import get_settings
    from toroid.worker.landscape.data import download_progress, set_allow_downloads

    set_allow_downloads(bool(getattr(get_settings(), "allow_downloads", False)))

    def report(fraction: float, message: str) -> None:
        run.say(message)
        run.progress(0.0, {})

    return download_progress(report)


def _inputs(run: JobRun, ids: list[str]) -> tuple[list[Minimum], Any, list]:
    """The minima of ``ids``, their (shared) dataset, and their networks."""
    minima = [_minimum(i) for i in ids]
    with _loading(run):
        dataset = minimum_dataset(minima[0])
    return minima, dataset, [minimum_model(m, dataset) for m in minima]


# --------------------------------------------------------------------------------------------- the tasks
@job_task("train")
def train(run: JobRun) -> None:
    """Train a minimum with a sampler (docs/method.md §8) and store it as a new minimum."""
    from toroid.store.artifacts import get_store, state_dict_bytes
    from toroid.worker.landscape import load_dataset, train_minimum
    from toroid.worker.landscape.evaluate import Evaluator

    p: TrainJob = run.request
    with _loading(run):
        dataset = load_dataset(p.dataset, **p.dataset_options)
    run.say(f"training {p.architecture} on {p.dataset} with {p.sampler} (seed {p.seed})")
    run.progress(0.0, {})

    def percent(value: Any) -> str:
        return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"

    def report(fraction: float, info: dict[str, Any]) -> None:
        """Every epoch (adv's confusion pre-training epochs too) into the job's partial curves (docs/api.md) and
        its status line."""
        where = f"epoch {info.get('epoch')}/{info.get('epochs')}"
        if info.get("phase") == "confusion":
            run.say(f"confusion pre-training {where} · error {percent(info.get('train_error'))}")
        else:
            run.say(f"{where} · train {percent(info.get('train_error'))} · test {percent(info.get('test_error'))}")
        run.progress(fraction, info)

    model, provenance = train_minimum(
        p.architecture, p.config, dataset, sampler=p.sampler, hparams=p.hyperparameters, seed=p.seed,
        epochs=p.epochs, target_error=p.target_error, progress=report,
    )
    run.check()
    errors = Evaluator(model, dataset).evaluate_state(model, "both")
    store, data = get_store(), state_dict_bytes(model.state_dict())
    sha = hashlib.sha256(data).hexdigest()
    with store.guard(sha):  # a delete of a minimum with the same bytes waits until the row is in (store/artifacts.py)
        store.put_bytes(data)
        minimum_id = run.finish_minimum(Minimum(
            id=new_id(), name=p.name, architecture=p.architecture, config=p.config, dataset=p.dataset,
            structure=_structure(model),
            dataset_options=p.dataset_options, sampler=p.sampler, seed=p.seed,
            train_error=float(errors["train_error"]), test_error=float(errors["test_error"]),
            provenance=clean_json(provenance), checkpoint_sha256=sha, source=p.source, created_at=utcnow(),
            owner=run.owner,
        ))
    _map_distances(minimum_id)


@job_task("evaluate")
def evaluate(run: JobRun) -> None:
    """The train and test error of an uploaded minimum, written to its row (docs/operations.md, "Running a shared
    server": uploads are evaluated on a worker, never in the API)."""
    from toroid.worker.landscape.evaluate import Evaluator

    p: EvaluateJob = run.request
    (minimum,), dataset, (model,) = _inputs(run, p.minimum_ids)
    run.say(f"evaluating {minimum.name} on {minimum.dataset}")
    run.progress(0.0, {})
    errors = Evaluator(model, dataset).evaluate_state(model, "both")
    train_error, test_error = float(errors["train_error"]), float(errors["test_error"])
    run.progress(1.0, {"train_error": train_error, "test_error": test_error})

    def write(session) -> str:
        stored = session.execute(update(Minimum).where(Minimum.id == minimum.id).values(
            train_error=train_error, test_error=test_error))
        if stored.rowcount != 1:
            raise ValueError(f"minimum {minimum.id} was deleted while it was evaluated")
        session.execute(update(Job).where(Job.id == run.job_id).values(minimum_id=minimum.id))
        return minimum.id

    run.finish(write)


def _structure(model) -> str | None:
    """The trained network's structure hash (its family across sources), None when it cannot be traced."""
    from toroid.store.programs import structure_hash

    try:
        return structure_hash(model)
    except ValueError:
        return None


def _map_distances(minimum_id: str) -> None:
    """Keep the minimum's family on the map: ask for its distances (``toroid.store.families``)."""
    with new_session() as session:
        minimum = session.get(Minimum, minimum_id)
        if minimum is not None:
            queue_family_distances(session, minimum)


@job_task("flatness")
def flatness(run: JobRun) -> None:
    """Local energy of one minimum (docs/method.md §6); the minimum records its value at the largest sigma."""
    from toroid.worker.landscape import local_energy

    p: FlatnessJob = run.request
    (minimum,), dataset, (model,) = _inputs(run, [p.minimum_id])
    run.say(f"local energy of {minimum.name}")
    result = local_energy(model, dataset, sigmas=p.sigmas, samples=p.samples, noise_on=p.noise_on, mode=p.mode,
                          max_samples=p.max_samples, progress=run.progress)
    data = result.to_dict()
    run.finish_result(data, [minimum.id], run.key,
                      also=lambda session, result_id: record_flatness(session, minimum.id, result_id=result_id,
                                                                      data=data))


@job_task("sharpness")
def sharpness(run: JobRun) -> None:
    """Top Hessian eigenvalue and Hessian trace of one minimum's training loss, on its normalized network
    (docs/method.md §6, "Hessian sharpness on the normalized network")."""
    from toroid.worker.landscape.sharpness import hessian_sharpness

    p: SharpnessJob = run.request
    (minimum,), dataset, (model,) = _inputs(run, [p.minimum_id])
    run.say(f"Hessian sharpness of {minimum.name}")
    result = hessian_sharpness(model, dataset, iterations=p.iterations, probes=p.probes, samples=p.samples,
                               seed=p.seed, progress=run.progress)
    run.finish_result(result.to_dict(), [minimum.id], run.key)


@job_task("path")
def path(run: JobRun) -> None:
    """Error along a path between two minima (docs/method.md §7): linear, linear_aligned, geodesic, one_bend,
    flip."""
    from toroid.worker.chunks import split_or_merge
    from toroid.worker.landscape import one_bend, path_profile

    if split_or_merge(run, "path"):  # a long one splits into chunks over the workers (docs/operations.md)
        return
    p: PathJob = run.request
    (a, b), dataset, (model_a, model_b) = _inputs(run, [p.a, p.b])
    run.say(f"{p.kind} path {a.name} -> {b.name}")
    if p.kind == "one_bend":
        budget = {"epochs": p.epochs} if p.epochs else {}  # else the core's default budget
        result = one_bend(model_a, model_b, dataset, kind=p.bend_kind, points=p.points, bn=p.bn,
                          progress=run.progress, **budget)
    else:
        result = path_profile(model_a, model_b, dataset, kind=p.kind, points=p.points, bn=p.bn,
                              progress=run.progress)
    run.finish_result(result.to_dict(), [a.id, b.id], run.key)


@job_task("distances")
def distances(run: JobRun) -> None:
    """Pairwise distances (docs/method.md §5): geodesic after normalize + align, RMS Euclidean in four variants;
    binary networks: Hamming distance (raw and aligned) instead of the geodesic and normalized forms.

    ``alignment: "pairwise"`` aligns every pair; ``"reference"`` aligns every minimum once to the oldest one and
    measures in that common frame (docs/method.md §5, "Many minima"), its alignments kept in the artifact store.
    Either way the pairs an earlier result holds are taken from it (``known_distances``): a new minimum costs its
    row. ``reused_pairs`` in the result counts them, ``computed_pairs`` the rest."""
    from toroid.worker.landscape import align, euclidean_distances, geodesic_distance, hamming_distance, normalize
    from toroid.worker.landscape.symmetry import is_binary

    p: DistancesJob = run.request
    ids = p.minimum_ids
    minima = [_minimum(i) for i in ids]
    shape = minimum_shape(minima[0])  # distances need no data, only the input shape and class count
    models = [minimum_model(m, shape) for m in minima]
    binary = is_binary(models[0])
    metrics = ("hamming", "hamming_raw", "raw", "aligned") if binary else (
        "geodesic", "raw", "aligned", "normalized", "normalized_aligned")
    n = len(models)
    reference = reference_of(minima) if p.alignment == "reference" else None
    values, known = known_distances(ids, metrics, p.alignment, reference.checkpoint_sha256 if reference else None)
    # column by column ((0,1), (0,2), (1,2), (0,3), ...): the pairs of minimum j are complete once its column is,
    # so the map can place a minimum that just joined the family before the whole matrix is done
    pairs = [(i, j) for j in range(1, n) for i in range(j) if not known[i, j]]
    if reference is not None and pairs:  # none: every pair known (a job queued in a race for a subset of the family)
        frames = _reference_frames(run, minima, models, ids.index(reference.id),
                                   {j for _, j in pairs} | {i for i, _ in pairs})
        todo: dict[int, list[int]] = {}
        for i, j in pairs:
            todo.setdefault(j, []).append(i)
        for done, (j, others) in enumerate(sorted(todo.items()), start=1):
            row = frames.row(j, others)
            for metric in metrics:
                values[metric][others, j] = values[metric][j, others] = row[metric]
            # the computed pairs only, streamed a column at a time (what the map places from while it runs)
            run.progress(done / len(todo), {"i": others, "j": [j] * len(others),
                                            **{m: [float(v) for v in row[m]] for m in metrics}})
    else:
        normalized = [normalize(m) for m in models] if not binary else []
        for done, (i, j) in enumerate(pairs, start=1):
            if binary:
                pair = euclidean_distances(models[i], models[j], variants=("raw", "aligned"))
                pair["hamming_raw"] = hamming_distance(models[i], models[j])
                pair["hamming"] = hamming_distance(models[i], align(models[i], models[j]))
            else:
                pair = euclidean_distances(models[i], models[j])
                pair["geodesic"] = geodesic_distance(normalized[i], align(normalized[i], normalized[j]))
            for metric in metrics:
                values[metric][i, j] = values[metric][j, i] = float(pair[metric])
            run.progress(done / len(pairs), {"i": i, "j": j, **{m: float(pair[m]) for m in metrics}})
    matrices = {m: values[m].tolist() for m in metrics}
    data = {"ids": ids, "names": [m.name for m in minima], "matrices": matrices, "binary": binary,
            "alignment": p.alignment, "reused_pairs": n * (n - 1) // 2 - len(pairs), "computed_pairs": len(pairs)}
    if reference is not None:
        data["reference"] = {"id": reference.id, "name": reference.name, "sha256": reference.checkpoint_sha256}
    run.finish_result(data, ids, run.key)
    _map_distances(ids[0])  # minima that joined the family meanwhile: catch up


def _reference_frames(run: JobRun, minima: list, models: list, reference: int, needed: set[int]):
    """The common frame of ``needed`` minima (docs/method.md §5, "Many minima"): each one's features aligned to the
    ``reference``-th, read from the artifact store when an earlier job computed them (one file per reference and
    checkpoint, written atomically), else computed (three alignments) and kept."""
    import numpy as np

    from toroid.store.settings import get_settings
    from toroid.worker.landscape import CODE_VERSION
    from toroid.worker.landscape.distances import ReferenceFrames, frame_features
    from toroid.worker.landscape.graph import is_binary, sphere_blocks

    folder = get_settings().artifacts_dir / "frames" / CODE_VERSION / minima[reference].checkpoint_sha256
    folder.mkdir(parents=True, exist_ok=True)
    blocks = () if is_binary(models[reference]) else sphere_blocks(models[reference])
    features, made = [], 0
    for k, (minimum, model) in enumerate(zip(minima, models, strict=True)):
        if k not in needed:
            features.append(None)
            continue
        path = folder / f"{minimum.checkpoint_sha256}.npz"
        try:
            with np.load(path) as stored:
                features.append({name: stored[name] for name in stored.files})
            continue
        except (OSError, ValueError):
            pass
        found = frame_features(models[reference], model, blocks)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, **found)
        os.replace(temporary, path)
        features.append(found)
        made += 1
        run.say(f"aligning to the reference {minima[reference].name}: {made} minima")
    present = [f for f in features if f is not None]
    placeholder = {name: np.zeros_like(value) for name, value in present[0].items()}
    return ReferenceFrames([f if f is not None else placeholder for f in features], blocks)


@job_task("section")
def section(run: JobRun) -> None:
    """Error on the Gram-Schmidt plane through three minima (docs/method.md §7)."""
    from toroid.worker.chunks import split_or_merge
    from toroid.worker.landscape import section_2d

    if split_or_merge(run, "section"):  # a long one splits into chunks over the workers (docs/operations.md)
        return
    p: SectionJob = run.request
    minima, dataset, models = _inputs(run, p.minimum_ids)
    run.say("section through " + ", ".join(m.name for m in minima))
    result = section_2d(*models, dataset, space=p.space, resolution=p.resolution, margin=p.margin,
                        progress=run.progress)
    run.finish_result(result.to_dict(), p.minimum_ids, run.key)


@job_task("torus")
def torus(run: JobRun) -> None:
    """Error on a torus slice through two or three normalized, aligned minima (docs/method.md §7)."""
    from toroid.worker.chunks import split_or_merge
    from toroid.worker.landscape import torus_slice

    if split_or_merge(run, "torus"):  # a long one splits into chunks over the workers (docs/operations.md)
        return
    p: TorusJob = run.request
    minima, dataset, models = _inputs(run, p.minimum_ids)
    c = models[2] if len(models) == 3 else None
    run.say("torus slice through " + ", ".join(m.name for m in minima))
    result = torus_slice(models[0], models[1], dataset, c=c, resolution=p.resolution, progress=run.progress)
    run.finish_result(result.to_dict(), p.minimum_ids, run.key)


# --------------------------------------------------------------------------------------------- worker signals
_recovery: dict[str, threading.Thread] = {}

#: Each worker's main process sets ``WORKER_KEY_PREFIX + <hostname>`` in Redis every WORKER_HEARTBEAT_S seconds,
#: expiring after WORKER_KEY_TTL_S: /api/health counts these keys instead of pinging the workers (a ping waits out
#: its timeout when no worker is alive), and a killed worker's key expires on its own.
WORKER_KEY_PREFIX = "toroid:worker:"
WORKER_HEARTBEAT_S = 5.0
WORKER_KEY_TTL_S = 15
_heartbeat: dict[str, Any] = {}


def _recover_once() -> None:
    try:
        recovered = recover_jobs()
        if recovered:
            log.warning("re-enqueued %d job(s) left behind: %s", len(recovered), ", ".join(recovered))
    except Exception:  # the periodic check must survive a busy database or a Redis hiccup
        log.exception("job recovery failed")


def _beat() -> None:
    """Set this worker's heartbeat key (what /api/health counts); a Redis hiccup is logged, never raised."""
    if _heartbeat.get("stopped") or "hostname" not in _heartbeat:
        return
    try:
        import redis

        client = _heartbeat.get("client")
        if client is None:
            client = _heartbeat["client"] = redis.Redis.from_url(
                celery_app.conf.broker_url, socket_connect_timeout=2, socket_timeout=2)
        from toroid.worker.landscape.device import assigned_gpus

        # store/eta.py reads the queues, /api/health the GPU (CUDA_VISIBLE_DEVICES; read without touching CUDA)
        value = json.dumps({"pid": os.getpid(), "queues": _heartbeat.get("queues") or [], "gpu": assigned_gpus()})
        client.set(WORKER_KEY_PREFIX + _heartbeat["hostname"], value, ex=WORKER_KEY_TTL_S)
    except Exception:
        log.warning("could not write the worker heartbeat", exc_info=True)


def _recovery_loop() -> None:
    next_recovery = 0.0
    while True:
        _beat()
        if time.monotonic() >= next_recovery:
            _recover_once()
            next_recovery = time.monotonic() + stale_job_s()
        time.sleep(min(WORKER_HEARTBEAT_S, stale_job_s()))


@signals.worker_init.connect
def _preload(**_: Any) -> None:
    """Import the core (torch, scipy: 0.6 s a first click's job no longer waits for) and what torch imports lazily on
    a first optimizer step (``torch._dynamo``) before the pool forks: a soft time limit striking inside such an
    import left a half-initialised module that failed every later job. No CUDA call: a forked child could not use
    a context made before the fork."""
    import toroid.worker.landscape  # noqa: F401

    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # a torch without dynamo: nothing is imported lazily then
        log.debug("torch._dynamo is not importable", exc_info=True)


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """A starting worker brings the schema up to date and recovers jobs a dead worker left behind, then keeps
    checking every TOROID_STALE_JOB_S seconds in a daemon thread of its main process, which also writes the
    worker's heartbeat key every WORKER_HEARTBEAT_S seconds."""
    from toroid.store.db import init_db

    init_db()
    _heartbeat["hostname"] = getattr(sender, "hostname", None) or f"pid{os.getpid()}@{socket.gethostname()}"
    try:  # the queues this worker consumes, which the ETAs of their jobs share out (store/eta.py)
        _heartbeat["queues"] = sorted((sender.app.amqp.queues.consume_from or {}).keys())
    except AttributeError:
        _heartbeat["queues"] = []
    if "thread" not in _recovery:
        _recovery["thread"] = threading.Thread(target=_recovery_loop, name="toroid-job-recovery", daemon=True)
        _recovery["thread"].start()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    """A worker stopping on purpose takes its heartbeat key away at once (health then says so)."""
    _heartbeat["stopped"] = True
    client, hostname = _heartbeat.get("client"), _heartbeat.get("hostname")
    if client is not None and hostname:
        try:
            client.delete(WORKER_KEY_PREFIX + hostname)
        except Exception:
            log.warning("could not remove the worker heartbeat", exc_info=True)


@signals.worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    from toroid.store.db import get_engine

    get_engine().dispose(close=False)
