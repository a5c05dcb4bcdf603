"""Label-free stage 8: stored runs keep the supervised round they ran.

New stage 8 requests have `label_free` on (the experts train only their self-supervised
objectives and a linear probe scores them). A simulation stored before it gets
`label_free: false` written into its config, so a resumed run computes what it did (the same
as `scarcity.config.stored_config` does for a checkpoint's copy).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 16:20:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.config_fields import add_default, remove_default

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_default("label_free", False)


def downgrade() -> None:
    remove_default("label_free", False)
