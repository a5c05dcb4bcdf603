"""Experiments: a name, tags (key → value) and notes on each simulation, and sweeps.

`idempotency_keys` keeps the first answer to a POST sent with an `Idempotency-Key`.
`sweeps` holds one row per sweep; `simulations.sweep_id` says which sweep a run belongs to
(indexed with its status: a sweep's progress). Every new column is nullable: stored
simulations keep every value they had and get none of these (their tags read as `{}`, they
belong to no sweep); nothing the worker reads or writes of them changes, so they resume as
before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of models.base.JSONType: a revision must not change when the models do.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("simulations") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("tags", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sweep_id", sa.Uuid(), nullable=True))
    op.create_index("ix_simulations_sweep_id_status", "simulations", ["sweep_id", "status"])
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("request", JSON_TYPE, nullable=False),
        sa.Column("varied", JSON_TYPE, nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index("ix_sweeps_owner_created_at", "sweeps", ["owner", "created_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", JSON_TYPE, nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "key", name=op.f("pk_idempotency_keys")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_sweeps_owner_created_at", table_name="sweeps")
    op.drop_table("sweeps")
    op.drop_index("ix_simulations_sweep_id_status", table_name="simulations")
    with op.batch_alter_table("simulations") as batch:
        batch.drop_column("sweep_id")
        batch.drop_column("notes")
        batch.drop_column("tags")
        batch.drop_column("name")
