"""Uploaded data sets: the `datasets` table, one row per owner and upload.

The upload's rows live in the upload store as content-addressed files; this table says who
uploaded which id (primary key owner, id: the same bytes uploaded by two owners are two rows),
the file name they sent, the options and the description. Nothing stored before it changes:
no simulation could name an upload yet.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of models.base.JSONType: a revision must not change when the models do.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("options", JSON_TYPE, nullable=False),
        sa.Column("description", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "id", name=op.f("pk_datasets")),
    )
    op.create_index("ix_datasets_owner_created_at", "datasets", ["owner", "created_at"])
    op.create_index("ix_datasets_id", "datasets", ["id"])


def downgrade() -> None:
    op.drop_index("ix_datasets_id", table_name="datasets")
    op.drop_index("ix_datasets_owner_created_at", table_name="datasets")
    op.drop_table("datasets")
