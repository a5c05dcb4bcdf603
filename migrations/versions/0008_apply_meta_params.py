"""Meta-parameters used by the clients: stored runs keep training as they did.

New requests of stage 5 and later have `apply_meta_params` on (clients train with the
meta-learner's broadcast learning rate). A simulation stored before it gets
`apply_meta_params: false` written into its config, so it resumes to the numbers it had and
still validates (a stored stage 5+ config would otherwise lack one of its preset's settings);
`scarcity.config.stored_config` does the same for a checkpoint's copy.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:15:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In SQL, so the offline script does it too; a config that already says is kept.
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = "
            "jsonb_build_object('apply_meta_params', false) || config"
        )
    else:
        op.execute(
            "UPDATE simulations SET config = "
            "json_insert(config, '$.apply_meta_params', json('false'))"
        )


def downgrade() -> None:
    # An earlier engine does not know the field: configs with it off lose it; a run made
    # with it on keeps it (that engine refuses it, naming the field).
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = config - 'apply_meta_params' "
            "WHERE config->'apply_meta_params' = 'false'"
        )
    else:
        op.execute(
            "UPDATE simulations SET config = json_remove(config, '$.apply_meta_params') "
            "WHERE json_extract(config, '$.apply_meta_params') = 0"
        )
