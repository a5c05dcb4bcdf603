"""Engines and the one session pattern: `session_scope()` commits on success, rolls back on error.

SQLite (embedded mode) runs in WAL with a busy timeout, and every transaction starts with
`BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe): a deferred transaction that reads and then
writes would otherwise fail with "database is locked" at once, ignoring the busy timeout.
`synchronous=NORMAL`: a process crash loses nothing; a power loss may drop the last commits,
which a resumed simulation recomputes identically (runs are deterministic).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "scarcity_read_only"  # execution option of sessions that never write
POSTGRES_LOCK_TIMEOUT_MS = 10_000
# A session left idle inside a transaction (its process frozen or stalled mid-transaction) is
# ended by the server after this long, releasing its locks: a worker taking over a frozen one's
# simulation then waits at most this long on them (docs/reliability.md).
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
# SQLSTATEs of a transaction the server ended that is worth trying again.
_TRANSIENT_SQLSTATES = {"25P03", "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003"}


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Read-only sessions begin DEFERRED so WAL lets them read beside the writer.
        mode = "DEFERRED" if connection.get_execution_options().get(READ_ONLY) else "IMMEDIATE"
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "options": f"-c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS} "
            f"-c idle_in_transaction_session_timeout={POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS}",
            # pg_stat_activity shows which process holds a connection (engines are made after
            # a fork: the pid is the connecting process's own).
            "application_name": f"scarcity {socket.gethostname()}:{os.getpid()}"[:63],
        },
    )


def is_transient(exc: BaseException) -> bool:
    """A database error that says nothing about the statement: the connection dropped, the
    server restarts or is unreachable, a lock or a transaction timed out, SQLite was busy. The
    same work may succeed when tried again; anything else is a real error."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return False


_engines: dict[str, Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine of `url` (default: the configured database)."""
    url = url or get_settings().database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


@contextmanager
def session_scope(url: str | None = None, *, read_only: bool = False) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back if it raises.

    `read_only=True` for sessions that only read: on SQLite they then don't queue for the
    write lock (writers begin IMMEDIATE; see the module docstring).
    """
    url = url or get_settings().database_url
    key = (url, read_only)
    if key not in _factories:
        bind = get_engine(url).execution_options(**{READ_ONLY: read_only})
        _factories[key] = sessionmaker(bind=bind, expire_on_commit=False)
    session = _factories[key]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections (after a fork a child must not reuse its parent's sockets)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _factories.clear()
