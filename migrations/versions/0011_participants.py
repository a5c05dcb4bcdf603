"""Who took part and who attacked: `round_metrics.participants` and `client_data.malicious`.

`round_metrics.participants`: the ascending ids of a sampled round's clients (a JSON list),
NULL when every client took part. Rounds stored before it stay NULL (their `clients_sampled`
metric still says whether they were sampled); a resumed run writes the ids of the rounds it
computes. `client_data.malicious`: whether the client is one of the run's Byzantine attackers.
Rows stored before it get false when their run had no attackers (no `malicious_fraction`, or
0), and stay NULL, "not recorded", when it had some: the attackers are drawn from the run's
own generator, which SQL cannot replay (their round-1 log line names them). Neither changes
what a stored run computes, so its config is left as it is.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 18:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of models.base.JSONType: a revision must not change when the models do.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("round_metrics") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("participants", JSON_TYPE, nullable=True))
    with op.batch_alter_table("client_data") as batch:
        batch.add_column(sa.Column("malicious", sa.Boolean(), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        fraction = "(config->>'malicious_fraction')::float"
    else:
        fraction = "json_extract(config, '$.malicious_fraction')"
    op.execute(
        "UPDATE client_data SET malicious = false WHERE simulation_id IN "
        f"(SELECT id FROM simulations WHERE COALESCE({fraction}, 0) = 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("client_data") as batch:
        batch.drop_column("malicious")
    with op.batch_alter_table("round_metrics") as batch:
        batch.drop_column("participants")
