"""`toroid dataset add | list | rm`: your own datasets on a running server (docs/api.md, "Datasets"), over its HTTP
API only, with the client of `toroid upload` (``toroid.cli_client``: the same server and token options, exit codes
and messages).

`toroid dataset add data.npz --name my-data` uploads one ``.npz`` (arrays ``x_train, y_train, x_test, y_test``);
four files are the IDX files of an MNIST-style set. Requests then name the dataset: ``--dataset my-data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from toroid.cli_client import (
    EXIT_REFUSED,
    Client,
    ClientError,
    json_option,
    print_json,
    run,
    server_option,
    token_option,
)

dataset_app = typer.Typer(help="Your own datasets on a running server: add, list, rm (docs/api.md).",
                          no_args_is_help=True)


class ProgressReader:
    """A file whose reads advance a progress bar (httpx streams a multipart file by reading it in chunks)."""

    def __init__(self, handle: Any, advance):
        self._handle, self._advance = handle, advance

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._advance(len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:  # fileno, seek, tell, name: what httpx asks to size the body
        return getattr(self._handle, name)


def describe(record: dict) -> str:
    shape = "x".join(str(s) for s in record.get("input_shape") or [])
    return (f"{record['name']} ({record.get('id')}): {record.get('train'):,} train / {record.get('test'):,} test "
            f"samples, inputs {shape}, {record.get('num_classes')} classes")


@dataset_app.command("add")
def add(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                       help="One .npz (x_train, y_train, x_test, y_test), or the four IDX files "
                                            "(train-images, train-labels, t10k-images, t10k-labels; .gz or not)."),
    name: str = typer.Option(..., "--name", help="How requests will name it: 1-64 letters, digits, '.', '_', '-'."),
    server: str = server_option(),
    token: str = token_option(),
    as_json: bool = json_option(),
) -> None:
    """Upload a dataset (POST /api/datasets); the same content uploaded before is kept once."""

    def action() -> int:
        from contextlib import ExitStack

        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        if len(files) not in (1, 4):
            raise ClientError(f"give one .npz or the four IDX files, got {len(files)} files", EXIT_REFUSED)
        client = Client(server, token)
        total = sum(path.stat().st_size for path in files)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with ExitStack() as stack:
            bar = stack.enter_context(Progress(*columns, console=Console(stderr=True), transient=True))
            task = bar.add_task(f"uploading {name}", total=total)
            field = "file" if len(files) == 1 else "files"
            parts = [(field, (path.name, ProgressReader(stack.enter_context(path.open("rb")),
                                                        lambda n: bar.advance(task, n)), "application/octet-stream"))
                     for path in files]
            record = client.call("POST", "/datasets", files=parts, data={"name": name})
        if as_json:
            print_json(record)
        else:
            verb = "added" if client.status == 201 else "already there:"
            typer.echo(f"{verb} {describe(record)}; name it as the dataset of a request: --dataset {record['name']}")
        return 0

    run(action)


@dataset_app.command("list")
def list_datasets(
    server: str = server_option(),
    token: str = token_option(),
    as_json: bool = json_option(),
) -> None:
    """List the datasets of a running server (GET /api/datasets): the built-in kinds, then the uploaded ones."""

    def action() -> int:
        records = Client(server, token).get("/datasets")
        if as_json:
            print_json(records)
            return 0
        for d in records:
            if d.get("kind") == "upload":
                shape = "x".join(str(s) for s in d.get("input_shape") or [])
                typer.echo(f"{d['name'][:24]:24s}  upload    {d['train']:>8,} / {d['test']:<8,} {shape:>10s}  "
                           f"{d['num_classes']:>3} classes  {d.get('owner') or '-':12s}  {d['id'][:12]}")
            else:
                typer.echo(f"{d['name'][:24]:24s}  built-in  {'' if d.get('available') else '(unavailable) '}"
                           f"{d['description'][:70]}")
        return 0

    run(action)


@dataset_app.command("rm")
def remove(
    dataset: str = typer.Argument(..., help="The uploaded dataset's name or id."),
    server: str = server_option(),
    token: str = token_option(),
) -> None:
    """Delete an uploaded dataset (DELETE /api/datasets/NAME): yours (or any, as an admin), and no minimum uses it."""

    def action() -> int:
        from urllib.parse import quote

        Client(server, token).call("DELETE", f"/datasets/{quote(dataset, safe='')}")
        typer.echo(f"deleted {dataset}")
        return 0

    run(action)
