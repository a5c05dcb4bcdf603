"""Attempts charged only for lost workers.

`simulations.releases`: how many claims ended without their worker dying (released at a
graceful shutdown or after database errors, or taken over while the worker was only cut off
from the database). A simulation fails for `SCARCITY_MAX_ATTEMPTS` only when
`attempt - releases` reaches it. Existing rows get 0: they are charged as before.

Revision ID: 0003_op
Revises: 0002
Create Date: 2026-12-01 09:45:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_op"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("simulations") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(
            sa.Column("releases", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("simulations") as batch:
        batch.drop_column("releases")
