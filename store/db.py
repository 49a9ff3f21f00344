"""Database engine and sessions (SQLAlchemy 2; SQLite by default, PostgreSQL via TOROID_DATABASE_URL), and the
schema's upgrade to the newest Alembic revision (``init_db``; the revisions are in ``toroid.store.migrations``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from toroid.store.settings import get_settings


class Base(DeclarativeBase):
    pass


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: the settings' database); ``get_engine()``, ``get_engine(None)``
    and ``get_engine(<that url>)`` are one engine, so disposing one (a forked worker process does) disposes all."""
    if not url:
        return get_engine(get_settings().resolved_database_url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - runs per connection
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # API and worker processes share the file
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


@lru_cache
def _session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def new_session() -> Session:
    return _session_factory()()


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request."""
    with new_session() as session:
        yield session


# The tables of revision 0001: a database with all of them but no alembic_version table was made by ``create_all``
# before migrations existed, and is stamped at 0001.
LEGACY_TABLES = ("minima", "jobs", "results", "studies")
# Key of the PostgreSQL advisory lock that serializes migrations (any fixed 64-bit number; this is "toroid01").
PG_MIGRATION_LOCK = 0x746F726F69643031


def init_db() -> None:
    """Bring the schema up to date (Alembic, ``toroid.store.migrations``): see :func:`upgrade_db`."""
    upgrade_db()


def upgrade_db(url: str | None = None) -> str:
    """Upgrade the database at ``url`` (default: the settings' database) to the newest revision; returns it.

    * already at head: one version query, nothing else (every start of the API or a worker calls this);
    * no tables at all: upgrade from the empty database;
    * tables made by ``create_all`` before migrations existed (no ``alembic_version``): stamp 0001, then upgrade
      (were some of 0001's tables missing, 0001 runs and creates only those);
    * otherwise: upgrade from the recorded revision.

    Processes that start together (``toroid up`` starts the API and a worker at once) serialize on a lock: an
    exclusive ``flock`` on ``<database file>.migrate.lock`` for SQLite (none for an in-memory database), a
    ``pg_advisory_lock`` for PostgreSQL; the one that waited finds the database at head and does nothing.
    """
    from alembic import command
    from alembic.util import CommandError

    engine = get_engine(url)
    head = head_revision()
    if current_revision(url) == head:
        return head
    with _migration_lock(engine) as connection, connection.begin():
        current = _current_revision(connection)
        if current == head:
            return head
        from toroid.store.migrations import alembic_config

        config = alembic_config(engine.url.render_as_string(hide_password=False), connection)
        try:
            if current is None:
                tables = set(inspect(connection).get_table_names())
                if tables.issuperset(LEGACY_TABLES):
                    command.stamp(config, "0001")
            command.upgrade(config, "head")
        except CommandError as exc:  # typically a revision of a newer Toroid, unknown to this one
            raise RuntimeError(f"cannot upgrade the database at {engine.url!r} from revision {current!r} "
                               f"to {head!r}: {exc}") from exc
    return head


def current_revision(url: str | None = None) -> str | None:
    """The Alembic revision the database at ``url`` is at; None before the first migration."""
    with get_engine(url).connect() as connection:
        return _current_revision(connection)


@lru_cache
def head_revision() -> str:
    """The newest revision in ``toroid.store.migrations``."""
    from alembic.script import ScriptDirectory

    from toroid.store.migrations import MIGRATIONS_DIR

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection to ``engine``, held under the lock that serializes migrations across processes."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        if engine.url.query.get("uri"):  # sqlite:///file:path?mode=...&uri=true
            database = database.removeprefix("file:")
        with ExitStack() as stack:
            if database not in ("", ":memory:") and engine.url.query.get("mode") != "memory":
                import fcntl

                lock = stack.enter_context(open(f"{database}.migrate.lock", "ab"))  # noqa: SIM115
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield stack.enter_context(engine.connect())
        return
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            connection.commit()
        try:
            yield connection
        finally:
            if engine.dialect.name == "postgresql":
                try:
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_MIGRATION_LOCK})
                    connection.commit()
                except Exception:  # closing the session releases its lock, which must not go back to the pool
                    connection.invalidate()


def ping_database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
