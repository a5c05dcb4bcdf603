"""A claim that would fail a run waits a little for the lost worker's own release.

`simulations.give_up_after`: set by the first claim that finds every attempt so far lost
(`attempt - releases >= SCARCITY_MAX_ATTEMPTS`) while the last one's lease merely lapsed; the
run is failed only by a claim after this time, so a worker that gave up during a database
outage and releases the run as the database comes back is never charged for it. NULL (every
stored run) means no claim has waited yet: the next would-be failure waits once, as any does.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("simulations") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("give_up_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("simulations") as batch:
        batch.drop_column("give_up_after")
