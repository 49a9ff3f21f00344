"""initial: the schema as ``Base.metadata.create_all`` made it before migrations existed.

Tables minima, jobs, results and studies with their indexes, including the partial unique index
``uq_jobs_active_key`` (at most one active job per result key). A table that already exists is left alone, so a
database that an older Toroid made only partly (``init_db`` stamps complete ones at 0001 instead) gains only what it
lacks.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ACTIVE = "state IN ('queued', 'running')"


def _existing_tables() -> set[str]:
    return set() if context.is_offline_mode() else set(sa.inspect(op.get_bind()).get_table_names())


def upgrade() -> None:
    existing = _existing_tables()

    if "minima" not in existing:
        op.create_table(
            "minima",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("architecture", sa.String(length=64), nullable=False),
            sa.Column("config", sa.JSON(), nullable=False),
            sa.Column("dataset", sa.String(length=64), nullable=False),
            sa.Column("dataset_options", sa.JSON(), nullable=False),
            sa.Column("sampler", sa.String(length=64), nullable=True),
            sa.Column("seed", sa.Integer(), nullable=True),
            sa.Column("train_error", sa.Float(), nullable=False),
            sa.Column("test_error", sa.Float(), nullable=False),
            sa.Column("local_energy", sa.Float(), nullable=True),
            sa.Column("flatness_result_id", sa.String(length=32), nullable=True),
            sa.Column("provenance", sa.JSON(), nullable=False),
            sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
            sa.Column("canonical_sha256", sa.String(length=64), nullable=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("source", sa.String(length=16), nullable=False),
            sa.Column("job_id", sa.String(length=32), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("job_id"),
        )
        op.create_index("ix_minima_checkpoint_sha256", "minima", ["checkpoint_sha256"])
        op.create_index("ix_minima_canonical_sha256", "minima", ["canonical_sha256"])
        op.create_index("ix_minima_created_at", "minima", ["created_at"])

    if "jobs" not in existing:
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("progress", sa.Float(), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.Column("partial", sa.JSON(), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("key", sa.String(length=64), nullable=True),
            sa.Column("queue", sa.String(length=32), nullable=False),
            sa.Column("result_id", sa.String(length=32), nullable=True),
            sa.Column("minimum_id", sa.String(length=32), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("worker", sa.String(length=200), nullable=True),
            sa.Column("task_id", sa.String(length=64), nullable=True),
            sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
            sa.Column("enqueued_at", sa.DateTime(), nullable=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("started_at", sa.DateTime(), nullable=True),
            sa.Column("finished_at", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_jobs_kind", "jobs", ["kind"])
        op.create_index("ix_jobs_state", "jobs", ["state"])
        op.create_index("ix_jobs_key", "jobs", ["key"])
        op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
        op.create_index("ix_jobs_state_heartbeat", "jobs", ["state", "heartbeat_at"])
        op.create_index(
            "uq_jobs_active_key", "jobs", ["key"], unique=True,
            sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE),
        )

    if "results" not in existing:
        op.create_table(
            "results",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("minimum_ids", sa.JSON(), nullable=False),
            sa.Column("data", sa.JSON(), nullable=False),
            sa.Column("job_id", sa.String(length=32), nullable=True),
            sa.Column("code_version", sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("key"),
        )
        op.create_index("ix_results_kind", "results", ["kind"])

    if "studies" not in existing:
        op.create_table(
            "studies",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("preset", sa.String(length=64), nullable=True),
            sa.Column("spec", sa.JSON(), nullable=False),
            sa.Column("job_id", sa.String(length=32), nullable=True),
            sa.Column("outputs", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("key"),
        )


def downgrade() -> None:
    for table in ("studies", "results", "jobs", "minima"):
        op.drop_table(table)  # its indexes go with it
