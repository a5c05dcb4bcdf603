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

from migrations.config_fields import add_default, remove_default

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_default("apply_meta_params", False)


def downgrade() -> None:
    remove_default("apply_meta_params", False)
