"""Runs you can find: a name, tags (key → value) and notes on each simulation.

All three are nullable: stored simulations keep every value they had and get none of these
(their tags read as `{}`); nothing the worker reads or writes changes, so they resume as before.

Revision ID: 0003_exp
Revises: 0002
Create Date: 2026-12-01 09:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_exp"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of models.base.JSONType: a revision must not change when the models do.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("simulations") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("tags", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("simulations") as batch:
        batch.drop_column("notes")
        batch.drop_column("tags")
        batch.drop_column("name")
