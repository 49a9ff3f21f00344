"""an uploaded minimum is stored before it is evaluated: its errors may be pending; exported programs.

Uploads are evaluated by a job on a worker (docs/operations.md, "Running a shared server"): until that job ends
``train_error`` and ``test_error`` are NULL and ``evaluation_job_id`` names the job (whose state and error say
whether it is pending or why it failed). Rows made before this revision keep their errors and have no such job.
``program_sha256`` names the artifact holding the program of a minimum uploaded as a ``torch.export`` archive
(architecture ``export``, ``toroid.store.programs``); ``structure`` is the hash of a network's structure (state_dict
layout and unit graph) that makes minima of any source one family (``toroid.store.families``). Rows made before
have none and keep their families by architecture and config.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0004", "0003"
branch_labels = depends_on = None

ERRORS = ("train_error", "test_error")


def upgrade() -> None:
    with op.batch_alter_table("minima") as batch:
        for column in ERRORS:
            batch.alter_column(column, existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("evaluation_job_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("program_sha256", sa.String(length=64), nullable=True))
        batch.create_index("ix_minima_program_sha256", ["program_sha256"])
        batch.add_column(sa.Column("structure", sa.String(length=64), nullable=True))
        batch.create_index("ix_minima_structure", ["structure"])


def downgrade() -> None:
    op.execute("DELETE FROM minima WHERE train_error IS NULL OR test_error IS NULL OR program_sha256 IS NOT NULL")
    with op.batch_alter_table("minima") as batch:
        batch.drop_index("ix_minima_structure")
        batch.drop_column("structure")
        batch.drop_index("ix_minima_program_sha256")
        batch.drop_column("program_sha256")
        batch.drop_column("evaluation_job_id")
        for column in ERRORS:
            batch.alter_column(column, existing_type=sa.Float(), nullable=False)
