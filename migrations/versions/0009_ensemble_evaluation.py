"""The ensemble's evaluation: stored runs keep reporting the metrics they reported.

New requests have `ensemble_evaluation` on (every round each client's experts predict held-out
rows: `ensemble_loss`, `ensemble_accuracy`). A simulation stored before it gets
`ensemble_evaluation: false` written into its config, so a resumed run reports exactly the
metrics it did (the same as `scarcity.config.stored_config` does for a checkpoint's copy).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.config_fields import add_default, remove_default

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_default("ensemble_evaluation", False)


def downgrade() -> None:
    remove_default("ensemble_evaluation", False)
