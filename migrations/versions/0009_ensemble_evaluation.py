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

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In SQL, so the offline script does it too; a config that already says is kept.
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = "
            "jsonb_build_object('ensemble_evaluation', false) || config"
        )
    else:
        op.execute(
            "UPDATE simulations SET config = "
            "json_insert(config, '$.ensemble_evaluation', json('false'))"
        )


def downgrade() -> None:
    # An earlier engine does not know the field: configs with it off lose it; a run made
    # with it on keeps it (that engine refuses it, naming the field).
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = config - 'ensemble_evaluation' "
            "WHERE config->'ensemble_evaluation' = 'false'"
        )
    else:
        op.execute(
            "UPDATE simulations SET config = json_remove(config, '$.ensemble_evaluation') "
            "WHERE json_extract(config, '$.ensemble_evaluation') = 0"
        )
