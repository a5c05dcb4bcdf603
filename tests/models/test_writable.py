"""`check_writable`: the write /readyz makes, on both databases (models/db.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from models.db import check_writable, describe_database_error, make_engine
from models.migrate import upgrade_to_head


def test_the_write_check_passes_and_changes_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            before = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        check_writable(engine)
        with engine.connect() as connection:
            after = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert after == before and len(before) == 1
    finally:
        engine.dispose()


def test_a_read_only_postgresql_database_is_named_read_only(postgres_url: str) -> None:
    """As a hot standby or a database set read-only answers: SQLSTATE 25006."""
    upgrade_to_head(postgres_url)
    name = make_url(postgres_url).database
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
            connection.commit()
        engine.dispose()  # the setting applies to new connections
        with pytest.raises(DBAPIError) as raised:
            check_writable(engine)
        assert describe_database_error(raised.value) == "read-only"
    finally:
        engine.dispose()
