"""Alembic migrations (toroid.store.migrations) and ``init_db``, on real SQLite files and a real PostgreSQL server.

* the revisions build exactly the schema of the models (0001: the schema before migrations; head: today's);
* ``init_db`` upgrades a database at 0001 with rows in every table, and adopts a database made by ``create_all``
  before migrations existed, keeping the rows;
* processes that call ``init_db`` at the same moment on a fresh database all succeed (the migration lock), and a
  process blocks while another holds the lock;
* at head ``init_db`` only reads the version.

The PostgreSQL cases use the throwaway server of tests/integration/conftest.py and are skipped only when the
machine has no PostgreSQL binaries (or no psycopg2).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import MetaData, create_engine, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from toroid.store import db
from toroid.store.db import Base, current_revision, head_revision, init_db, upgrade_db
from toroid.store.migrations import alembic_config
from toroid.store.models import Job
from toroid.store.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
INDEXES_0002 = {"ix_jobs_result_id", "ix_jobs_minimum_id"}
TABLES_0003 = {"users"}
OWNED_0003 = ("minima", "jobs", "studies")
ERRORS_0004 = ("train_error", "test_error")  # nullable since 0004 (uploads are evaluated by a job)
TABLES_0005 = {"datasets"}  # uploaded datasets (POST /api/datasets)


# --- databases -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_server():
    pytest.importorskip("psycopg2")
    from tests.integration.conftest import Postgres

    try:
        server = Postgres()
    except FileNotFoundError as exc:  # no initdb / pg_ctl on this machine
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


def _fresh_postgres_database(server, name: str) -> str:
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def _reset_caches() -> None:
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db._session_factory.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, monkeypatch) -> str:
    """An empty database, and the settings pointing at it (TOROID_HOME = tmp_path, TOROID_DATABASE_URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'toroid.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = _fresh_postgres_database(server, f"mig_{os.getpid()}_{time.monotonic_ns()}")
    monkeypatch.setenv("TOROID_HOME", str(tmp_path))
    monkeypatch.setenv("TOROID_DATABASE_URL", url)
    _reset_caches()
    yield url
    db.get_engine().dispose()
    _reset_caches()


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'toroid.db'}"
    monkeypatch.setenv("TOROID_HOME", str(tmp_path))
    monkeypatch.setenv("TOROID_DATABASE_URL", url)
    _reset_caches()
    yield url
    db.get_engine().dispose()
    _reset_caches()


def metadata_0001() -> MetaData:
    """The schema of revision 0001 as the models declared it before migrations: today's, less 0002's indexes and
    0003's users table and owner columns, less 0004's evaluation job column (and with errors required), less
    0005's datasets table, less 0006's job cost."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name not in TABLES_0003 | TABLES_0005:
            table.to_metadata(metadata)
    jobs = metadata.tables["jobs"]
    for index in [index for index in jobs.indexes if index.name in INDEXES_0002]:
        jobs.indexes.discard(index)
    for name in OWNED_0003:
        table = metadata.tables[name]
        for index in [index for index in table.indexes if index.name == f"ix_{name}_owner"]:
            table.indexes.discard(index)
        table._columns.remove(table.c.owner)  # test-only: the column did not exist at 0001
    minima = metadata.tables["minima"]
    minima._columns.remove(minima.c.evaluation_job_id)
    for column in ("program_sha256", "structure"):
        minima._columns.remove(minima.c[column])
        for index in [index for index in minima.indexes if index.name == f"ix_minima_{column}"]:
            minima.indexes.discard(index)
    for name in ERRORS_0004:
        minima.c[name].nullable = False
    jobs._columns.remove(jobs.c.cost)  # 0006
    return metadata


def _where(index: dict) -> str | None:
    options = index.get("dialect_options", {})
    clause = options.get("sqlite_where", options.get("postgresql_where"))
    return None if clause is None else str(getattr(clause, "text", clause))


def schema(url: str) -> dict:
    """Tables, columns, keys and indexes as the database reports them (alembic_version left out)."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        described = {}
        for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
            described[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                            for c in inspector.get_columns(table)],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                                 for u in inspector.get_unique_constraints(table)),
                "foreign_keys": inspector.get_foreign_keys(table),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]), _where(i))
                                  for i in inspector.get_indexes(table)),
            }
        if engine.dialect.name == "sqlite":  # the indexes' DDL itself, byte for byte (partial WHERE clauses);
            # tables are compared as inspected above: ALTER TABLE ADD COLUMN stores its own spelling of the DDL
            with engine.connect() as connection:
                described["sqlite_master"] = sorted(connection.execute(text(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type = 'index' "
                    "AND name NOT LIKE 'sqlite_autoindex_alembic_version%'")).all())
        return described
    finally:
        engine.dispose()


def indexes(url: str, table: str = "jobs") -> set[str]:
    engine = create_engine(url)
    try:
        return {index["name"] for index in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


# --- rows ----------------------------------------------------------------------------------------------------


def insert_rows(url: str) -> dict[str, list[tuple]]:
    """One valid row in each table of revision 0001 (two jobs: one active with a key, one finished pointing at the
    result), written with the 0001 schema's own columns (the models of today have more)."""
    created = datetime(2026, 1, 2, 3, 4, 5)
    rows = {
        "minima": [dict(id="m1", name="digits sgd 0", architecture="mlp", config={"widths": [32]}, dataset="digits",
                        dataset_options={}, sampler="sgd", seed=0, train_error=0.0, test_error=0.05,
                        local_energy=None, flatness_result_id=None, provenance={"epochs": 8},
                        checkpoint_sha256="a" * 64, canonical_sha256=None, created_at=created, source="upload",
                        job_id=None)],
        "results": [dict(id="r1", key="k" * 64, kind="flatness", params={"radius": 0.1}, minimum_ids=["m1"],
                         data={"energy": [0.1, 0.2]}, job_id="j1", code_version="7", created_at=created)],
        "jobs": [dict(id="j1", kind="flatness", state="succeeded", progress=1.0, message="done", partial={},
                      params={"minimum_id": "m1"}, key="k" * 64, queue="gpu", result_id="r1", minimum_id="m1",
                      error=None, attempts=1, worker=None, task_id=None, heartbeat_at=None, enqueued_at=None,
                      created_at=created, started_at=None, finished_at=created),
                 dict(id="j2", kind="path", state="queued", progress=0.0, message="", partial={}, params={},
                      key="p" * 64, queue="gpu", result_id=None, minimum_id=None, error=None, attempts=0,
                      worker=None, task_id=None, heartbeat_at=None, enqueued_at=None, created_at=created,
                      started_at=None, finished_at=None)],
        "studies": [dict(id="s1", key="s" * 64, name="study", preset="digits-mlp", spec={"name": "study"},
                         job_id="j2", outputs={"train:sgd:0": {"minimum_id": "m1"}}, created_at=created)],
    }
    tables = metadata_0001().tables
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for name, values in rows.items():
                connection.execute(tables[name].insert(), values)
        return dump_rows(engine)
    finally:
        engine.dispose()


def dump_rows(engine_or_url: Engine | str) -> dict[str, list[tuple]]:
    """The rows of the 0001 tables, their 0001 columns only (what an upgrade must keep)."""
    engine = create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as connection:
            return {name: [tuple(row) for row in connection.execute(select(table).order_by(table.c.id))]
                    for name, table in metadata_0001().tables.items()}
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


# --- the revisions build the models' schema ------------------------------------------------------------------


def _reference_url(database_url: str, tmp_path: Path) -> str:
    """A second empty database beside ``database_url``, for ``create_all``."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'reference.db'}"
    admin = create_engine(database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database_url.rsplit("/", 1)[1]}_ref"'))
    admin.dispose()
    return database_url + "_ref"


def test_revision_0001_builds_the_schema_create_all_made(database_url, tmp_path):
    reference = _reference_url(database_url, tmp_path)
    command.upgrade(alembic_config(database_url), "0001")
    engine = create_engine(reference)
    metadata_0001().create_all(engine)
    engine.dispose()

    built = schema(database_url)
    assert set(built) - {"sqlite_master"} == {"minima", "jobs", "results", "studies"}
    jobs_indexes = {index[0]: index for index in built["jobs"]["indexes"]}
    assert jobs_indexes["ix_jobs_state_heartbeat"][1:3] == (("state", "heartbeat_at"), False)
    name, columns, unique, where = jobs_indexes["uq_jobs_active_key"]
    assert (columns, unique) == (("key",), True) and "'queued'" in where and "'running'" in where
    assert not INDEXES_0002 & set(jobs_indexes)
    assert built == schema(reference)
    assert current_revision(database_url) == "0001"


def test_head_builds_the_schema_of_the_models(database_url, tmp_path):
    reference = _reference_url(database_url, tmp_path)
    init_db()
    engine = create_engine(reference)
    Base.metadata.create_all(engine)
    engine.dispose()

    assert schema(database_url) == schema(reference)
    assert INDEXES_0002 <= indexes(database_url)
    command.check(alembic_config(database_url))  # autogenerate finds nothing to do between the models and head


def test_partial_index_keeps_one_active_job_per_key(database_url):
    init_db()
    insert_rows(database_url)
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:  # a second active job with j2's key is refused; a finished one is not
            session.add(Job(id="j3", kind="path", state="succeeded", key="p" * 64, queue="gpu"))
            session.commit()
            session.add(Job(id="j4", kind="path", state="running", key="p" * 64, queue="gpu"))
            with pytest.raises(Exception, match="(?i)unique"):
                session.commit()
    finally:
        engine.dispose()


# --- init_db upgrades, keeping the rows ----------------------------------------------------------------------


def test_init_db_upgrades_a_database_at_0001_with_rows(database_url):
    command.upgrade(alembic_config(database_url), "0001")
    assert not INDEXES_0002 & indexes(database_url)
    rows = insert_rows(database_url)
    assert all(rows.values())

    init_db()

    assert current_revision() == head_revision() == "0006"
    assert INDEXES_0002 <= indexes(database_url)
    assert dump_rows(database_url) == rows
    engine = create_engine(database_url)
    try:  # 0003: the users table exists and the old rows have no owner
        with engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM users")).scalar() == 0
            for table in OWNED_0003:
                assert connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE owner IS NOT NULL")).scalar() == 0
        with engine.begin() as connection:  # 0004: old minima keep their errors; a pending upload has none
            assert connection.execute(text("SELECT COUNT(*) FROM minima WHERE train_error IS NULL OR "
                                           "evaluation_job_id IS NOT NULL")).scalar() == 0
            connection.execute(text(
                "INSERT INTO minima (id, name, architecture, config, dataset, dataset_options, provenance, "
                "checkpoint_sha256, created_at, source, evaluation_job_id) VALUES ('m9', 'pending', 'mlp', '{}', "
                "'digits', '{}', '{}', :sha, :now, 'upload', 'j9')"), {"sha": "e" * 64, "now": datetime(2026, 1, 1)})
            assert connection.execute(text("SELECT train_error FROM minima WHERE id = 'm9'")).scalar() is None
        with engine.begin() as connection:  # 0005: no uploaded datasets yet; a row takes its summary, names unique
            assert connection.execute(text("SELECT COUNT(*) FROM datasets")).scalar() == 0
            insert = text(
                "INSERT INTO datasets (id, name, owner, created_at, train, test, input_shape, num_classes, "
                "class_names, class_counts, nbytes, file_name, file_size) VALUES (:id, :name, 'alice', :now, 90, 30, "
                "'[1, 8, 8]', 3, NULL, '{\"train\": [30, 30, 30], \"test\": [10, 10, 10]}', 30720, 'd.npz', 4096)")
            connection.execute(insert, {"id": "d" * 64, "name": "mine", "now": datetime(2026, 1, 1)})
            assert connection.execute(text("SELECT name, train, nbytes FROM datasets")).all() == [("mine", 90, 30720)]
        with pytest.raises(Exception, match="(?i)unique|duplicate"), engine.begin() as connection:
            connection.execute(insert, {"id": "f" * 64, "name": "mine", "now": datetime(2026, 1, 1)})
    finally:
        engine.dispose()


def test_0005_adds_the_datasets_table_to_a_database_at_0004_and_downgrades(database_url):
    command.upgrade(alembic_config(database_url), "0004")
    rows = insert_rows(database_url)
    assert "datasets" not in schema(database_url)

    command.upgrade(alembic_config(database_url), "0005")

    assert current_revision() == "0005"
    built = schema(database_url)
    assert [c[0] for c in built["datasets"]["columns"]] == [
        "id", "name", "owner", "created_at", "train", "test", "input_shape", "num_classes", "class_names",
        "class_counts", "nbytes", "file_name", "file_size"]
    assert built["datasets"]["primary_key"] == ["id"]
    assert ("ix_datasets_owner", ("owner",), False, None) in built["datasets"]["indexes"]
    assert dump_rows(database_url) == rows
    command.downgrade(alembic_config(database_url), "0004")
    assert "datasets" not in schema(database_url) and dump_rows(database_url) == rows


def test_0006_gives_jobs_a_cost_that_old_jobs_lack_and_downgrades(database_url):
    command.upgrade(alembic_config(database_url), "0005")
    rows = insert_rows(database_url)
    assert "cost" not in [c[0] for c in schema(database_url)["jobs"]["columns"]]

    init_db()

    assert current_revision() == "0006"
    assert "cost" in [c[0] for c in schema(database_url)["jobs"]["columns"]]
    engine = create_engine(database_url)
    try:  # the old jobs have no estimate (their ETA falls back to their kind's durations)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM jobs")).scalar() > 0
            assert connection.execute(text("SELECT COUNT(*) FROM jobs WHERE cost IS NOT NULL")).scalar() == 0
    finally:
        engine.dispose()
    command.downgrade(alembic_config(database_url), "0005")
    assert "cost" not in [c[0] for c in schema(database_url)["jobs"]["columns"]]
    assert dump_rows(database_url) == rows


def test_init_db_adopts_a_database_made_by_create_all_before_migrations(database_url):
    engine = create_engine(database_url)
    metadata_0001().create_all(engine)
    engine.dispose()
    rows = insert_rows(database_url)
    assert current_revision() is None

    init_db()

    assert current_revision() == head_revision()
    assert INDEXES_0002 <= indexes(database_url)
    assert dump_rows(database_url) == rows
    with create_engine(database_url).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_init_db_completes_a_legacy_database_missing_a_table(database_url):
    """A database from before the studies table was always created: 0001 adds only what is missing."""
    metadata = metadata_0001()
    engine = create_engine(database_url)
    metadata.create_all(engine, tables=[metadata.tables[name] for name in ("minima", "jobs", "results")])
    with Session(engine) as session:
        session.execute(text("INSERT INTO minima (id, name, architecture, config, dataset, dataset_options, "
                             "train_error, test_error, provenance, checkpoint_sha256, created_at, source) VALUES "
                             "('m1', 'n', 'mlp', '{}', 'digits', '{}', 0, 0, '{}', :sha, :now, 'upload')"),
                        {"sha": "a" * 64, "now": datetime(2026, 1, 1)})
        session.commit()
    engine.dispose()

    init_db()

    assert current_revision() == head_revision()
    assert schema(database_url).keys() >= {"minima", "jobs", "results", "studies"}
    assert [row[0] for row in dump_rows(database_url)["minima"]] == ["m1"]


def test_init_db_at_head_only_reads_the_version(database_url):
    init_db()
    statements: list[str] = []

    def record(_connection, _cursor, statement, *_args) -> None:
        statements.append(statement)

    db.get_engine().dispose()
    _reset_caches()
    engine = db.get_engine()  # a new engine: listeners added after an engine's first use may not fire
    event.listen(engine, "before_cursor_execute", record)
    try:
        init_db()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert 1 <= len(statements) <= 3, statements
    assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "INSERT", "UPDATE"))]


def test_in_memory_sqlite_upgrades_without_a_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _reset_caches()
    try:
        assert upgrade_db("sqlite://") == head_revision()
        assert current_revision("sqlite://") == head_revision()
        assert not list(tmp_path.iterdir())  # no lock file, no database file
    finally:
        db.get_engine("sqlite://").dispose()
        _reset_caches()


def test_a_newer_databases_revision_stops_the_start(sqlite_url):
    init_db()
    with create_engine(sqlite_url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(RuntimeError, match="9999"):
        init_db()


# --- concurrent starts -----------------------------------------------------------------------------------------

STARTER = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
from toroid.store.db import current_revision, init_db
init_db()
print(current_revision())
"""


def _start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STARTER, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_processes_starting_together_all_upgrade(database_url, tmp_path):
    """Three processes (API, worker, CLI) call init_db at the same moment on an empty database."""
    env = dict(os.environ, TOROID_HOME=str(tmp_path), TOROID_DATABASE_URL=database_url)
    go = tmp_path / "go"
    starters = [_start(env, str(go)) for _ in range(3)]
    time.sleep(1.5)  # imports done; all wait for the signal
    go.touch()
    outputs = [process.communicate(timeout=120) for process in starters]
    for process, (out, err) in zip(starters, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.split() == [head_revision()], (out, err)
    assert current_revision() == head_revision()
    assert schema(database_url).keys() >= {"minima", "jobs", "results", "studies"}
    with create_engine(database_url).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_sqlite_migration_waits_for_the_lock_beside_the_database(sqlite_url, tmp_path):
    env = dict(os.environ, TOROID_HOME=str(tmp_path), TOROID_DATABASE_URL=sqlite_url)
    go = tmp_path / "go"
    go.touch()
    with open(tmp_path / "toroid.db.migrate.lock", "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        starter = _start(env, str(go))
        time.sleep(3)
        assert starter.poll() is None, starter.communicate()  # waiting for the lock
        assert current_revision() is None
    out, err = starter.communicate(timeout=120)  # the lock is released when the file closes
    assert starter.returncode == 0, err
    assert out.split() == [head_revision()]
