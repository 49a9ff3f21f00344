"""`toroid study`: run a study in this process (no server needed) and write its report.

``toroid study run digits-mlp`` (a preset name or a spec .yaml/.json path) uses the same engine, database and
artifact store (TOROID_HOME) as the server, so its minima and analyses appear in the dashboard, and running it
again resumes where it stopped (finished steps are reused). It runs *inline*: every step in this process, one after
the other, no worker needed (a study posted to the API fans its steps out over the workers instead; docs/studies.md).
The report (report.html + CSV tables) goes to
``--out`` (default ``TOROID_HOME/studies/<id>/``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import typer

study_app = typer.Typer(help="Studies: the paper's whole protocol as one resumable job.", no_args_is_help=True)


def parse_overrides(pairs: list[str]) -> dict:
    """KEY=VALUE overrides; dotted keys nest (paths.points=9); values parse as JSON when they can."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set must look like KEY=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parsed
    return out


@study_app.command("presets")
def presets() -> None:
    """List the study presets."""
    from toroid.store.study_spec import PRESETS

    for name, raw in PRESETS.items():
        typer.echo(f"{name:18s} {raw.get('description', '')}")


@study_app.command("run")
def run(
    spec: str = typer.Argument(..., help="A preset name (see `toroid study presets`) or a spec .yaml/.json file."),
    out: Path = typer.Option(None, "--out", help="Report folder (default TOROID_HOME/studies/<id>/)."),
    set_: list[str] = typer.Option([], "--set", help="Spec override KEY=VALUE (dotted keys nest; repeatable)."),
) -> None:
    """Run (or resume) a study here, with a progress bar, then write its report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from toroid.backend.services.report import collect, write_report
    from toroid.store.db import new_session
    from toroid.store.ledger import stale_job_s
    from toroid.store.models import Job, utcnow
    from toroid.store.settings import get_settings
    from toroid.store.studies import open_study
    from toroid.store.study_spec import StudyError, resolve_spec
    from toroid.worker.study import run_study

    get_settings().ensure_dirs()
    try:
        study_spec = resolve_spec(spec, parse_overrides(set_))
        study, job, _started = open_study(study_spec, preset=spec if not Path(spec).is_file() else None,
                                          publish=False)
    except StudyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"study {study.id} ({study_spec.name}); job {job.id}; TOROID_HOME {get_settings().home}")
    started = time.monotonic()
    done = threading.Event()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("starting", total=1.0)

        def follow() -> None:
            while not done.wait(0.5):
                with new_session() as session:
                    row = session.get(Job, job.id)
                if row is not None:
                    bar.update(task, completed=float(row.progress or 0.0), description=row.message or row.state)

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        try:
            while True:
                with new_session() as session:
                    row = session.get(Job, job.id)
                if row.state in ("succeeded", "failed", "cancelled"):
                    break
                if row.state == "running" and row.worker is not None:  # not parked between fan-out rounds
                    stale = row.heartbeat_at is None or row.heartbeat_at < utcnow() - timedelta(seconds=stale_job_s())
                    if not stale:  # a process runs it: follow its progress
                        time.sleep(0.5)
                        continue
                    from sqlalchemy import update

                    with new_session() as session:
                        session.execute(update(Job).where(Job.id == row.id, Job.state == "running",
                                                          Job.attempts == row.attempts).values(state="queued"))
                        session.commit()
                # claim the job (or take it parked, when workers fanned it out) and run the rest of its plan here,
                # every step inline (another process may have taken it first: look again)
                run_study(job.id, worker=f"toroid study run pid {os.getpid()}")
        finally:
            done.set()
            watcher.join(timeout=2)
        with new_session() as session:
            final = session.get(Job, job.id)
        bar.update(task, completed=float(final.progress or 0.0), description=final.message or final.state)
    target = out or (get_settings().home / "studies" / study.id)
    written = write_report(collect(study.id), target)
    elapsed = time.monotonic() - started
    typer.echo(f"study {final.state} in {elapsed:.0f} s; report: {written[0]} (+ {len(written) - 1} CSV files)")
    if final.state != "succeeded":
        typer.echo(f"error: {final.error or final.message}; run the same command again to resume", err=True)
        raise typer.Exit(1)
