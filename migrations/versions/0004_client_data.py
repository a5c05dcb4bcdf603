"""Clients' data at natural sizes: the `client_data` table, and stored configs made explicit.

`client_data`: one row per client of a simulation (training rows, its own held-out rows,
label counts or target moments), written once. Stored simulations on a real data set were
resampled to `samples_per_client` rows per client and standardised; new requests default to
natural sizes (and digits to min-max scaling), so their stored configs get
`resample_to_size: true` and `feature_scaling: "standard"` written in, and every stored run
gets `engine_version: 1`: all keep giving the same results.

Revision ID: 0004
Revises: 0003_op
Create Date: 2026-12-01 10:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003_op"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "client_data",
        sa.Column("simulation_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("train_samples", sa.Integer(), nullable=False),
        sa.Column("test_samples", sa.Integer(), nullable=False),
        sa.Column("label_counts", JSONType, nullable=True),
        sa.Column("target_mean", JSONType, nullable=True),
        sa.Column("target_std", JSONType, nullable=True),
        sa.ForeignKeyConstraint(
            ["simulation_id"],
            ["simulations.id"],
            name=op.f("fk_client_data_simulation_id_simulations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("simulation_id", "client_id", name=op.f("pk_client_data")),
    )
    # In SQL, so the offline script does it too; keys already there are kept.
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = jsonb_build_object('engine_version', 1) || config"
        )
        op.execute(
            "UPDATE simulations SET config = jsonb_build_object('resample_to_size', true, "
            "'feature_scaling', 'standard') || config "
            "WHERE coalesce(config->>'dataset', 'synthetic') <> 'synthetic'"
        )
    else:
        op.execute("UPDATE simulations SET config = json_insert(config, '$.engine_version', 1)")
        op.execute(
            "UPDATE simulations SET config = json_insert(config, '$.resample_to_size', "
            "json('true'), '$.feature_scaling', 'standard') "
            "WHERE coalesce(json_extract(config, '$.dataset'), 'synthetic') <> 'synthetic'"
        )


def downgrade() -> None:
    op.drop_table("client_data")
    # Configs that carry the earlier behaviour lose the two fields an earlier engine does not
    # know; a run made with natural sizes keeps them (that engine refuses it, naming them).
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE simulations SET config = config - 'resample_to_size' - 'feature_scaling' "
            "WHERE config->'resample_to_size' = 'true' AND config->>'feature_scaling' = 'standard'"
        )
        op.execute(
            "UPDATE simulations SET config = config - 'engine_version' "
            "WHERE config->'engine_version' = '1'"
        )
    else:
        op.execute(
            "UPDATE simulations SET config = json_remove(config, '$.resample_to_size', "
            "'$.feature_scaling') WHERE json_extract(config, '$.resample_to_size') = 1 "
            "AND json_extract(config, '$.feature_scaling') = 'standard'"
        )
        op.execute(
            "UPDATE simulations SET config = json_remove(config, '$.engine_version') "
            "WHERE json_extract(config, '$.engine_version') = 1"
        )
