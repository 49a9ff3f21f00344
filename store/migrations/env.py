"""Alembic environment: the target schema is ``toroid.store.db.Base.metadata`` (the tables of toroid.store.models);
the connection is the one ``init_db`` holds the migration lock on, else a new one from ``get_engine``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import toroid.store.models  # noqa: F401  (registers the tables on Base.metadata)
from toroid.store.db import Base, get_engine

config = context.config


def _configure(**kwargs) -> None:
    dialect = kwargs["connection"].dialect.name if "connection" in kwargs else kwargs["url"].split(":")[0]
    context.configure(
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode copies the table, so later revisions work there too
        render_as_batch=dialect.startswith("sqlite"),
        compare_type=True,
        **kwargs,
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
               dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:
    with get_engine(config.get_main_option("sqlalchemy.url")).connect() as own:
        _run(own)
        own.commit()
