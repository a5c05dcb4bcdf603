"""INSERT … ON CONFLICT in the dialect of the session's database (PostgreSQL or SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.base import Base


def insert_for(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def upsert(
    session: Session, table: type[Base], rows: Sequence[dict[str, Any]], keys: Iterable[str]
) -> None:
    if not rows:
        return
    keys = list(keys)
    # Rows as parameter sets of one cached Core statement (SQLAlchemy's "insertmanyvalues"
    # sends them in multi-row batches within the driver's limits): a VALUES clause of its own
    # per call is compiled anew each time, and the ORM's bulk path adds its own bookkeeping;
    # both cost more than the database's work.
    statement = insert_for(session)(table.__table__)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates), list(rows))
