"""A bounded load test of one shared server: 40 concurrent clients for 60 s, two users, loopback only.

One real stack (Redis, one Celery worker process, uvicorn on 127.0.0.1; ``tests.integration.conftest.ApiStack``) with
``TOROID_API_TOKEN`` set and two users, alice and bob. Each client is a thread with its own ``httpx.Client`` that acts
as one of them, for at most ``DURATION_S`` seconds and ``MAX_REQUESTS`` requests (each with a timeout), with a
budget per kind of write:

* reads: ``GET /api/minima``, ``/api/jobs``, ``/api/jobs/{id}``, ``/api/results/{id}`` of finished jobs,
  ``/api/health``, ``/api/session``, a minimum's checkpoint, and now and then its canonical form (a read that writes:
  computed once, then kept as an artifact);
* uploads: small digits MLP checkpoints (widths [16], untrained: valid checkpoints), a different seed each, some from
  a small shared pool, some with the bytes of a minimum being deleted right now, so that identical bytes meet;
* analyses: ``POST /api/analyses/path`` (3 to 5 points) on two minima of one family, ``POST
  /api/analyses/flatness`` (4 samples, 3 sigmas) on a fixed minimum or one of the client's own uploads;
* deletes: of the client's own uploads (204, or 409 naming the jobs while one uses it; sometimes ``?force=true``),
  and of the other user's minima (403; 404 only for one its owner deleted). A client announces a delete a moment
  before it sends it, and the others aim canonical reads and identical uploads at that minimum: the races a shared
  server meets by chance, made frequent.

Every status code and latency is recorded. Then the ledger drains (bounded; leftovers are cancelled by the admin
through the API) and the test asserts, listing every broken promise at once: no answer >= 500 (the API log's
tracebacks are printed) and none outside each request's allowed set; the artifact store holds exactly the files the
minima reference, and no listed minimum's file was ever found missing (by a read or a job); every 201 upload is
listed or was deleted by a recorded 204; every job is final; results and succeeded jobs agree one to one per key;
every analysis job id answered is in the ledger; every remaining upload was evaluated by its job. A summary is
printed and, with ``TOROID_LOAD_REPORT=<path>``,
written there as JSON (docs/operations.md, "Load test").
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import text

from tests.integration.conftest import ApiStack

pytestmark = [pytest.mark.slow, pytest.mark.load]  # run with `make load-test`

ADMIN = "admin-token-for-the-load-test-0123456789"
CONFIG = {"widths": [16]}
SHAPE = ((64,), 10)  # digits: 8x8 inputs, 10 classes (no dataset load needed to build a network)

CLIENTS = 40
DURATION_S = 60.0
MAX_REQUESTS = 500  # per client; the time bound usually ends the loop first
REQUEST_TIMEOUT_S = 30.0
PAUSE_S = (0.0, 0.1)  # think time between two requests of one client
BUDGET = {"upload": 4, "analysis": 5, "delete_own": 3, "delete_other": 3, "canonical": 4}  # per client
SHARED_SEEDS = (900_001, 900_002, 900_003)  # identical bytes, uploaded by both users
SIGMAS = [0.05, 0.1, 0.2]
PATH_KINDS = ("linear", "linear_aligned", "geodesic")
DRAIN_S = 120.0
FINAL = ("succeeded", "failed", "cancelled")


# ============================================================================================= records
@dataclass
class Call:
    kind: str
    method: str
    path: str
    status: int  # 0: no answer (transport error or timeout)
    latency_s: float
    user: str
    client: int = -1
    at: float = 0.0  # seconds since the request phase began
    body: str = ""  # kept for answers >= 500, unexpected ones and transport errors
    json: dict | list | None = None


@dataclass
class Shared:
    """What the clients learn while they run (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.perf_counter)
    calls: list[Call] = field(default_factory=list)
    uploaded: dict[str, str] = field(default_factory=dict)  # id -> owner (201 answers)
    seed_of: dict[str, int] = field(default_factory=dict)  # id -> the seed of its bytes
    doomed: list[str] = field(default_factory=list)  # ids whose owner is about to delete them
    missing_reads: list[tuple[Call, str]] = field(default_factory=list)  # 404 on a checkpoint, and the id read
    deleted: dict[str, float] = field(default_factory=dict)  # id -> when its owner's 204 came
    analysis_jobs: set[str] = field(default_factory=set)
    job_ids: set[str] = field(default_factory=set)
    result_ids: set[str] = field(default_factory=set)
    unexpected: list[Call] = field(default_factory=list)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def checkpoint(seed: int) -> bytes:
    from toroid.worker.landscape.io import state_dict_bytes
    from toroid.worker.landscape.nets import build_model

    return state_dict_bytes(build_model("mlp", CONFIG, SHAPE, seed=seed))


def upload_form(name: str) -> dict[str, str]:
    return {"architecture": "mlp", "config": json.dumps(CONFIG), "dataset": "digits", "name": name}


def add_user(stack: ApiStack, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toroid.cli", "users", "add", name], env=stack.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ============================================================================================= the clients
class Client:
    """One thread: one user, its own httpx.Client, a bounded loop of mixed requests."""

    def __init__(self, index: int, stack: ApiStack, tokens: dict[str, str], fixed: dict[str, list[str]],
                 shared: Shared, deadline: float, seeds: dict[int, bytes]):
        self.index, self.stack, self.shared, self.deadline, self.seeds = index, stack, shared, deadline, seeds
        self.user = "alice" if index % 2 == 0 else "bob"
        self.other = "bob" if self.user == "alice" else "alice"
        self.token = tokens[self.user]
        self.fixed = fixed
        self.rng = random.Random(1000 + index)
        self.budget = dict(BUDGET)
        self.own: list[str] = []  # this client's live uploads (only this thread deletes them)
        self.uploads = 0

    # -- one request, recorded ----------------------------------------------------------------------------------
    def call(self, http: httpx.Client, kind: str, method: str, path: str, allowed: tuple[int, ...], **kwargs) -> Call:
        started = time.perf_counter()
        try:
            response = http.request(method, path, **kwargs)
            status, body = response.status_code, response.text
            try:
                payload = response.json()
            except ValueError:
                payload = None
        except httpx.HTTPError as exc:
            status, body, payload = 0, f"{type(exc).__name__}: {exc}", None
        call = Call(kind, method, path, status, time.perf_counter() - started, self.user, self.index,
                    started - self.shared.started, json=payload)
        if status >= 500 or status == 0 or status not in allowed or status in (404, 409):
            call.body = body[:2000]
        with self.shared.lock:
            self.shared.calls.append(call)
            if status not in allowed and not (status >= 500 or status == 0):
                self.shared.unexpected.append(call)
        self._learn(kind, payload if 200 <= status < 300 else None)
        if kind.startswith("read:") and kind != "read:session":
            call.json = None  # lists of jobs and minima: harvested above, not kept
        return call

    def _learn(self, kind: str, payload) -> None:
        """Harvest job and result ids from successful answers (reads of finished results use them)."""
        if payload is None:
            return
        with self.shared.lock:
            if kind.startswith("analysis:") and isinstance(payload, dict):
                job = payload.get("job") or {}
                self.shared.analysis_jobs.add(job.get("id"))
                self.shared.job_ids.add(job.get("id"))
                if payload.get("result"):
                    self.shared.result_ids.add(payload["result"]["id"])
            elif kind == "read:jobs" and isinstance(payload, list):
                for job in payload:
                    self.shared.job_ids.add(job["id"])
                    if job.get("state") == "succeeded" and job.get("result_id"):
                        self.shared.result_ids.add(job["result_id"])

    # -- the actions --------------------------------------------------------------------------------------------
    def read(self, http: httpx.Client) -> None:
        choice = self.rng.random()
        with self.shared.lock:
            results = sorted(self.shared.result_ids)
            jobs = sorted(self.shared.job_ids)
        if choice < 0.25:
            self.call(http, "read:minima", "GET", "/api/minima", (200,))
        elif choice < 0.45:
            self.call(http, "read:jobs", "GET", "/api/jobs", (200,), params={"limit": 50})
        elif choice < 0.60 and results:
            self.call(http, "read:result", "GET", f"/api/results/{self.rng.choice(results)}", (200,))
        elif choice < 0.70 and jobs:
            self.call(http, "read:job", "GET", f"/api/jobs/{self.rng.choice(jobs)}", (200,))
        elif choice < 0.76:
            self.checkpoint(http)
        elif choice < 0.88:
            self.call(http, "read:health", "GET", "/api/health", (200,))
        else:
            call = self.call(http, "read:session", "GET", "/api/session", (200,))
            if call.status == 200 and (call.json or {}).get("user") != self.user:
                call.body = f"expected user {self.user!r}: {call.json}"
                with self.shared.lock:
                    self.shared.unexpected.append(call)

    def upload(self, http: httpx.Client) -> None:
        self.uploads += 1
        with self.shared.lock:
            doomed = [self.shared.seed_of[i] for i in self.shared.doomed[-5:]]
        if doomed and self.rng.random() < 0.3:
            seed = self.rng.choice(doomed)  # the bytes of a minimum being deleted right now
        elif self.rng.random() < 0.3:
            seed = self.rng.choice(SHARED_SEEDS)
        else:
            seed = 10_000 + 100 * self.index + self.uploads
        name = f"{self.user}-c{self.index}-{self.uploads}-s{seed}"
        call = self.call(http, "upload", "POST", "/api/minima", (201,),
                         files={"file": (f"{name}.safetensors", self.seeds[seed])}, data=upload_form(name))
        if call.status == 201:
            self.own.append(call.json["id"])
            with self.shared.lock:
                self.shared.uploaded[call.json["id"]] = self.user
                self.shared.seed_of[call.json["id"]] = seed

    def analysis(self, http: httpx.Client) -> None:
        if self.rng.random() < 0.5:
            a, b = self.fixed["pair"]
            body = {"a": a, "b": b, "kind": self.rng.choice(PATH_KINDS), "points": self.rng.choice((3, 4, 5))}
            self.call(http, "analysis:path", "POST", "/api/analyses/path", (200, 202), json=body)
        else:
            target = (self.rng.choice(self.own) if self.own and self.rng.random() < 0.6
                      else self.rng.choice(self.fixed["alice"] + self.fixed["bob"]))
            body = {"minimum_id": target, "samples": 4, "sigmas": SIGMAS}
            call = self.call(http, "analysis:flatness", "POST", "/api/analyses/flatness", (200, 202), json=body)
            if call.status == 202 and target in self.own and self.budget["delete_own"] and self.rng.random() < 0.6:
                self.budget["delete_own"] -= 1  # at once, while its job is queued: 409 (204 if it already ran)
                self.delete_own(http, target)

    def delete_own(self, http: httpx.Client, target: str | None = None) -> None:
        target = target or self.own[0]
        force = self.rng.random() < 0.15
        with self.shared.lock:  # other clients now aim canonical reads and identical uploads at it
            self.shared.doomed.append(target)
        time.sleep(self.rng.uniform(0.0, 0.05))
        call = self.call(http, "delete:own", "DELETE", f"/api/minima/{target}", (204, 409),
                         params={"force": "true"} if force else None)
        if call.status == 204:
            self.own.remove(target)
            with self.shared.lock:
                self.shared.deleted[target] = time.monotonic()
        elif call.status == 409:
            if "queued or running job" not in call.body and "queued or running job" not in str(call.json):
                with self.shared.lock:  # a 409 must name the jobs that use the minimum
                    self.shared.unexpected.append(call)
            self.own.remove(target)
            self.own.append(target)  # try another one next time

    def delete_other(self, http: httpx.Client) -> None:
        with self.shared.lock:
            theirs = [i for i, owner in self.shared.uploaded.items() if owner == self.other]
        target = self.rng.choice(theirs + self.fixed[self.other])
        # a 404 is checked afterwards: only for a minimum its owner deleted
        self.call(http, "delete:other", "DELETE", f"/api/minima/{target}", (403, 404))

    def checkpoint(self, http: httpx.Client) -> None:
        """The weights as uploaded, of a listed minimum (often one whose bytes were just uploaded again): 404 only
        for a minimum deleted meanwhile, never for a listed one whose file is gone."""
        with self.shared.lock:
            listed = sorted(set(self.shared.uploaded) - set(self.shared.deleted))
            doomed = {self.shared.seed_of[i] for i in self.shared.doomed[-5:]}
            twins = [i for i in listed if self.shared.seed_of[i] in doomed]
        target = self.rng.choice(twins if twins and self.rng.random() < 0.7 else listed + self.fixed["bob"])
        call = self.call(http, "read:checkpoint", "GET", f"/api/minima/{target}/checkpoint", (200, 404))
        if call.status == 404:
            with self.shared.lock:
                self.shared.missing_reads.append((call, target))  # fine if its owner deleted it (checked at the end)

    def canonical(self, http: httpx.Client) -> None:
        with self.shared.lock:
            listed = sorted(set(self.shared.uploaded) - set(self.shared.deleted))
            doomed = self.shared.doomed[-5:]
        target = self.rng.choice(doomed if doomed and self.rng.random() < 0.7 else listed + self.fixed["alice"])
        call = self.call(http, "read:canonical", "GET", f"/api/minima/{target}/checkpoint", (200, 404),
                         params={"form": "canonical"})
        if call.status == 404:
            with self.shared.lock:
                self.shared.missing_reads.append((call, target))  # fine if its owner deleted it

    def step(self, http: httpx.Client) -> None:
        roll = self.rng.random()
        if roll < 0.10 and self.budget["upload"]:
            self.budget["upload"] -= 1
            self.upload(http)
        elif roll < 0.20 and self.budget["analysis"]:
            self.budget["analysis"] -= 1
            self.analysis(http)
        elif roll < 0.26 and self.budget["delete_own"] and self.own:
            self.budget["delete_own"] -= 1
            self.delete_own(http)
        elif roll < 0.30 and self.budget["delete_other"]:
            self.budget["delete_other"] -= 1
            self.delete_other(http)
        elif roll < 0.32 and self.budget["canonical"]:
            self.budget["canonical"] -= 1
            self.canonical(http)
        else:
            self.read(http)

    def run(self) -> None:
        with httpx.Client(base_url=self.stack.url, headers=bearer(self.token), timeout=REQUEST_TIMEOUT_S) as http:
            for _ in range(MAX_REQUESTS):
                if time.monotonic() >= self.deadline:
                    return
                self.step(http)
                time.sleep(self.rng.uniform(*PAUSE_S))


# ============================================================================================= the stack
@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """The stack, its two users, three fixed minima (alice's pair for paths, one of bob's) and the checkpoints."""
    stack = ApiStack(tmp_path_factory.mktemp("load") / "home",
                     {"TOROID_API_TOKEN": ADMIN, "TOROID_MAX_UPLOAD_MB": "1",
                      # a shared server's default: the harness's 3 s would re-enqueue jobs of a worker the load
                      # merely slowed down, which is not what this test is about
                      "TOROID_STALE_JOB_S": "30"}, wait=False)
    try:
        seeds = {seed: checkpoint(seed) for seed in (*SHARED_SEEDS, *range(3))}
        for index in range(CLIENTS):
            for n in range(1, BUDGET["upload"] + 1):
                seeds[10_000 + 100 * index + n] = checkpoint(10_000 + 100 * index + n)
        stack.wait_api()
        stack.wait_worker()
        makers = {name: add_user(stack, name) for name in ("alice", "bob")}
        tokens = {}
        for name, process in makers.items():
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            tokens[name] = out.strip()
        fixed: dict[str, list[str]] = {"alice": [], "bob": []}
        for owner, seed in (("alice", 0), ("alice", 1), ("bob", 2)):
            response = httpx.post(f"{stack.url}/api/minima", headers=bearer(tokens[owner]), timeout=60,
                                  files={"file": ("m.safetensors", seeds[seed])},
                                  data=upload_form(f"{owner}-fixed-{seed}"))
            assert response.status_code == 201, response.text
            fixed[owner].append(response.json()["id"])
        fixed["pair"] = fixed["alice"][:2]
        yield stack, tokens, fixed, seeds
    finally:
        stack.stop()


def drain(stack: ApiStack) -> tuple[float, list[str]]:
    """Wait (at most DRAIN_S) until no job is queued or running; then cancel what is left, as the admin, through
    the API. Returns the seconds waited and the ids cancelled."""
    started = time.monotonic()
    active = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
    while stack.count(active) and time.monotonic() - started < DRAIN_S:
        time.sleep(0.5)
    waited = time.monotonic() - started
    cancelled: list[str] = []
    for _ in range(10):  # a distances job that finishes may queue its family's next one: repeat until quiet
        with stack.engine.connect() as connection:
            left = [row[0] for row in connection.execute(
                text("SELECT id FROM jobs WHERE state IN ('queued', 'running')"))]
        if not left:
            break
        for job_id in left:
            response = httpx.post(f"{stack.url}/api/jobs/{job_id}/cancel", headers=bearer(ADMIN), timeout=30)
            assert response.status_code in (200, 409), (job_id, response.status_code, response.text)
            if response.status_code == 200:
                cancelled.append(job_id)
        time.sleep(1.0)
    return waited, cancelled


def rows(stack: ApiStack, sql: str) -> list[tuple]:
    with stack.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


# ============================================================================================= the test
def test_forty_clients_for_a_minute(load):
    stack, tokens, fixed, seeds = load
    shared = Shared()
    started = time.monotonic()
    deadline = started + DURATION_S
    clients = [Client(i, stack, tokens, fixed, shared, deadline, seeds) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"load-{c.index}", daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DURATION_S + REQUEST_TIMEOUT_S + 30 - (time.monotonic() - started))
    request_phase_s = time.monotonic() - started
    stuck = [t.name for t in threads if t.is_alive()]

    waited, cancelled = drain(stack)

    # ---------------------------------------------------------------------------------- what the server now holds
    listed = httpx.get(f"{stack.url}/api/minima", headers=bearer(ADMIN), timeout=30)
    assert listed.status_code == 200, listed.text
    listed_ids = {m["id"] for m in listed.json()}
    minima = rows(stack, "SELECT id, checkpoint_sha256, canonical_sha256 FROM minima")
    jobs = rows(stack, "SELECT id, kind, state, key, result_id FROM jobs")
    failed = rows(stack, "SELECT id, kind, error FROM jobs WHERE state = 'failed'")
    unevaluated = rows(stack, "SELECT m.id, j.state FROM minima m JOIN jobs j ON j.id = m.evaluation_job_id "
                              "WHERE m.train_error IS NULL OR m.test_error IS NULL")
    results = rows(stack, "SELECT id, key, job_id FROM results")
    files = stack.artifacts()

    calls = shared.calls
    problems = find_problems(calls, shared, stuck, fixed, listed_ids, minima, jobs, results, files, failed)
    # every evaluation job ended (drained, or cancelled after the drain): a succeeded one wrote its minimum's
    # errors, a cancelled or failed one leaves the minimum marked so in the API (never "pending" forever)
    lost_writes = [row for row in unevaluated if row[1] == "succeeded"]
    if lost_writes:
        problems.append(f"minima without errors although their evaluation job succeeded: {lost_writes[:20]}")
    shown = {m["id"]: m["evaluation"] for m in listed.json()}
    wrong = [(i, s, shown.get(i)) for i, s in unevaluated if s != "succeeded" and shown.get(i) != "failed"]
    if wrong:
        problems.append(f"minima whose evaluation job ended unsucceeded but are not shown as failed: {wrong[:20]}")
    summary = summarize(calls, jobs, request_phase_s, waited, cancelled, shared, len(minima), len(files))
    summary["failed_jobs"] = [{"id": i, "kind": k, "error": (e or "")[:300]} for i, k, e in failed]
    summary["problems"] = problems
    print(json.dumps(summary, indent=2))
    report = os.environ.get("TOROID_LOAD_REPORT")
    if report:
        with open(report, "w") as handle:
            json.dump(summary, handle, indent=2)
    if any(c.status >= 500 for c in calls):
        print("the server's tracebacks (api.log):\n" + tracebacks(stack))
    assert not problems, "\n\n".join(problems)


def tracebacks(stack: ApiStack, limit: int = 3) -> str:
    """The project's frames and the exception of the API log's tracebacks (where a 5xx came from), each distinct
    one once with its count (the first ``limit`` distinct ones)."""
    lines = [line for line in (stack.home / "logs" / "api.log").read_text(errors="replace").splitlines()
             if not line.startswith("INFO:")]
    found = []
    for at, line in enumerate(lines):
        if not line.startswith("Traceback") or len(set(found)) >= limit:
            continue
        block = []
        for index in range(at + 1, min(len(lines), at + 400)):
            current = lines[index]
            if current.startswith('  File "/') and "site-packages" not in current:
                block += [current, lines[index + 1] if index + 1 < len(lines) else ""]
            elif current and not current.startswith(" "):
                block.append(current)
                break
        found.append("\n".join(block))
    return "\n---\n".join(f"({n} times)\n{block}" for block, n in Counter(found).items()) or "(none in api.log)"


def find_problems(calls: list[Call], shared: Shared, stuck: list[str], fixed: dict[str, list[str]],
                  listed_ids: set[str], minima: list[tuple], jobs: list[tuple], results: list[tuple],
                  files: set[str], failed: list[tuple]) -> list[str]:
    """Every broken promise, each as one readable message (all of them, so one run shows everything)."""
    problems: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    # -- the answers
    check(not stuck, f"clients still running after the bound: {stuck}")
    failures = [c for c in calls if c.status >= 500 or c.status == 0]
    check(not failures, f"{len(failures)} answers >= 500 or no answer:\n" + "\n".join(
        f"  client {c.client} {c.method} {c.path} -> {c.status} ({c.latency_s:.2f} s, {c.user}, at "
        f"{c.at:.1f} s): {c.body}" for c in failures[:30]))
    check(not shared.unexpected, f"{len(shared.unexpected)} answers outside the allowed set:\n" + "\n".join(
        f"  {c.kind} {c.method} {c.path} -> {c.status}: {c.body[:300]}" for c in shared.unexpected[:30]))
    wrong_404 = [c.path for c in calls if c.kind == "delete:other" and c.status == 404
                 and c.path.rsplit("/", 1)[-1] not in shared.deleted]
    check(not wrong_404, f"404 for another user's minimum its owner never deleted: {wrong_404}")
    check(any(c.kind == "delete:other" and c.status == 403 for c in calls), "no cross-user delete was refused")

    # -- uploads and deletes
    uploaded, deleted = set(shared.uploaded), set(shared.deleted)
    check(deleted <= uploaded, f"204 for ids never uploaded: {sorted(deleted - uploaded)}")
    check(not (deleted & listed_ids), f"deleted by a 204 yet still listed: {sorted(deleted & listed_ids)}")
    lost = uploaded - deleted - listed_ids
    check(not lost, f"uploaded (201), never deleted by a recorded 204, yet not listed: {sorted(lost)}")
    check(listed_ids == {m[0] for m in minima}, "GET /api/minima and the minima table disagree")
    gone = (set(fixed["alice"]) | set(fixed["bob"])) - listed_ids
    check(not gone, f"fixed minima are gone (only their owner could delete them, and none did): {gone}")

    # -- the artifact store: exactly the files the minima reference
    check(not [f for f in files if f.startswith("tmp/")], f"half-written artifacts left: {sorted(files)}")
    by_file: dict[str, list[str]] = defaultdict(list)
    for minimum_id, checkpoint_sha, canonical_sha in minima:
        for column, sha in (("checkpoint", checkpoint_sha), ("canonical", canonical_sha)):
            if sha:
                by_file[f"{sha[:2]}/{sha}"].append(f"{minimum_id} ({column})")
    missing = {f: ids for f, ids in by_file.items() if f not in files}
    check(not missing, f"minima whose file is missing from the artifact store: {missing}")
    gone_files = [f"{c.path}: {c.body[:200]}" for c, target in shared.missing_reads
                  if "missing from the artifact store" in c.body or target not in shared.deleted]
    check(not gone_files, "a listed minimum's checkpoint could not be read (its file was gone for a while):\n  "
          + "\n  ".join(gone_files[:20]))
    lost_inputs = [f"{kind} job {job_id}: {error[:200]}" for job_id, kind, error in failed
                   if "missing from the store" in (error or "")]
    check(not lost_inputs, "jobs failed because an input's checkpoint file was missing from the artifact store:\n  "
          + "\n  ".join(lost_inputs))
    orphans = sorted(f for f in files - set(by_file) if not f.startswith("tmp/"))
    check(not orphans, f"artifact files no minimum references (checkpoint_sha256 or canonical_sha256): {orphans}")

    # -- the ledger
    not_final = [j[:3] for j in jobs if j[2] not in FINAL]
    check(not not_final, f"jobs not in a final state after the drain and the cancels: {not_final}")
    missing_jobs = sorted(shared.analysis_jobs - {j[0] for j in jobs})
    check(not missing_jobs, f"analysis job ids answered (200/202) but absent from the ledger: {missing_jobs}")
    results_by_id = {r[0]: r for r in results}
    shared_keys = [k for k, n in Counter(r[1] for r in results).items() if n > 1]
    check(not shared_keys, f"result rows sharing a key: {shared_keys}")
    analysis = [j for j in jobs if j[1] not in ("train", "study", "evaluate")]  # evaluations write the minimum
    active_keys = Counter(j[3] for j in analysis if j[2] in ("queued", "running") and j[3])
    check(not [k for k, n in active_keys.items() if n > 1], f"two active jobs of one key: {active_keys}")
    succeeded = [j for j in analysis if j[2] == "succeeded"]
    no_row = [j[:2] for j in succeeded if j[4] not in results_by_id or results_by_id[j[4]][1] != j[3]]
    check(not no_row, f"succeeded analysis jobs without their result row (or with a row of another key): {no_row}")
    by_key: dict[str, set[str]] = defaultdict(set)
    for job in succeeded:
        by_key[job[3]].add(job[4])
    split = {k: ids for k, ids in by_key.items() if len(ids) > 1}
    check(not split, f"succeeded jobs of one key point to different result rows: {split}")
    made = {j[4] for j in succeeded}
    orphan_results = [r[:2] for r in results if r[0] not in made]
    check(not orphan_results, f"result rows no succeeded job points to: {orphan_results}")
    return problems


def summarize(calls: list[Call], jobs: list[tuple], phase_s: float, waited: float, cancelled: list[str],
              shared: Shared, minima: int, files: int) -> dict:
    latency: dict[str, dict] = {}
    for kind in sorted({c.kind for c in calls}):
        values = [c.latency_s * 1000 for c in calls if c.kind == kind and c.status]
        statuses = Counter(c.status for c in calls if c.kind == kind)
        latency[kind] = {"requests": sum(statuses.values()), "status": {str(k): v for k, v in sorted(statuses.items())},
                         "p50_ms": round(statistics.median(values), 1) if values else None,
                         "p95_ms": round(percentile(values, 0.95), 1) if values else None,
                         "max_ms": round(max(values), 1) if values else None}
    states: dict[str, Counter] = defaultdict(Counter)
    for _, kind, state, _, _ in jobs:
        states[kind][state] += 1
    everything = [c.latency_s * 1000 for c in calls if c.status]
    return {
        "clients": CLIENTS, "request_phase_s": round(phase_s, 1), "requests": len(calls),
        "requests_per_s": round(len(calls) / phase_s, 1) if phase_s else None,
        "status": {str(k): v for k, v in sorted(Counter(c.status for c in calls).items())},
        "p50_ms": round(statistics.median(everything), 1) if everything else None,
        "p95_ms": round(percentile(everything, 0.95), 1) if everything else None,
        "by_kind": latency,
        "uploads_201": len(shared.uploaded), "deletes_204": len(shared.deleted),
        "minima_left": minima, "artifact_files": files,
        "jobs": {kind: dict(sorted(counter.items())) for kind, counter in sorted(states.items())},
        "analysis_job_ids_answered": len(shared.analysis_jobs),
        "drain_s": round(waited, 1), "cancelled_after_drain": len(cancelled),
    }
