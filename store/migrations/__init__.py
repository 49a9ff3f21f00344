"""Alembic migrations of Toroid's database (docs/operations.md, "Schema migrations").

No ``alembic.ini``: :func:`alembic_config` builds the configuration in code, with ``script_location`` this package's
folder, so migrations run the same from a source checkout and from an installed wheel. ``init_db``
(``toroid.store.db``) upgrades the database to the newest revision when the API or a worker starts; operators and
developers reach the other Alembic commands through ``python -m toroid.store.migrations <command> ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent
PROG = "python -m toroid.store.migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's Config for the database at ``url`` (default: the settings' database), built without a file.

    ``connection``: run the commands on this connection (``init_db`` passes the one that holds the migration
    lock) instead of a new one from ``toroid.store.db.get_engine``.
    """
    from alembic.config import Config

    from toroid.store.settings import get_settings

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    url = url or get_settings().resolved_database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def main(argv: Sequence[str] | None = None) -> Any:
    """Alembic's command line on :func:`alembic_config` (``-c``/``-n`` are ignored: there is no ini file)."""
    from alembic.config import CommandLine

    cli = CommandLine(prog=PROG)
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = alembic_config()
    config.cmd_opts = options
    cli.run_cmd(config, options)
