"""users (per-user API tokens, stored hashed) and an owner on every minimum, job and study.

Rows made before this revision have no owner (None): on a server with users they belong to nobody, so only an
admin may delete or cancel them (docs/operations.md, "Running a shared server").

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0003", "0002"
branch_labels = depends_on = None

OWNED = ("minima", "jobs", "studies")


def upgrade() -> None:
    strings = {"id": 32, "name": 64, "role": 16, "token_sha256": 64}
    op.create_table(
        "users",
        *(sa.Column(name, sa.String(length=length), nullable=False) for name, length in strings.items()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"), sa.UniqueConstraint("name"), sa.UniqueConstraint("token_sha256"),
    )
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
            batch.create_index(f"ix_{table}_owner", ["owner"])


def downgrade() -> None:
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_owner")
            batch.drop_column("owner")
    op.drop_table("users")
