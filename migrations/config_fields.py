"""SQL steps of revisions that give stored simulations' configs a new field's old value.

A field added to `SimulationConfig` whose new default would change what a stored run computes
is written into every stored config with the value that run had (`add_default`); a config that
already names the field keeps it. Downgrading removes the field where it still has that value
(`remove_default`): an earlier engine does not know it, and a run made with another value keeps
it (that engine then refuses it, naming the field). Written in SQL so the offline script does
it too.
"""

from __future__ import annotations

from alembic import op


def add_default(field: str, value: bool) -> None:
    json_value = "true" if value else "false"
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"UPDATE simulations SET config = jsonb_build_object('{field}', {json_value}) || config"
        )
    else:
        op.execute(
            f"UPDATE simulations SET config = "
            f"json_insert(config, '$.{field}', json('{json_value}'))"
        )


def remove_default(field: str, value: bool) -> None:
    if op.get_context().dialect.name == "postgresql":
        json_value = "true" if value else "false"
        op.execute(
            f"UPDATE simulations SET config = config - '{field}' "
            f"WHERE config->'{field}' = '{json_value}'"
        )
    else:
        op.execute(
            f"UPDATE simulations SET config = json_remove(config, '$.{field}') "
            f"WHERE json_extract(config, '$.{field}') = {int(value)}"
        )
