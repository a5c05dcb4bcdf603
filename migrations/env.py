"""Alembic environment: the URL comes from the service settings, the schema from `models.Base`.

URL, first found wins: `config.attributes["url"]` (the Python API, `models.migrate`),
`alembic -x url=...`, then `SCARCITY_DATABASE_URL` (`models.settings`). A caller may also hand
over an open connection as `config.attributes["connection"]`.
"""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, create_engine, event, make_url, pool, text

from models import Base
from models.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Any fixed key: every process migrating the same PostgreSQL database queues on this lock.
POSTGRES_MIGRATION_LOCK = 0x5CA2C17

# The service configures its own logging; fileConfig would silence its loggers otherwise.
if config.config_file_name and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    return config.attributes.get("url") or x_args.get("url") or get_settings().database_url


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, poolclass=pool.NullPool)
    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"timeout": 30})

    # pysqlite runs DDL outside any transaction; emitting BEGIN ourselves makes a failed
    # migration roll back whole, and IMMEDIATE makes concurrent migrators queue, not race.
    # foreign_keys stays OFF (SQLite's default) so batch table rebuilds cascade nothing.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def configure_options(dialect_name: str) -> dict[str, Any]:
    sqlite = dialect_name == "sqlite"
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things: rebuild the table ("move and copy") instead.
        "render_as_batch": sqlite,
        **({"transactional_ddl": True} if sqlite else {}),
    }


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until commit; the current revision is read after it, so a second migrator
            # waits, then finds the database at head and does nothing.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
