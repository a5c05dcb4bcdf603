"""INSERT … ON CONFLICT in the dialect of the session's database (PostgreSQL or SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.base import Base

# SQLite's default cap on the parameters of one statement (SQLITE_MAX_VARIABLE_NUMBER).
MAX_PARAMETERS = 32_766


def insert_for(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def upsert(
    session: Session, table: type[Base], rows: Sequence[dict[str, Any]], keys: Iterable[str]
) -> None:
    if not rows:
        return
    keys = list(keys)
    # In chunks: a batch of rounds can hold more parameters than SQLite takes in one statement.
    step = max(1, MAX_PARAMETERS // len(rows[0]))
    for start in range(0, len(rows), step):
        statement = insert_for(session)(table).values(list(rows[start : start + step]))
        updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
        session.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates))
