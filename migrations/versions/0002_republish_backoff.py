"""Reaper backoff and a cheaper cap check.

`simulations.next_publish_at`: the reaper re-publishes a waiting job at most once per backoff
(which grows with the wait), instead of on every pass. Index (owner, status): the count of an
owner's active simulations on every submission batch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:20:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("simulations") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("next_publish_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_simulations_owner_status", "simulations", ["owner", "status"])


def downgrade() -> None:
    op.drop_index("ix_simulations_owner_status", table_name="simulations")
    with op.batch_alter_table("simulations") as batch:
        batch.drop_column("next_publish_at")
