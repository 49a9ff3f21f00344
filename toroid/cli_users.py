"""`toroid users`: per-user API tokens for a shared server (docs/operations.md, "Running a shared server")."""

from __future__ import annotations

import typer

users_app = typer.Typer(help="Users and their API tokens (a shared server; TOROID_API_TOKEN is the admin's).",
                        no_args_is_help=True)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="Letters, digits, '.', '_' or '-'."),
    admin: bool = typer.Option(False, "--admin", help="May delete and cancel everyone's records."),
) -> None:
    """Make a user and print their token (shown once: only its hash is stored)."""
    from toroid.store.db import init_db
    from toroid.store.errors import ToroidError
    from toroid.store.settings import get_settings
    from toroid.store.users import add_user

    get_settings().ensure_dirs()
    init_db()
    try:
        user, token = add_user(name, "admin" if admin else "user")
    except ToroidError as exc:
        _fail(exc)
    typer.echo(token)
    typer.echo(f"user {user.name} ({user.role}) added; give them the token above (it is not stored).", err=True)
    if not get_settings().api_token:
        typer.echo("note: tokens are checked only when the server runs with TOROID_API_TOKEN set.", err=True)


@users_app.command("list")
def list_() -> None:
    """The users (never their tokens)."""
    from toroid.store.db import init_db
    from toroid.store.users import list_users

    init_db()
    for user in list_users():
        typer.echo(f"{user.name:24s} {user.role:6s} since {user.created_at:%Y-%m-%d}")


@users_app.command("remove")
def remove(name: str) -> None:
    """Remove a user: their token stops working at once; what they own stays."""
    from toroid.store.db import init_db
    from toroid.store.errors import ToroidError
    from toroid.store.users import remove_user

    init_db()
    try:
        remove_user(name)
    except ToroidError as exc:
        _fail(exc)
    typer.echo(f"user {name} removed")
