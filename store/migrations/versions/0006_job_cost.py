"""jobs.cost: the estimated cost of each job, which routes it to the interactive or the batch queue and feeds its ETA.

The estimate is store/cost.py's, in sample-parameter operations, taken when the job is created (docs/operations.md,
"Queues"). Jobs made before this revision have none: their ETA falls back to the durations of finished jobs of their
kind.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0006", "0005"
branch_labels = depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cost", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cost")
