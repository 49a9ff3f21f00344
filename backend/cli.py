"""The `toroid` command line: run the system, its parts, and the science from a terminal."""

from __future__ import annotations

import os
import signal
import sys

import typer

from backend.settings import get_settings

app = typer.Typer(
    help="Toroid: error landscapes of neural networks without symmetries.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def up(
    port: int = typer.Option(None, help="Port of the API + dashboard (default TOROID_PORT, 8000; 0 = any free)."),
    host: str = typer.Option(None, help="Address to listen on (default TOROID_HOST, 127.0.0.1)."),
    demo: bool = typer.Option(None, "--demo/--no-demo", help="Seed demo minima when the database is empty."),
) -> None:
    """Start everything: embedded Redis (unless TOROID_REDIS_URL is set), one worker, the API and the dashboard."""
    from backend.supervisor import Supervisor, free_port

    settings = get_settings()
    settings.ensure_dirs()
    host = host or settings.host
    port = settings.port if port is None else port
    port = port or free_port(host)
    demo = settings.demo if demo is None else demo
    env = dict(os.environ, TOROID_HOME=str(settings.home.resolve()), TOROID_HOST=host, TOROID_PORT=str(port))

    stopping = False

    def request_stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    supervisor = Supervisor(settings.home, log=lambda line: typer.echo(line, err=True))
    exit_code = 0
    try:
        if settings.redis_url:
            env["TOROID_REDIS_URL"] = settings.redis_url
        else:
            env["TOROID_REDIS_URL"] = supervisor.start_redis(env)
            typer.echo(f"redis   embedded at {env['TOROID_REDIS_URL']}", err=True)
        supervisor.start_worker(env, settings.worker_concurrency, settings.worker_queues)
        base = supervisor.start_api(env, host, port)
        typer.echo(f"worker  started (logs in {settings.home / 'logs'})", err=True)
        if demo:
            from backend.demo import request_demo

            started = request_demo(base, token=settings.api_token)
            if started:
                typer.echo(f"demo    {started} demo minima queued for training (see the Jobs panel)", err=True)
        typer.echo(f"Toroid is running at {base}/dashboard/  (API {base}/api, docs {base}/docs). Ctrl-C stops.")
        sys.stdout.flush()
        exited = supervisor.watch(lambda: stopping)
        if exited is not None:
            typer.echo(f"{exited.name} exited with code {exited.process.returncode}; stopping.", err=True)
            exit_code = 1
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        exit_code = 1
    finally:
        supervisor.stop_all()
        typer.echo("stopped.", err=True)
    raise typer.Exit(exit_code)


@app.command()
def api(
    port: int = typer.Option(None, help="Port (default TOROID_PORT)."),
    host: str = typer.Option(None, help="Address (default TOROID_HOST)."),
) -> None:
    """Serve only the API + dashboard (Redis and workers run elsewhere: set TOROID_REDIS_URL)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run("backend.main:create_app", factory=True, host=host or settings.host, port=port or settings.port)


@app.command()
def worker(
    concurrency: int = typer.Option(None, help="Worker processes (default TOROID_WORKER_CONCURRENCY)."),
    queues: str = typer.Option(None, help="Queues to consume, comma separated (default cpu,gpu)."),
) -> None:
    """Run one Celery worker in the foreground (on a GPU machine: one per GPU, with CUDA_VISIBLE_DEVICES)."""
    settings = get_settings()
    if not settings.redis_url:
        typer.echo("error: set TOROID_REDIS_URL to the Redis the API uses (e.g. redis://localhost:6379/0)", err=True)
        raise typer.Exit(2)
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--queues", queues or settings.worker_queues, "--without-gossip", "--without-mingle",
    ]
    os.execv(sys.executable, argv)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
