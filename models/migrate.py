"""Schema migrations through Alembic's Python API: what `scarcity migrate` and start-up call.

Works from any working directory and from an installed wheel (which has no alembic.ini): the
revisions are the `migrations` package installed next to this one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, pool

from models.base import Base
from models.settings import get_settings

logger = logging.getLogger("models.migrate")

_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = _ROOT / "alembic.ini"
MIGRATIONS_DIR = _ROOT / "migrations"


class SchemaNotAtHead(RuntimeError):
    """The database is not at the revision this code needs; the message says what to do."""


def alembic_config(url: str | None = None) -> Config:
    """The project's Alembic config; `url` overrides SCARCITY_DATABASE_URL."""
    config = Config(str(ALEMBIC_INI) if ALEMBIC_INI.is_file() else None)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["configure_logger"] = False  # keep the service's logging as it is
    if url:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest revision in `migrations/versions`."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def _inspect(url: str) -> tuple[str | None, set[str]]:
    """(current revision or None, names of our tables present) without touching anything."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            tables = set(inspect(connection).get_table_names()) & set(Base.metadata.tables)
            return revision, tables
    finally:
        engine.dispose()


def current_revision(url: str | None = None) -> str | None:
    """The database's revision; None for a database never migrated (e.g. empty)."""
    return _inspect(url or get_settings().database_url)[0]


def is_at_head(url: str | None = None) -> bool:
    return current_revision(url) == head_revision()


def upgrade_to_head(url: str | None = None) -> None:
    """`alembic upgrade head` on `url` (default: the configured database)."""
    command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str | None = None, *, auto_migrate: bool | None = None) -> None:
    """Return when the database is at head; upgrade it if `auto_migrate`, else raise.

    `auto_migrate=None` follows the settings (SCARCITY_AUTO_MIGRATE; unset = SQLite only).
    Raises `SchemaNotAtHead` (a RuntimeError) saying how to migrate.
    """
    settings = get_settings()
    url = url or settings.database_url
    if auto_migrate is None:
        is_sqlite = make_url(url).get_backend_name() == "sqlite"
        auto_migrate = is_sqlite if settings.auto_migrate is None else settings.auto_migrate
    shown = make_url(url).render_as_string(hide_password=True)
    head = head_revision()
    current, tables = _inspect(url)
    if current == head:
        return
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaNotAtHead(
            f"database {shown} is at revision {current}, which this version of Scarcity does not "
            f"know (its newest is {head}): a newer version migrated it; run that version."
        )
    if current is None and tables:
        raise SchemaNotAtHead(
            f"database {shown} has Scarcity tables ({', '.join(sorted(tables))}) but no Alembic "
            "revision, so it was not created by `scarcity migrate`; if its tables match this "
            "version, record that with `alembic stamp head`, else start from an empty database."
        )
    if auto_migrate:
        logger.info("migrating %s from %s to %s", shown, current or "an empty schema", head)
        upgrade_to_head(url)
        return
    raise SchemaNotAtHead(
        f"database {shown} is behind: at revision {current or 'none (empty)'}, this version of "
        f"Scarcity needs {head}. Run `scarcity migrate` (or `alembic upgrade head`) first, "
        "or set SCARCITY_AUTO_MIGRATE=true to migrate at start-up."
    )
