"""The `toroid` command line: run the system, its parts, and the science from a terminal.

It sits above the layers (docs/architecture.md): `toroid up` supervises Redis, a worker and the API as processes;
`toroid worker` becomes a Celery worker; `toroid study run` runs a study's job in this process, as a worker would.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import typer

from toroid.store.settings import get_settings


def request_demo(base_url: str, token: str | None = None) -> int:
    """Ask the API to seed the demo minima (POST /api/demo); returns how many training jobs were queued (0 when
    minima already exist)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{base_url}/api/demo", headers=headers, timeout=30)
    response.raise_for_status()
    return int(response.json().get("queued", 0))


def up_environment(settings, host: str, port: int) -> dict[str, str]:
    """The environment `toroid up` gives Redis, the worker and the API: this one, with the home, address and port;
    downloads of the built-in datasets allowed unless TOROID_ALLOW_DOWNLOADS is set (in the environment or .env),
    since a local stack fetches them for its one user (docs/operations.md)."""
    env = dict(os.environ, TOROID_HOME=str(settings.home.resolve()), TOROID_HOST=host, TOROID_PORT=str(port))
    if "allow_downloads" not in settings.model_fields_set:
        env["TOROID_ALLOW_DOWNLOADS"] = "true"
    return env


app = typer.Typer(
    help="Toroid: error landscapes of neural networks without symmetries.",
    no_args_is_help=True,
    add_completion=False,
)


def stop_requested() -> Callable[[], bool]:
    """A flag that Ctrl-C (SIGINT) or SIGTERM raises, read by ``Supervisor.supervise``: the supervised children are
    then stopped in order instead of this process dying first."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    return stopping.is_set


@app.command()
def up(
    port: int = typer.Option(None, help="Port of the API + dashboard (default TOROID_PORT, 8000; 0 = any free)."),
    host: str = typer.Option(None, help="Address to listen on (default TOROID_HOST, 127.0.0.1)."),
    demo: bool = typer.Option(None, "--demo/--no-demo", help="Seed demo minima when the database is empty."),
) -> None:
    """Start everything: embedded Redis (unless TOROID_REDIS_URL is set), a batch worker, a worker for the
    interactive queue (TOROID_INTERACTIVE_WORKERS), the API and the dashboard.

    Downloads of the built-in datasets (mnist, fashion_mnist, cifar10) into the data root are allowed unless
    TOROID_ALLOW_DOWNLOADS says otherwise (docs/operations.md). With TOROID_GPUS ('all' or ids like '0,1') the batch
    worker is one process per GPU (docs/operations.md, "One worker per GPU").

    A part that crashes later is restarted (with backoff; Redis on the same port, its queue kept in its
    append-only file); only Ctrl-C or SIGTERM stops everything.
    """
    import time

    from toroid.backend.supervisor import Supervisor, free_port, parse_gpus

    settings = get_settings()
    settings.ensure_dirs()
    host = host or settings.host
    port = settings.port if port is None else port
    port = port or free_port(host)
    demo = settings.demo if demo is None else demo
    env = up_environment(settings, host, port)
    try:
        gpus = parse_gpus(settings.gpus) if settings.gpus else None  # TOROID_GPUS: one batch worker per GPU
    except ValueError as exc:
        typer.echo(f"error: TOROID_GPUS={settings.gpus!r}: {exc}", err=True)
        raise typer.Exit(2) from None

    stopping = stop_requested()

    supervisor = Supervisor(settings.home, log=lambda line: typer.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True))
    exit_code = 0
    try:
        if settings.redis_url:
            env["TOROID_REDIS_URL"] = settings.redis_url
        else:
            env["TOROID_REDIS_URL"] = supervisor.start_redis(env)
            typer.echo(f"redis   embedded at {env['TOROID_REDIS_URL']}", err=True)
        supervisor.start_workers(env, settings.worker_concurrency, settings.worker_queues, settings.interactive_workers,
                                 settings.batch_niceness, gpus=gpus, interactive_threads=settings.interactive_threads)
        base = supervisor.start_api(env, host, port)
        typer.echo(f"worker  started (logs in {settings.home / 'logs'})", err=True)
        if demo:
            started = request_demo(base, token=settings.api_token)
            if started:
                typer.echo(f"demo    {started} demo minima queued for training (see the Jobs panel)", err=True)
        typer.echo(f"Toroid is running at {base}/dashboard/  (API {base}/api, docs {base}/docs). Ctrl-C stops.")
        sys.stdout.flush()
        supervisor.supervise(stopping)  # restarts crashed children until Ctrl-C / SIGTERM
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        exit_code = 1
    finally:
        supervisor.stop_all()
        typer.echo("stopped.", err=True)
    raise typer.Exit(exit_code)


@app.command()
def api(
    port: int = typer.Option(None, help="Port (default TOROID_PORT, 8000; 0 = any free)."),
    host: str = typer.Option(None, help="Address (default TOROID_HOST)."),
) -> None:
    """Serve only the API + dashboard (Redis and workers run elsewhere: set TOROID_REDIS_URL)."""
    import socket

    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = settings.port if port is None else port
    # Bind first, then tell the settings the port actually bound (port 0: the free one the kernel chose), so the
    # mounted dashboard calls this server and no other process that may listen on the default port.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    port = sock.getsockname()[1]
    os.environ["TOROID_HOST"], os.environ["TOROID_PORT"] = host, str(port)
    get_settings.cache_clear()
    config = uvicorn.Config("toroid.backend.main:create_app", factory=True, host=host, port=port)
    typer.echo(f"Toroid API at http://{f'[{host}]' if ':' in host else host}:{port}/api "
               "(dashboard /dashboard/, docs /docs). Ctrl-C stops.", err=True)
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def worker(
    concurrency: int = typer.Option(None, help="Worker processes (default TOROID_WORKER_CONCURRENCY)."),
    queues: str = typer.Option(None, help="Queues to consume, comma separated (default interactive,cpu,gpu)."),
    gpus: str = typer.Option(
        None, help="'all' or GPU ids like '0,1' (default TOROID_GPUS): one worker process per GPU, each with "
        "CUDA_VISIBLE_DEVICES set to its GPU, supervised and restarted; logs in TOROID_HOME/logs/worker-gpu<i>.log."),
    hostname: str = typer.Option(
        None, help="Celery node name, e.g. 'gpu-box@%h' (default celery@%h). With --gpus the workers are "
        "<name>-gpu<i>@<host> (default toroid-<pid>-worker-gpu<i>@%h). /api/health and the job records name workers "
        "by it, so two workers of one host need different names."),
) -> None:
    """Run Celery workers in the foreground against TOROID_REDIS_URL: one, or with --gpus one per GPU
    (docs/operations.md, "One worker per GPU" and "Several hosts")."""
    settings = get_settings()
    if not settings.redis_url:
        typer.echo("error: set TOROID_REDIS_URL to the Redis the API uses (e.g. redis://localhost:6379/0)", err=True)
        raise typer.Exit(2)
    concurrency = concurrency or settings.worker_concurrency
    queues = queues or settings.worker_queues
    gpus = gpus if gpus is not None else settings.gpus
    if gpus is None:  # one worker: this process becomes it
        argv = [
            sys.executable, "-m", "celery", "-A", "toroid.store.celery_app", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "--queues", queues, "--without-gossip", "--without-mingle",
            *(["--hostname", hostname] if hostname else []),
        ]
        os.execv(sys.executable, argv)
    _supervise_gpu_workers(settings, gpus, concurrency, queues, hostname)


def _supervise_gpu_workers(settings, spec: str, concurrency: int, queues: str, hostname: str | None) -> None:
    """`toroid worker --gpus`: one Celery worker per GPU under ``Supervisor`` (the code `toroid up` runs), restarted
    when one exits, all stopped on Ctrl-C or SIGTERM."""
    import time

    from toroid.backend.supervisor import Supervisor, parse_gpus

    try:
        gpus = parse_gpus(spec)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if spec.strip().lower() != "all":
        from toroid.worker.landscape.device import visible_gpus

        seen = len(visible_gpus())
        if not seen:
            typer.echo(f"warning: no GPU is visible to torch here; the {len(gpus)} workers get CUDA_VISIBLE_DEVICES "
                       "but compute on the CPU", err=True)
        elif any(g.isdigit() and int(g) >= seen for g in gpus) and "CUDA_VISIBLE_DEVICES" not in os.environ:
            typer.echo(f"error: --gpus {spec!r}: this machine has {seen} GPU(s), numbered 0..{seen - 1}", err=True)
            raise typer.Exit(2)
    stopping = stop_requested()
    settings.home.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(settings.home, log=lambda line: typer.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True))
    env = dict(os.environ, TOROID_HOME=str(settings.home.resolve()), TOROID_REDIS_URL=settings.redis_url)
    try:
        children = supervisor.start_gpu_workers(env, gpus, concurrency, queues, hostname=hostname)
        for child in children:
            typer.echo(f"worker  {child.name} (pid {child.process.pid}) on CUDA_VISIBLE_DEVICES="
                       f"{child.env['CUDA_VISIBLE_DEVICES']}, log {settings.home / 'logs' / (child.name + '.log')}",
                       err=True)
        typer.echo(f"{len(children)} workers running (one per GPU). Ctrl-C stops.", err=True)
        supervisor.supervise(stopping)
    finally:
        supervisor.stop_all(together=True)
        typer.echo("stopped.", err=True)


@app.command("list")
def list_registry(
    what: str = typer.Argument("architectures", help="architectures, datasets or samplers"),
) -> None:
    """List the architectures, datasets or samplers the core knows, with their defaults."""
    import json

    from toroid.worker.landscape.data import DATASETS
    from toroid.worker.landscape.registry import available_architectures
    from toroid.worker.landscape.samplers import SAMPLERS

    registries = {
        "architectures": {k: (v.description, v.defaults) for k, v in available_architectures().items()},
        "datasets": {k: (v.description, v.options) for k, v in DATASETS.items()},
        "samplers": {k: (v.description, {h: p.default for h, p in v.hyper.items()}) for k, v in SAMPLERS.items()},
    }
    if what not in registries:
        typer.echo(f"error: choose one of {sorted(registries)}", err=True)
        raise typer.Exit(2)
    for name, (description, defaults) in registries[what].items():
        typer.echo(f"{name:14s} {description}")
        typer.echo(f"{'':14s} defaults: {json.dumps(defaults, default=str)}")


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"


def progress_text(info: dict) -> str:
    """The progress line of a training report. Values a phase does not have are shown as '-': adv's confusion
    pre-training (docs/samplers.md) reports its own epochs and no test error."""
    loss = info.get("train_loss")
    loss_text = f"loss {loss:.4f}" if isinstance(loss, int | float) else "loss -"
    if info.get("phase") == "confusion":
        return (f"confusion pre-training epoch {info.get('confusion_epoch')}  {loss_text}  "
                f"confusion-set error {_percent(info.get('train_error'))}")
    return (f"epoch {info.get('epoch')}/{info.get('epochs')}  {loss_text}  train {_percent(info.get('train_error'))}"
            f"  test {_percent(info.get('test_error'))}")


def _parse_pairs(pairs: list[str], what: str) -> dict:
    """KEY=VALUE options; VALUE is parsed as JSON when it can be (numbers, lists, true/false), else kept a string."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_target_error(text: str) -> float | None:
    """``--target-error``: a fraction in [0, 1], or ``none`` (also ``null``) for the whole budget."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--target-error must be a fraction in [0, 1] or 'none', got {text!r}")
    return value


@app.command()
def train(
    arch: str = typer.Option("mlp", "--arch", help="Architecture (see `toroid list architectures`)."),
    dataset: str = typer.Option("digits", help="Dataset name."),
    sampler: str = typer.Option("sgd", help="Sampler: sgd, rsgd, adv, sam, entropy_sgd, adam, binary."),
    seed: int = typer.Option(0, help="Seed: same seed, sampler and data give bit-identical weights on CPU."),
    epochs: int = typer.Option(None, help="Epoch budget (default: the sampler's)."),
    target_error: str = typer.Option(
        "0", "--target-error", help="Stop once the train error (a fraction) is at most this; 'none': run the whole "
        "epoch budget and its schedule (the paper's protocol, docs/samplers.md)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint path (.safetensors); the sidecar goes next to it (.json)."),
    config: str = typer.Option("{}", help='Architecture config as JSON, e.g. \'{"widths": [256, 256]}\'.'),
    hp: list[str] = typer.Option([], "--hp", help="Sampler hyperparameter KEY=VALUE (repeatable)."),
    dataset_option: list[str] = typer.Option([], "--dataset-option", help="Dataset option KEY=VALUE (repeatable)."),
    name: str = typer.Option(None, help="Name of the minimum (default: the file name)."),
) -> None:
    """Train one minimum with a sampler and save it with its JSON sidecar (what the upload endpoint accepts)."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from toroid.worker.landscape.data import load_dataset
    from toroid.worker.landscape.io import save_minimum
    from toroid.worker.landscape.samplers import train_minimum

    try:
        arch_config = json.loads(config)
        options = _parse_pairs(dataset_option, "--dataset-option")
        hparams = _parse_pairs(hp, "--hp")
        stop_at = parse_target_error(target_error)
        data = load_dataset(dataset, **options)
    except (json.JSONDecodeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"{sampler} {arch}/{dataset} seed {seed}", total=1.0, stats="")

        def report(fraction: float, info: dict) -> None:
            bar.update(task, completed=fraction, stats=progress_text(info))

        try:
            model, provenance = train_minimum(
                arch, arch_config, data, sampler=sampler, hparams=hparams, seed=seed, epochs=epochs,
                target_error=stop_at, progress=report,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        bar.update(task, completed=1.0)
    checkpoint, sidecar = save_minimum(
        model, out, architecture=arch, config=provenance["architecture"]["config"], dataset=dataset,
        dataset_options=options, provenance=provenance, name=name,
    )
    stopped = ("the whole budget" if provenance.get("stop_rule") == "budget"
               else f"the target train error {100 * provenance['target_error']:.2f}%")
    typer.echo(
        f"saved {checkpoint} and {sidecar}: train error {100 * provenance['train_error']:.2f}%, "
        f"test error {100 * provenance['test_error']:.2f}% after {provenance['epochs_run']} epochs (stopped by "
        f"{stopped})"
    )


from toroid.cli_client import analyze, list_minima, upload  # noqa: E402  (registered after the commands above)
from toroid.cli_datasets import dataset_app  # noqa: E402
from toroid.cli_study import study_app  # noqa: E402
from toroid.cli_users import users_app  # noqa: E402

app.add_typer(study_app, name="study")
app.add_typer(users_app, name="users")
app.add_typer(dataset_app, name="dataset")
app.command()(upload)
app.command()(analyze)
app.command("minima")(list_minima)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
