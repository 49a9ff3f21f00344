"""`toroid upload`, `toroid analyze`, `toroid minima`: a client of a running Toroid server, over its HTTP API only
(docs/api.md), so that a training script can push its checkpoints and ask for analyses from a terminal.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 the server refused the request (4xx: its `detail` is
printed as it is, since it says how to fix the request) or the command line is wrong; 3 the server cannot be
reached or failed (5xx, e.g. 503 while its message broker is down).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

EXIT_JOB_FAILED, EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2, 3
#: The sidecar `toroid train` writes next to its checkpoint (docs/api.md, "Upload": format `toroid.minimum/1`).
SIDECAR_FORMAT = "toroid.minimum/1"
#: The analysis kinds and the body fields their minimum ids fill (docs/api.md, "Analyses"); None: `minimum_ids`.
KINDS: dict[str, tuple[str, ...] | None] = {
    "path": ("a", "b"), "flatness": ("minimum_id",), "sharpness": ("minimum_id",), "distances": None, "section": None,
    "torus": None,
}
#: What --points sets for each kind that has one (docs/api.md, "Analyses": points of a path, grid resolution).
POINTS_FIELD = {"path": "points", "section": "resolution", "torus": "resolution"}
POLL_S = 0.25
TIMEOUT_S = 120.0


class ClientError(Exception):
    """A request that did not succeed: ``code`` is the exit code (2 refused, 3 unreachable or failed server)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def default_server() -> str:
    """TOROID_SERVER, else this machine's server as `toroid up` starts it (TOROID_HOST, TOROID_PORT; a wildcard
    address is reached over the loopback interface)."""
    if os.environ.get("TOROID_SERVER"):
        return os.environ["TOROID_SERVER"]
    from toroid.store.settings import get_settings

    settings = get_settings()
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port or 8000}"


def base_url(server: str) -> str:
    """``host:port``, ``http://host:port/`` or ``.../api`` -> ``http://host:port``."""
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = f"http://{server}"
    return server[: -len("/api")] if server.endswith("/api") else server


def detail(response: Any) -> str:
    """The server's advice in an error answer: `detail`, or for a validation error its readable `message`
    (docs/api.md: errors are `{"detail": ...}`, schema errors add `message`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:1000] or response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return body["message"]
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return json.dumps(body.get("detail", body) if isinstance(body, dict) else body)


class Client:
    """The API at ``server``; ``token`` goes into the Authorization header only, never into a message."""

    def __init__(self, server: str | None, token: str | None):
        import httpx

        self.base = base_url(server or default_server())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=httpx.Timeout(TIMEOUT_S, connect=10))
        #: The status of the last answer (201 for a new upload, 200 for content the server had).
        self.status: int | None = None

    def unreachable(self, exc: Exception) -> ClientError:
        reason = str(exc) or type(exc).__name__
        return ClientError(f"cannot reach the Toroid server at {self.base}: {reason}; start it with `toroid up` or "
                           "pass --server (or set TOROID_SERVER)", EXIT_UNREACHABLE)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; raises ClientError for a 4xx (code 2), a 5xx or no answer (code 3)."""
        import httpx

        try:
            response = self.http.request(method, f"/api{path}", **kwargs)
        except httpx.TimeoutException as exc:
            raise ClientError(f"the Toroid server at {self.base} did not answer within {TIMEOUT_S:.0f} s "
                              f"({type(exc).__name__}); check that it runs (`toroid up`) and is not overloaded",
                              EXIT_UNREACHABLE) from exc
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        self.status = response.status_code
        if response.status_code >= 400:
            code = EXIT_REFUSED if response.status_code < 500 else EXIT_UNREACHABLE
            raise ClientError(f"{method} /api{path} answered {response.status_code}: {detail(response)}", code)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def wait(self, job: dict, label: str) -> dict:
        """Poll a job until it leaves queued/running, with a progress bar on stderr (stdout stays for results)."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[message]}"))
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(label, total=1.0, message=job.get("message") or job["state"])
            while job["state"] in ("queued", "running"):
                time.sleep(POLL_S)
                job = self.get(f"/jobs/{job['id']}")
                bar.update(task, completed=job["progress"], message=job.get("message") or job["state"])
            if job["state"] == "succeeded":
                bar.update(task, completed=1.0)
        return job


def run(action: Callable[[], int | None]) -> None:
    """Run a command's body; its ClientError becomes `error: ...` on stderr and the error's exit code."""
    try:
        code = action() or 0
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        code = exc.code
    except KeyboardInterrupt:
        typer.echo("stopped waiting; the job goes on on the server (GET /api/jobs/<id>)", err=True)
        code = 130
    raise typer.Exit(code)


def failed(job: dict) -> ClientError:
    return ClientError(f"job {job['id']} ({job['kind']}) {job['state']}: {job.get('error') or 'no reason given'}",
                       EXIT_JOB_FAILED)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "n/a"


def num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "n/a"


# common options (a function each: typer reads an option's metadata from the default of each parameter)
def server_option() -> Any:
    return typer.Option(None, "--server", envvar="TOROID_SERVER", show_envvar=True,
                        help="Base URL of the server (default: http://127.0.0.1:$TOROID_PORT, i.e. `toroid up`).")


def token_option() -> Any:
    return typer.Option(None, "--token", envvar="TOROID_TOKEN", show_envvar=True, show_default=False,
                        help="API token, when the server sets TOROID_API_TOKEN (the admin's, or a user's from "
                             "`toroid users add`). Never printed.")


def wait_option(what: str) -> Any:
    return typer.Option(True, "--wait/--no-wait", help=f"Follow {what} with a progress bar until it ends.")


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print the final record as JSON on stdout (progress goes to stderr).")


# ============================================================================================================ upload
def is_sidecar(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_key_map(key_map: str) -> None:
    if key_map == "auto":
        return
    try:
        value = json.loads(key_map)
    except json.JSONDecodeError as exc:
        raise ClientError(f"--key-map must be 'auto' or a JSON object {{checkpoint key: model key}}: {exc}",
                          EXIT_REFUSED) from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ClientError("--key-map must be 'auto' or a JSON object {checkpoint key: model key}", EXIT_REFUSED)


def upload(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="The checkpoint: .safetensors, or a .pt torch state_dict."),
    architecture: str = typer.Option(None, help="Architecture (GET /api/architectures); not with a sidecar."),
    config: str = typer.Option(None, help='Architecture config as JSON, e.g. \'{"widths": [256, 256]}\'.'),
    dataset: str = typer.Option(None, help="Dataset (GET /api/datasets)."),
    dataset_options: str = typer.Option(None, "--dataset-options", help="Dataset options as JSON."),
    name: str = typer.Option(None, help="Display name (default: the sidecar's, else the file's stem)."),
    sidecar: Path = typer.Option(None, exists=True, dir_okay=False, readable=True,
                                 help="The .json `toroid train` wrote (default: FILE's .json twin, when it is one "
                                      "and --architecture is not given)."),
    key_map: str = typer.Option(None, "--key-map",
                                help="How checkpoint keys map to the model's: 'auto' or a JSON object "
                                     "{checkpoint key: model key} (sent as the form field key_map)."),
    server: str = server_option(),
    token: str = token_option(),
    wait: bool = wait_option("the evaluation job (train and test error)"),
    as_json: bool = json_option(),
) -> None:
    """Upload a checkpoint to a running server (POST /api/minima); with --wait, until its errors are evaluated."""

    def action() -> int:
        client = Client(server, token)
        chosen = sidecar
        if chosen is None and architecture is None:
            twin = file.with_suffix(".json")
            if twin != file and twin.is_file() and is_sidecar(twin):
                chosen = twin
                typer.echo(f"using the sidecar {twin}", err=True)
        given = {"architecture": architecture, "config": config, "dataset": dataset,
                 "dataset_options": dataset_options, "name": name, "key_map": key_map}
        if key_map is not None:
            check_key_map(key_map)
        with ExitStack() as files:
            parts = {"file": (file.name, files.enter_context(file.open("rb")), "application/octet-stream")}
            if chosen is not None:
                parts["sidecar"] = (chosen.name, files.enter_context(chosen.open("rb")), "application/json")
            record = client.call("POST", "/minima", files=parts, data={k: v for k, v in given.items() if v is not None})
        if wait and record.get("evaluation") == "pending" and record.get("evaluation_job_id"):
            job = client.get(f"/jobs/{record['evaluation_job_id']}")
            job = client.wait(job, f"evaluating {record['name']}")
            record = client.get(f"/minima/{record['id']}")
            if job["state"] != "succeeded" and record.get("evaluation") != "done":
                if as_json:
                    print_json(record)
                raise failed(job)
        if as_json:
            print_json(record)
        elif record.get("evaluation") == "pending":
            typer.echo(f"uploaded {record['id']} {record['name']}: evaluation pending (job "
                       f"{record.get('evaluation_job_id')})")
        else:
            typer.echo(f"uploaded {record['id']} {record['name']}: train error {pct(record.get('train_error'))}, "
                       f"test error {pct(record.get('test_error'))}")
        return 0

    run(action)


# =========================================================================================================== analyze
def parse_params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE; VALUE is JSON when it parses (numbers, lists, null, true/false), else a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--param must look like KEY=VALUE, got {pair!r}", EXIT_REFUSED)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def analysis_body(kind: str, ids: list[str], path_kind: str | None, points: int | None,
                  params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of POST /api/analyses/<kind> (docs/api.md, "Analyses")."""
    if kind not in KINDS:
        raise ClientError(f"unknown analysis {kind!r}: choose one of {', '.join(KINDS)}", EXIT_REFUSED)
    fields = KINDS[kind]
    if fields is None:
        body: dict[str, Any] = {"minimum_ids": list(ids)}
    elif len(ids) != len(fields):
        raise ClientError(f"{kind} takes {len(fields)} minimum id(s) ({' '.join(f.upper() for f in fields)}), "
                          f"got {len(ids)}", EXIT_REFUSED)
    else:
        body = dict(zip(fields, ids, strict=True))
    if path_kind is not None:
        if kind != "path":
            raise ClientError("--kind is the kind of a path (geodesic, linear, ...): use it with `analyze path`",
                              EXIT_REFUSED)
        body["kind"] = path_kind
    if points is not None:
        if kind not in POINTS_FIELD:
            raise ClientError(f"--points applies to {', '.join(POINTS_FIELD)}, not to {kind}", EXIT_REFUSED)
        body[POINTS_FIELD[kind]] = points
    return {**body, **params}


def summary(result: dict) -> list[str]:
    """A few lines about a result record's data (docs/api.md, "Analyses": the result `data` of each kind)."""
    kind, data = result["kind"], result.get("data") or {}
    if kind == "path" and "profiles" in data:  # one_bend: two segments through a retrained bend
        test = max((p.get("test_barrier") or 0.0 for p in data["profiles"]), default=None)
        return [f"barrier {pct(data.get('barrier'))} (train), test barrier {pct(test)}, through a bend retrained "
                f"{data.get('epochs')} epochs; distance to A {num(data.get('distance_to_a'))}, to B "
                f"{num(data.get('distance_to_b'))}"]
    if kind == "path":
        return [f"barrier {pct(data.get('barrier'))} (train), test barrier {pct(data.get('test_barrier'))}, "
                f"distance {num(data.get('length'))} ({data.get('kind')} path, {data.get('points')} points)"]
    if kind == "flatness":
        from toroid.worker.landscape.results import local_energy_at_largest_sigma

        sigmas = [s for s in data.get("sigmas") or [] if isinstance(s, int | float)]
        return [f"local energy {num(local_energy_at_largest_sigma(data))} at the largest sigma "
                f"{num(max(sigmas, default=None))} (base train error {pct(data.get('base_train_error'))}, "
                f"test error {pct(data.get('base_test_error'))})"]
    if kind == "sharpness":
        trace = (f"trace {num(data.get('trace'))} +- {num(data.get('trace_stderr'))} ({data.get('probes')} probes)"
                 if data.get("trace") is not None else "no trace (0 probes)")
        return [f"top Hessian eigenvalue {num(data.get('top_eigenvalue'))} (relative residual "
                f"{num(data.get('residual'))} after {data.get('iterations')} Lanczos steps), {trace}; normalized "
                f"network, {data.get('samples')} training samples, {data.get('parameters')} parameters"]
    if kind == "distances":
        matrices = data.get("matrices") or {}
        names = data.get("names") or data.get("ids") or []
        n = len(names)
        lines = [f"{n} x {n} distance matrices: {', '.join(matrices)}"]
        metric = next((m for m in ("geodesic", "hamming") if m in matrices), None)
        if metric and n <= 8:
            width = max(10, *(len(str(x)) for x in names))
            lines.append(f"{metric}:")
            lines += [f"  {str(name):{width}s} " + " ".join(f"{num(v):>10s}" for v in row)
                      for name, row in zip(names, matrices[metric], strict=False)]
        return lines
    grid = data.get("train_error") or []  # section, torus: rows x columns
    values = [v for row in grid for v in row if isinstance(v, int | float)]
    return [f"{len(grid)} x {len(grid[0]) if grid else 0} grid, train error from {pct(min(values, default=None))} "
            f"to {pct(max(values, default=None))}"]


def analyze(
    kind: str = typer.Argument(..., help="path, flatness, sharpness, distances, section or torus."),
    ids: list[str] = typer.Argument(..., help="Minimum ids (`toroid minima`): path A B, flatness A, sharpness A, "
                                              "distances A B ..., section A B C, torus A B [C]."),
    param: list[str] = typer.Option([], "--param", help="Another request field KEY=VALUE, VALUE as JSON when it "
                                                        "parses (repeatable), e.g. --param samples=20 "
                                                        "--param 'sigmas=[0.1,0.5]' (docs/api.md)."),
    path_kind: str = typer.Option(None, "--kind", help="Kind of a path: geodesic (default), linear, "
                                                        "linear_aligned, one_bend, flip."),
    points: int = typer.Option(None, "--points", help="Points along a path; grid points per axis of a section or "
                                                      "torus (their resolution)."),
    server: str = server_option(),
    token: str = token_option(),
    wait: bool = wait_option("the job"),
    as_json: bool = json_option(),
    out: Path = typer.Option(None, "--out", dir_okay=False, help="Write the result record as JSON to this file."),
) -> None:
    """Ask a running server for an analysis (POST /api/analyses/KIND); a result computed before answers at once."""

    def action() -> int:
        body = analysis_body(kind, ids, path_kind, points, parse_params(param))
        client = Client(server, token)
        answer = client.call("POST", f"/analyses/{kind}", json=body)
        job, result = answer["job"], answer.get("result")
        if result is None and not wait:
            if as_json:
                print_json(answer)
            else:
                typer.echo(f"queued {kind} job {job['id']} ({job['state']}); follow it at GET /api/jobs/{job['id']}")
            return 0
        if result is None:
            job = client.wait(job, kind)
            if job["state"] != "succeeded" or not job.get("result_id"):
                raise failed(job)
            result = client.get(f"/results/{job['result_id']}")
        if out is not None:
            out.write_text(json.dumps(result, indent=2, sort_keys=True))
        if as_json:
            print_json(result)
        else:
            cached = " (cached)" if answer.get("cached") else ""
            typer.echo(f"{kind} result {result['id']}{cached}")
            for line in summary(result):
                typer.echo(f"  {line}")
            if out is not None:
                typer.echo(f"  written to {out}")
        return 0

    run(action)


# ============================================================================================================ minima
def list_minima(
    server: str = server_option(),
    token: str = token_option(),
    as_json: bool = json_option(),
) -> None:
    """List the minima of a running server (GET /api/minima), newest first."""

    def action() -> int:
        records = Client(server, token).get("/minima")
        if as_json:
            print_json(records)
            return 0
        if not records:
            typer.echo("no minima yet: `toroid upload FILE` or the dashboard's Train panel adds some")
        for m in records:
            state = m.get("evaluation", "done")
            errors = (f"train {pct(m.get('train_error')):>7s}  test {pct(m.get('test_error')):>7s}"
                      if state == "done" else "evaluating…" if state == "pending" else "evaluation failed")
            typer.echo(f"{m['id']}  {m['name'][:24]:24s}  {m['architecture']:12s}  {m['dataset']:10s}  {errors}")
        return 0

    run(action)
