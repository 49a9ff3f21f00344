"""jobs: indexes on result_id and minimum_id (the API finds the jobs of a result or a minimum by them).

``if_not_exists``: a database made by ``Base.metadata.create_all`` from newer models (which ``init_db`` adopts by
stamping it at 0001) already has them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_result_id", "jobs", ["result_id"], if_not_exists=True)
    op.create_index("ix_jobs_minimum_id", "jobs", ["minimum_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_minimum_id", table_name="jobs")
    op.drop_index("ix_jobs_result_id", table_name="jobs")
